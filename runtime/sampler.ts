// Choosing the next token from logits, in llama.cpp's order: repetition penalty → top-k → top-p →
// min-p → temperature → draw. Temperature 0 is greedy. A seed makes draws reproducible.
// Buffers are allocated once per sampler, not per token.
import { rng } from "./weights.ts";

export interface SamplerOptions {
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  /** How many recent tokens the repetition penalty looks at. */
  penaltyWindow?: number;
  seed?: number;
}

export class Sampler {
  private readonly order: Uint32Array;
  private readonly probs: Float64Array;
  private readonly random: () => number;
  private readonly o: Required<SamplerOptions>;

  constructor(
    readonly vocab: number,
    opts: SamplerOptions = {},
  ) {
    this.o = {
      temperature: opts.temperature ?? 0.8,
      topK: opts.topK ?? 40,
      topP: opts.topP ?? 0.95,
      minP: opts.minP ?? 0.05,
      repetitionPenalty: opts.repetitionPenalty ?? 1,
      penaltyWindow: opts.penaltyWindow ?? 64,
      seed: opts.seed ?? 0,
    };
    const bad = (what: string) => new RangeError(`sampler: ${what}`);
    if (!(this.o.temperature >= 0)) throw bad(`temperature must be ≥ 0, found ${this.o.temperature}`);
    if (!Number.isInteger(this.o.topK) || this.o.topK < 0)
      throw bad(`top-k must be a whole number ≥ 0, found ${this.o.topK}`);
    if (!(this.o.topP > 0 && this.o.topP <= 1)) throw bad(`top-p must be in (0, 1], found ${this.o.topP}`);
    if (!(this.o.minP >= 0 && this.o.minP < 1)) throw bad(`min-p must be in [0, 1), found ${this.o.minP}`);
    if (!(this.o.repetitionPenalty > 0))
      throw bad(`repetition penalty must be > 0, found ${this.o.repetitionPenalty}`);
    this.order = new Uint32Array(vocab);
    this.probs = new Float64Array(vocab);
    this.random = rng(this.o.seed);
  }

  /** The next token. `logits` may be modified (penalties are applied in place). */
  sample(logits: Float32Array, history: readonly number[] = []): number {
    const o = this.o;
    if (o.repetitionPenalty !== 1) {
      const seen = new Set(history.slice(-o.penaltyWindow));
      for (const t of seen) {
        const l = logits[t]!;
        logits[t] = l > 0 ? l / o.repetitionPenalty : l * o.repetitionPenalty;
      }
    }
    if (o.temperature === 0) return argmax(logits);
    // Candidates sorted by logit, best first; ties keep the lower id.
    let n = logits.length;
    const order = this.order;
    for (let i = 0; i < n; i++) order[i] = i;
    const byLogit = (a: number, b: number) => logits[b]! - logits[a]! || a - b;
    if (o.topK > 0 && o.topK < n) {
      partialSort(order, n, o.topK, byLogit);
      n = o.topK;
    } else order.sort(byLogit);
    const p = this.probs;
    const softmax = (scale: number) => {
      const max = logits[order[0]!]!;
      let sum = 0;
      for (let i = 0; i < n; i++) sum += p[i] = Math.exp((logits[order[i]!]! - max) * scale);
      for (let i = 0; i < n; i++) p[i]! /= sum;
    };
    softmax(1);
    if (o.topP < 1) {
      let cum = 0;
      for (let i = 0; i < n; i++) {
        cum += p[i]!;
        if (cum >= o.topP) {
          n = i + 1;
          break;
        }
      }
    }
    if (o.minP > 0) {
      const floor = p[0]! * o.minP;
      let keep = 1;
      while (keep < n && p[keep]! >= floor) keep++;
      n = keep;
    }
    softmax(1 / o.temperature);
    let r = this.random();
    for (let i = 0; i < n; i++) {
      r -= p[i]!;
      if (r < 0) return order[i]!;
    }
    return order[n - 1]!;
  }
}

export function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

/** Moves the k best of order[0..n) to the front, sorted best first; what follows is unspecified. */
function partialSort(order: Uint32Array, n: number, k: number, cmp: (a: number, b: number) => number): void {
  order.subarray(0, k).sort(cmp);
  // Each later candidate that beats the current k-th is inserted into the sorted head: O(n + m·k).
  for (let i = k; i < n; i++) {
    const v = order[i]!;
    if (cmp(v, order[k - 1]!) >= 0) continue;
    let j = k - 1;
    while (j > 0 && cmp(v, order[j - 1]!) < 0) {
      order[j] = order[j - 1]!;
      j--;
    }
    order[j] = v;
  }
}
