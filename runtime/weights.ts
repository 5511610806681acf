// Weights as the kernels see them: each (key, layer) is the packed bytes of one tensor in its scheme.
// Where the bytes come from (a GGUF file, random numbers for tests) is the source's business.
import { type Manifest, schemeAt, type WeightEntry } from "./manifest.ts";
import { getScheme } from "./quant/registry.ts";

export interface WeightSource {
  /** Packed bytes of `key` (for a per-layer weight, of that layer) in the manifest's scheme. */
  bytes(key: string, layer?: number): Uint8Array;
}

export class MemoryWeights implements WeightSource {
  private readonly data = new Map<string, Uint8Array>();
  set(key: string, layer: number | undefined, bytes: Uint8Array): void {
    this.data.set(layer === undefined ? key : `${key}#${layer}`, bytes);
  }
  bytes(key: string, layer?: number): Uint8Array {
    const b = this.data.get(layer === undefined ? key : `${key}#${layer}`);
    if (!b) throw new Error(`no weight ${key}${layer === undefined ? "" : ` for layer ${layer}`}`);
    return b;
  }
}

/** A small fast PRNG (mulberry32): reproducible random weights from a seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(rand: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

export interface RandomOptions {
  seed?: number;
  /** Multiplies the output head so greedy decoding has clear winners. */
  headScale?: number;
  headKey?: string;
}

/** f32 values for one tensor: matrices ~ N(0, 1/in), vectors (norms) ~ 1 + N(0, 0.1²). */
export function randomTensor(w: WeightEntry, rand: () => number, scale = 1): Float32Array {
  const n = w.shape.reduce((a, b) => a * b, 1);
  const g = gaussian(rand);
  const out = new Float32Array(n);
  const std = w.shape.length === 1 ? 0.1 : scale / Math.sqrt(w.shape.at(-1)!);
  for (let i = 0; i < n; i++) out[i] = (w.shape.length === 1 ? 1 : 0) + std * g();
  return out;
}

export function encodeTensor(w: WeightEntry, values: Float32Array, layer?: number): Uint8Array {
  const s = getScheme(schemeAt(w, w.layers ? layer : undefined));
  const out = new Uint8Array((values.length / s.blockSize) * s.blockBytes);
  s.encode(values, out);
  return out;
}

export function randomWeights(m: Manifest, opts: RandomOptions = {}): MemoryWeights {
  const rand = rng(opts.seed ?? 1);
  const out = new MemoryWeights();
  for (const w of m.weights) {
    const scale = w.key === opts.headKey ? (opts.headScale ?? 1) : 1;
    const layers = w.layers === 0 ? [undefined] : [...Array(w.layers).keys()];
    for (const l of layers) out.set(w.key, l, encodeTensor(w, randomTensor(w, rand, scale), l));
  }
  return out;
}
