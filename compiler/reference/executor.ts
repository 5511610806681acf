// The reference executor: runs the unfused (decomposed) graph op by op in plain f32, with every
// weight decoded by its scheme's reference `decode`. Slow and obviously correct: the fused kernels
// and the generated code are checked against it.

import { roundKv } from "../../runtime/kv-type.ts";
import { type Manifest, schemeAt } from "../../runtime/manifest.ts";
import { Q8_BLOCK, quantizeActivations, quantizeBlocks } from "../../runtime/quant/q8-activations.ts";
import { getScheme } from "../../runtime/quant/registry.ts";
import type { WeightSource } from "../../runtime/weights.ts";
import type { Graph, Node } from "../ir/graph.ts";

export class ReferenceModel {
  /** cache → layer → slot → [position][width] */
  private readonly kv = new Map<string, Float32Array>();
  private readonly decoded = new Map<string, Float32Array>();

  constructor(
    private readonly graph: Graph,
    private readonly manifest: Manifest,
    private readonly weights: WeightSource,
  ) {
    const note = (g: Graph) => {
      for (const n of g.nodes) {
        this.producers.set(n.id, n);
        if (n.body) note(n.body);
      }
    };
    note(graph);
  }

  private readonly producers = new Map<number, Node>();

  /** x as a product with weight `key` reads it: quantized to q8_0 or q8_K where the scheme's kernels do that. */
  private activations(x: Float32Array, key: string, layer: number | undefined): Float32Array {
    const entry = this.manifest.weights.find((e) => e.key === key)!;
    const scheme = schemeAt(entry, entry.layers ? layer : undefined);
    const { wasm } = getScheme(scheme);
    return wasm?.q8 === undefined ? x : quantizeActivations(x, wasm.step);
  }

  /** The weight key of the `dequantize` node whose output is value `id`. */
  private weightOf(id: number): string {
    const n = this.producers.get(id);
    if (n?.op !== "dequantize") throw new Error(`%${id} is not a dequantized weight`);
    return n.weights.w!;
  }

  private weight(key: string, layer: number | undefined): Float32Array {
    const id = `${key}#${layer}`;
    let w = this.decoded.get(id);
    if (!w) {
      const entry = this.manifest.weights.find((e) => e.key === key)!;
      w = new Float32Array(entry.shape.reduce((a, b) => a * b, 1));
      const l = entry.layers ? layer : undefined;
      getScheme(schemeAt(entry, l)).decode(this.weights.bytes(key, l), w);
      this.decoded.set(id, w);
    }
    return w;
  }

  private cache(n: Node, layer: number, slot: string, width: number): Float32Array {
    const id = `${n.attrs.cache}/${layer}/${slot}`;
    let c = this.kv.get(id);
    if (!c) this.kv.set(id, (c = new Float32Array(this.manifest.maxContext * width)));
    return c;
  }

  /** Runs one token at position `pos`; returns the logits. */
  step(token: number, pos: number): Float32Array {
    if (pos >= this.manifest.maxContext)
      throw new Error(`position ${pos} is past the context of ${this.manifest.maxContext}`);
    const env = new Map<number, Float32Array>();
    const g = this.graph;
    env.set(g.params[0]!.id, Float32Array.of(token));
    this.run(g, env, undefined, pos);
    return env.get(g.results[0]!)!;
  }

  private run(g: Graph, env: Map<number, Float32Array>, layer: number | undefined, pos: number): void {
    for (const n of g.nodes) {
      if (n.op === "loop") {
        let carried = n.inputs.map((i) => env.get(i)!);
        for (let l = 0; l < (n.attrs.count as number); l++) {
          n.body!.params.forEach((p, k) => env.set(p.id, carried[k]!));
          this.run(n.body!, env, l, pos);
          carried = n.body!.results.map((r) => env.get(r)!);
        }
        env.set(n.id, new Float32Array(0));
        carried.forEach((c, k) => env.set(-1 - n.id * 16 - k, c));
        continue;
      }
      if (n.op === "loop_result") {
        env.set(n.id, env.get(-1 - n.inputs[0]! * 16 - (n.attrs.index as number))!);
        continue;
      }
      env.set(
        n.id,
        this.op(
          n,
          n.inputs.map((i) => env.get(i)!),
          layer,
          pos,
        ),
      );
    }
  }

