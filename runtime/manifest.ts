// What a compiled model needs to know about its weights and caches, without the compiler:
// written into the generated module and plan.json.

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
  scheme: string;
}

export interface KvEntry {
  layers: number;
  kvHeads: number;
  headDim: number;
}

export interface Manifest {
  model: string;
  weights: WeightEntry[];
  /** One entry per attention op; each has a cache per layer. */
  kv: KvEntry[];
  maxContext: number;
  vocab: number;
  arenaBytes: number;
}

export function tensorName(w: WeightEntry, layer?: number): string {
  return w.index === undefined || layer === undefined
    ? w.tensor
    : w.tensor.replaceAll(`{${w.index}}`, String(layer));
}
