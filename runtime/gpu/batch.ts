// The batch program on a GPU backend (runtime/gpu/program.ts's GpuBatch, built by
// compiler/codegen/gpu/batch.ts): a prompt in batches of up to B tokens (the batched prefill), or one token
// for each of up to B sequences (batched decoding). Per batch the host uploads the frame (the token count)
// and each token's id and position into its arena copy; per MoE layer it reads back the
// batch's top-k ids once, groups the tokens by expert, fetches each chosen expert once (through the expert
// cache when experts are offloaded: in groups the cache holds at once, the device drained between groups
// since a miss overwrites a slot) and uploads each expert's token list.
//
// A prefill reads its logits back once, after the last batch, for its last token. A decoding batch runs
// every step that binds a KV cache once per token, with that token's sequence's caches and its own frame
// (naming it as the dispatch's first token), and reads every token's logits back.
import type { Manifest } from "../manifest.ts";
import { type Backend, type GpuBuffer, GpuError } from "./backend.ts";
import { type Ready, readyStep } from "./forward.ts";
import type { ExpertBuffers, GpuPlaced } from "./place.ts";
import {
  type BatchBinding,
  type BatchKernelStep,
  type BatchStep,
  type GpuBatch,
  type GpuProgram,
  innerSteps,
} from "./program.ts";

/** One expert's tokens in a batch: entries are the token's index | its pick << 16. */
interface ExpertTokens {
  expert: number;
  entries: number[];
}

export class BatchRunner {
  private readonly ready = new Map<BatchKernelStep, Ready>();
  /** The steps that bind a KV cache (per-token twins): a decoding batch dispatches them token by token. */
  private readonly bindsKv = new Set<BatchKernelStep>();
  private readonly batch: GpuBatch;
  /** Tokens per batch on this device (the arena copies placed). */
  readonly tokens: number;
  private readonly lists: GpuBuffer[];
  private readonly groups: ExpertTokens[][];
  private readonly current: (ExpertBuffers | undefined)[];
  private list: GpuBuffer | undefined;
  /** Per token of a decoding batch, the frame its KV steps read (naming it as the first token). */
  private readonly frames: GpuBuffer[];
  /** Per token of a decoding batch, its sequence's KV caches ([cache * 2 + (0 K, 1 V)][layer]); absent
   * for a prompt, whose steps bind the current sequence's (`placed.kv`). */
  private kv: readonly GpuBuffer[][][] | undefined;
  private readonly frame = new Uint32Array(3);
  /** A token's id and position, as its copy of the arena holds them at `tko`. */
  private readonly slot = new Float32Array(2);
  private readonly logits: Float32Array;
  private readonly each: Float32Array[] = [];

  constructor(
    readonly backend: Backend,
    readonly program: GpuProgram,
    readonly manifest: Manifest,
    readonly placed: GpuPlaced,
  ) {
    this.batch = program.batch!;
    this.tokens = placed.copies ?? 1;
    const moes = manifest.moe ?? [];
    this.groups = moes.map(() => []);
    this.current = moes.map(() => undefined);
    this.lists = Array.from({ length: this.batch.lists }, (_, e) =>
      placed.memory.materialize((this.batch.tokens + 1) * 4, `token list ${e}`),
    );
    this.frames = Array.from({ length: this.tokens }, (_, t) =>
      placed.memory.materialize(program.frameBytes, `frame ${t}`, "uniform"),
    );
    this.logits = new Float32Array(program.logits.count);
  }

  /** Whether this device runs batches (at least two arena copies fit under its binding limit). */
  static usable(program: GpuProgram, placed: GpuPlaced): boolean {
    return !!program.batch && (placed.copies ?? 1) >= 2 && !!placed.expertsFor;
  }

  /** Makes every batch kernel's pipelines (one per weight chunk), so one that does not compile fails at load. */
  async prepare(): Promise<void> {
    const walk = async (steps: BatchStep[]) => {
      for (const s of steps) {
        if (s.op !== "kernel") {
          await walk(innerSteps(s));
          continue;
        }
        this.ready.set(s, await readyStep(this.backend, this.placed, this.program, s));
        if (s.bind.some((b) => b.kind === "kv")) {
          if (!s.perToken) throw new Error(`kernel ${s.kernel} binds a KV cache but is not a per-token twin`);
          this.bindsKv.add(s);
        }
      }
    };
    await walk(this.batch.steps);
    await walk(this.batch.tail);
    await walk(this.batch.head);
  }

