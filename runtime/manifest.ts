// What a compiled model needs to know about its weights and caches, without the compiler:
// written into the generated module and plan.json.
import type { KvType } from "./kv-type.ts";

export interface WeightEntry {
  /** `tok_embed`, `layer.wq`. */
  key: string;
  /** Checkpoint tensor name; `{i}` (or the spec's index name) stands for the layer. */
  tensor: string;
  /** The layer index placeholder in `tensor`, for per-layer weights. */
  index?: string;
  shape: number[];
  /** 0 for a weight outside the layer loop, else the number of layers. */
  layers: number;
  /** The scheme of every layer, or "mixed" when they differ: then `schemes` has each layer's. */
  scheme: string;
  schemes?: string[];
  /** Stored 8 rows interleaved on the CPU, in every layer whose scheme has that layout (runtime/quant/rows8.ts):
   * the runtime repacks the file's rows as they load. */
  rows8?: boolean;
}

/** The scheme of `w` in `layer` (ignored for a weight outside the loop). */
export function schemeAt(w: Pick<WeightEntry, "scheme" | "schemes">, layer?: number): string {
  if (!w.schemes) return w.scheme;
  if (layer === undefined || w.schemes[layer] === undefined)
    throw new RangeError(`a per-layer scheme needs a layer in 0..${w.schemes.length - 1}, not ${layer}`);
  return w.schemes[layer]!;
}

/** The distinct schemes of a weight, in layer order. */
export function schemesOf(w: Pick<WeightEntry, "scheme" | "schemes">): string[] {
  return w.schemes ? [...new Set(w.schemes)] : [w.scheme];
}

export interface KvEntry {
  layers: number;
  kvHeads: number;
  headDim: number;
}

/**
 * One MoE op (a `moe_ffn` kernel): what the runtime needs to place its experts on the device or offload
 * them to an expert cache, and to guess the next layer's experts for prefetch.
 */
export interface MoeEntry {
  /** Manifest keys of the stacked expert matrices, [experts, rows, cols] per layer. */
  gate: string;
  up: string;
  down: string;
  /** Manifest key of the router, [experts, hidden]. */
  router: string;
  experts: number;
  topK: number;
  /** Layers of the expert weights (0 for a MoE outside the layer loop: its experts always stay resident). */
  layers: number;
  /** The RMS norm weight in front of the router and its eps; absent when the router reads no norm. */
  norm?: string;
  eps?: number;
}

export interface Manifest {
  model: string;
  weights: WeightEntry[];
  /** One entry per attention op; each has a cache per layer. */
  kv: KvEntry[];
  /** The KV caches' element type (runtime/kv-type.ts); absent in modules compiled before the choice: f32. */
  kvType?: KvType;
  /** One entry per MoE op, in the order the forward pass calls `rt.experts(index, …)`. */
  moe?: MoeEntry[];
  maxContext: number;
  vocab: number;
  /** The activation arena and kernel scratch: `prefill.tokens` copies of one token's, then the q8 region
   * and the shared scratch. */
  arenaBytes: number;
  /** The batched prefill: tokens it runs at once, and the bytes of one token's copy of the arena. */
  prefill?: { tokens: number; strideBytes: number };
  /** The matrix-vector integer kernels' quantized activation vector (runtime/q8-kernels.ts): `bytes` at
   * arena byte `offset`, then a two-entry list. Absent when no kernel quantizes. */
  q8Scratch?: { offset: number; bytes: number };
  /** Kernel scratch a call uses once for all of a batch's tokens (attention's transposed keys and widened
   * values): `bytes` at arena byte `offset`, after the tokens' copies and the q8 region. */
  sharedScratch?: { offset: number; bytes: number };
}

export function tensorName(w: WeightEntry, layer?: number): string {
  return w.index === undefined || layer === undefined
    ? w.tensor
    : w.tensor.replaceAll(`{${w.index}}`, String(layer));
}

/**
 * The manifest with its KV caches repeated once per sequence: the device plan then places and accounts
 * every sequence's caches like the rest (a budget that cannot hold them fails before anything loads).
 */
export function withSequences<M extends Pick<Manifest, "kv">>(m: M, sequences: number): M {
  if (!Number.isInteger(sequences) || sequences < 1) {
    throw new RangeError(`sequences: expected a whole number ≥ 1, found ${sequences}`);
  }
  return sequences === 1 ? m : { ...m, kv: Array.from({ length: sequences }, () => m.kv).flat() };
}