  private op(n: Node, ins: Float32Array[], layer: number | undefined, pos: number): Float32Array {
    const x = ins[0]!;
    switch (n.op) {
      case "embed": {
        const hidden = n.shape[0]!;
        const table = this.weight(n.weights.table!, layer);
        return table.slice(x[0]! * hidden, (x[0]! + 1) * hidden);
      }
      case "dequantize":
        return this.weight(n.weights.w!, layer);
      case "rms_norm": {
        // With `heads`, each head's slice is normalized apart, all with the same weight.
        const w = this.weight(n.weights.weight!, layer);
        const d = x.length / ((n.attrs.heads as number | undefined) ?? 1);
        const y = new Float32Array(x.length);
        for (let h = 0; h < x.length; h += d) {
          let ss = 0;
          for (let i = h; i < h + d; i++) ss += x[i]! * x[i]!;
          const r = 1 / Math.sqrt(ss / d + (n.attrs.eps as number));
          for (let i = h; i < h + d; i++) y[i] = x[i]! * r * w[i - h]!;
        }
        return y;
      }
      case "bias": {
        const b = this.weight(n.weights.bias!, layer);
        return x.map((v, i) => v + b[i]!);
      }
      case "scale":
        return x.map((v) => v * (n.attrs.by as number));
      case "sigmoid_gate": {
        const w = this.weight(n.weights.weight!, layer);
        const by = ins[1]!;
        let s = 0;
        for (let i = 0; i < by.length; i++) s += w[i]! * by[i]!;
        const gate = 1 / (1 + Math.exp(-s));
        return x.map((v) => v * gate);
      }
      case "matmul":
        return matmul(this.activations(x, this.weightOf(n.inputs[1]!), layer), ins[1]!, n.shape[0]!);
      case "rope":
        return rope(x, pos, n.attrs.heads as number, n.attrs.theta as number, n.attrs.style as string);
      case "silu":
        return x.map((v) => v / (1 + Math.exp(-v)));
      case "softmax":
        return softmax(x);
      case "mul":
        return x.map((v, i) => v * ins[1]![i]!);
      case "add":
        return x.map((v, i) => v + ins[1]![i]!);
      case "topk": {
        const k = n.attrs.k as number;
        const ids = [...x.keys()].sort((a, b) => x[b]! - x[a]! || a - b).slice(0, k);
        let sum = 0;
        for (const i of ids) sum += x[i]!;
        const norm = n.attrs.normalize ? sum : 1;
        return Float32Array.from([...ids, ...ids.map((i) => x[i]! / norm)]);
      }
      case "expert_mix": {
        const [, sel, G, U, D] = ins as [
          Float32Array,
          Float32Array,
          Float32Array,
          Float32Array,
          Float32Array,
        ];
        const hidden = x.length;
        const ffn = G.length / (n.attrs.experts as number) / hidden;
        const out = new Float32Array(hidden);
        const k = sel.length / 2;
        const [gk, uk, dk] = n.inputs.slice(2).map((i) => this.weightOf(i));
        const xg = this.activations(x, gk!, layer);
        const xu = this.activations(x, uk!, layer);
        for (let j = 0; j < k; j++) {
          const e = sel[j]!;
          const g = matmul(xg, G.subarray(e * ffn * hidden, (e + 1) * ffn * hidden), ffn);
          const u = matmul(xu, U.subarray(e * ffn * hidden, (e + 1) * ffn * hidden), ffn);
          const h = g.map((v, i) => (v / (1 + Math.exp(-v))) * u[i]!);
          const d = matmul(
            this.activations(h, dk!, layer),
            D.subarray(e * hidden * ffn, (e + 1) * hidden * ffn),
            hidden,
          );
          for (let i = 0; i < hidden; i++) out[i]! += sel[k + j]! * d[i]!;
        }
        return out;
      }
      case "kv_write": {
        // Stored as the cache's type stores it, so the kernels are checked against the same K and V.
        const row = roundKv(Float32Array.from(x), this.manifest.kvType ?? "f32");
        this.cache(n, layer ?? 0, n.attrs.slot as string, x.length).set(row, pos * x.length);
        return new Float32Array(0);
      }
      case "attend": {
        const heads = n.attrs.heads as number;
        const kvHeads = n.attrs.kv_heads as number;
        const hd = x.length / heads;
        const width = kvHeads * hd;
        const K = this.cache(n, layer ?? 0, "k", width);
        const V = this.cache(n, layer ?? 0, "v", width);
        const window = n.attrs.window as number;
        const first = window > 0 ? Math.max(0, pos - window + 1) : 0;
        const scale = n.attrs.scale as number | undefined;
        const out = new Float32Array(x.length);
        // With a q8_0 cache, q·k multiplies q8_0 blocks of the queries too (llama.cpp's vec_dot_type for
        // q8_0, and moec's integer products): the queries as those blocks give them back.
        const q = this.manifest.kvType === "q8_0" ? dequantizedBlocks(x) : x;
        for (let h = 0; h < heads; h++) {
          const kvh = Math.floor(h / (heads / kvHeads));
          const scores = new Float32Array(pos - first + 1);
          for (let p = first; p <= pos; p++) {
            let s = 0;
            for (let d = 0; d < hd; d++) s += q[h * hd + d]! * K[p * width + kvh * hd + d]!;
            scores[p - first] = scale === undefined ? s / Math.sqrt(hd) : s * scale;
          }
          const a = softmax(scores);
          for (let p = first; p <= pos; p++) {
            for (let d = 0; d < hd; d++) out[h * hd + d]! += a[p - first]! * V[p * width + kvh * hd + d]!;
          }
        }
        return out;
      }
      default:
        throw new Error(`reference executor: no rule for op \`${n.op}\``);
    }
  }
}