  private buffer(
    b: BatchBinding,
    layer: number,
    chunk: number,
    kernel: string,
    kv: readonly GpuBuffer[][],
  ): GpuBuffer {
    const { placed } = this;
    switch (b.kind) {
      case "weight": {
        const per = placed.weights.get(b.key);
        if (!per) throw new GpuError(this.backend.name, `weight ${b.key} is not on the device`, kernel);
        const w = per[per.length > 1 ? layer : 0]!;
        return w.buffers[Math.min(chunk, w.buffers.length - 1)]!;
      }
      case "q8":
        if (!placed.q8) throw new GpuError(this.backend.name, "no buffer for quantized activations", kernel);
        return placed.q8;
      case "kv":
        return kv[b.cache * 2 + (b.slot === "v" ? 1 : 0)]![layer]!;
      case "expert": {
        const e = this.current[b.moe];
        if (!e) throw new Error(`kernel ${kernel} runs outside MoE op ${b.moe}'s experts`);
        const c = e[b.role].buffers;
        return c[Math.min(chunk, c.length - 1)]!;
      }
      case "list":
        if (!this.list) throw new Error(`kernel ${kernel} runs without a token list`);
        return this.list;
    }
  }

  private readonly args: GpuBuffer[] = [];

  /** Submits everything recorded and waits for it (a 4-byte read). */
  private async drain(): Promise<void> {
    const { placed } = this;
    await this.backend.read(placed.arena, 0, 4, placed.staging, new Uint8Array(4));
  }

  private async run(steps: BatchStep[], layer: number, n: number): Promise<void> {
    const { backend, placed } = this;
    for (const s of steps) {
      if (s.op === "loop") {
        for (let l = 0; l < s.count; l++) await this.run(s.body, l, n);
        continue;
      }
      if (s.op === "layers") {
        await this.run(s.cases[s.table[layer]!]!, layer, n);
        continue;
      }
      if (s.op === "picks") {
        const ids = new Float32Array(n * s.k);
        const bytes = new Uint8Array(ids.buffer);
        for (let at = 0; at < bytes.length; at += placed.staging.bytes) {
          const m = Math.min(placed.staging.bytes, bytes.length - at);
          await backend.read(placed.arena, s.gather * 4 + at, m, placed.staging, bytes.subarray(at, at + m));
        }
        const by = new Map<number, number[]>();
        for (let t = 0; t < n; t++) {
          for (let j = 0; j < s.k; j++) {
            const e = ids[t * s.k + j]!;
            let list = by.get(e);
            if (!list) by.set(e, (list = []));
            list.push(t | (j << 16));
          }
        }
        this.groups[s.moe] = [...by.entries()]
          .sort(([a], [b]) => a - b)
          .map(([expert, entries]) => ({ expert, entries }));
        continue;
      }
      if (s.op === "experts") {
        const used = this.groups[s.moe]!;
        const per = Math.max(1, Math.min(used.length, placed.expertGroup![s.moe]!));
        const bufs: ExpertBuffers[] = [];
        for (let a = 0; a < used.length; a += per) {
          const part = used.slice(a, a + per);
          // A cache miss rewrites a slot the previous group's kernels read: let them finish first.
          if (a > 0) await this.drain();
          placed.expertsFor!(
            s.moe,
            layer,
            part.map((u) => u.expert),
            bufs,
          );
          for (let i = 0; i < part.length; i++) {
            const u = part[i]!;
            const list = this.lists[u.expert]!;
            placed.memory.upload(list, Uint32Array.from([u.entries.length, ...u.entries]), 0, "activations");
            this.list = list;
            this.current[s.moe] = bufs[i];
            await this.run(s.body, layer, n);
          }
        }
        this.current[s.moe] = undefined;
        this.list = undefined;
        continue;
      }
      if (this.kv && this.bindsKv.has(s)) {
        // Each token with its own sequence's caches: one dispatch per token, its frame naming it.
        for (let t = 0; t < n; t++) this.dispatch(s, layer, this.frames[t]!, this.kv[t]!, 1);
      } else this.dispatch(s, layer, placed.frame, placed.kv, n);
    }
  }