/** x's q8_0 blocks (runtime/quant/q8-activations.ts), each value back as q · d. */
function dequantizedBlocks(x: Float32Array): Float64Array {
  const { q, d } = quantizeBlocks(x);
  return Float64Array.from(q, (v, i) => v * d[Math.floor(i / Q8_BLOCK)]!);
}

function matmul(x: Float32Array, w: Float32Array, out: number): Float32Array {
  const n = x.length;
  const y = new Float32Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += w[o * n + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

function softmax(x: Float32Array): Float32Array {
  let max = Number.NEGATIVE_INFINITY;
  for (const v of x) max = Math.max(max, v);
  const e = x.map((v) => Math.exp(v - max));
  let sum = 0;
  for (const v of e) sum += v;
  return e.map((v) => v / sum);
}

/** Rotary embedding at `pos`. interleaved pairs (2j, 2j+1) as GGUF; half pairs (j, j + d/2) as Hugging Face. */
export function rope(
  x: Float32Array,
  pos: number,
  heads: number,
  theta: number,
  style: string,
): Float32Array {
  const hd = x.length / heads;
  const out = new Float32Array(x);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < hd / 2; j++) {
      const angle = pos * theta ** ((-2 * j) / hd);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      const [a, b] =
        style === "half" ? [h * hd + j, h * hd + j + hd / 2] : [h * hd + 2 * j, h * hd + 2 * j + 1];
      out[a] = x[a]! * c - x[b]! * s;
      out[b] = x[a]! * s + x[b]! * c;
    }
  }
  return out;
}