  /** Kernel step `s` (once per weight chunk), with `frame` and the KV caches `kv`; z = `z` if per token. */
  private dispatch(
    s: BatchKernelStep,
    layer: number,
    frame: GpuBuffer,
    kv: readonly GpuBuffer[][],
    z: number,
  ): void {
    const r = this.ready.get(s)!;
    const args = this.args;
    for (let d = 0; d < r.pipelines.length; d++) {
      args.length = 0;
      args.push(this.placed.arena, frame);
      for (const b of s.bind) args.push(this.buffer(b, layer, r.chunks[d]!, s.kernel, kv));
      const g = r.grids[d]!;
      this.backend.dispatch(r.pipelines[d]!, args, s.perToken ? [g[0], g[1], z] : g);
    }
  }

  /** The frame for a batch of n tokens, and each token's id and position into its copy of the arena. */
  private upload(tokens: readonly number[], position: (t: number) => number): void {
    const { placed } = this;
    const n = tokens.length;
    this.frame[0] = n;
    this.frame[2] = 0;
    placed.memory.upload(placed.frame, this.frame, 0, "activations");
    for (let t = 0; t < n; t++) {
      this.slot[0] = tokens[t]!;
      this.slot[1] = position(t);
      placed.memory.upload(
        placed.arena,
        this.slot,
        (t * this.batch.stride + this.batch.tko) * 4,
        "activations",
      );
    }
  }

  /** `tokens` at positions pos0, pos0 + 1, … through the model in batches, every KV row written; resolves
   * to the last token's logits (this object's own array, reused). */
  async prefill(tokens: readonly number[], pos0: number): Promise<Float32Array> {
    const m = this.manifest;
    if (tokens.length === 0) throw new RangeError("prefill of no tokens");
    for (const t of tokens) {
      if (!(t >= 0 && t < m.vocab && Number.isInteger(t)))
        throw new RangeError(`token ${t} is outside the vocabulary of ${m.vocab}`);
    }
    if (!Number.isInteger(pos0) || pos0 < 0 || pos0 + tokens.length > m.maxContext) {
      throw new RangeError(
        `positions ${pos0}..${pos0 + tokens.length - 1} are outside the context of ${m.maxContext}`,
      );
    }
    const { placed } = this;
    for (let i = 0; i < tokens.length; i += this.tokens) {
      const n = Math.min(this.tokens, tokens.length - i);
      // The previous batch's kernels read the frame and the token ids: let them finish first.
      if (i > 0) await this.drain();
      this.upload(tokens.slice(i, i + n), (t) => pos0 + i + t);
      await this.run(this.batch.steps, 0, n);
      if (i + n === tokens.length) await this.run(this.batch.tail, 0, n);
    }
    const { offset, count } = this.program.logits;
    await this.backend.read(
      placed.arena,
      offset * 4,
      count * 4,
      placed.staging,
      new Uint8Array(this.logits.buffer),
    );
    return this.logits;
  }

  /**
   * One token for each of up to `tokens` sequences: tokens[t] at positions[t], with `kv[t]` its
   * sequence's KV caches (its row written there). Resolves to each token's logits (arrays the next call
   * reuses). The caller checks the tokens, the positions and that no two tokens share caches.
   */
  async decode(
    tokens: readonly number[],
    positions: readonly number[],
    kv: readonly GpuBuffer[][][],
  ): Promise<Float32Array[]> {
    const n = tokens.length;
    if (n < 1 || n > this.tokens || positions.length !== n || kv.length !== n)
      throw new RangeError(
        `a decoding batch of ${n} tokens (1 to ${this.tokens}, each with a position and caches)`,
      );
    const { placed, backend } = this;
    this.upload(tokens, (t) => positions[t]!);
    for (let t = 0; t < n; t++) {
      this.frame[2] = t;
      placed.memory.upload(this.frames[t]!, this.frame, 0, "activations");
    }
    this.kv = kv;
    try {
      await this.run(this.batch.steps, 0, n);
      await this.run(this.batch.head, 0, n);
    } finally {
      this.kv = undefined;
    }
    const { offset, count } = this.program.logits;
    for (let t = 0; t < n; t++) {
      const out = (this.each[t] ??= new Float32Array(count));
      const at = (t * this.batch.stride + offset) * 4;
      await backend.read(placed.arena, at, count * 4, placed.staging, new Uint8Array(out.buffer));
    }
    return this.each.slice(0, n);
  }
}
