// Loads a compiled model (the generated module) and gives it weights, KV caches and its arena.
// Everything is allocated here, once; the forward pass allocates nothing.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Manifest } from "./manifest.ts";
import { f16Table } from "./quant/half.ts";
import { getScheme } from "./quant/registry.ts";
import type { WeightSource } from "./weights.ts";

export interface Packed {
  u8: Uint8Array;
  i8: Int8Array;
  f32: Float32Array;
}

export interface Runtime {
  weights: Record<string, Packed[]>;
  vectors: Record<string, Float32Array[]>;
  kv: Float32Array[][];
  arena: Float32Array;
  f16: Float32Array;
  decode(scheme: string, src: Uint8Array, dst: Float32Array): void;
}

export interface CompiledModule {
  manifest: Manifest;
  forward(rt: Runtime, token: number, pos: number): Float32Array;
}

/** Imports generated JavaScript from memory (a compile that was never written to disk). */
export async function importModuleSource(js: string): Promise<CompiledModule> {
  return (await import(
    `data:text/javascript;base64,${Buffer.from(js).toString("base64")}`
  )) as CompiledModule;
}

/** Imports `DIR/model.js`, the output of `moec compile`. */
export async function importModuleDir(dir: string): Promise<CompiledModule> {
  return importModuleSource(readFileSync(join(dir, "model.js"), "utf8"));
}

/** Copies into a fresh buffer so the f32 view is aligned whatever the source's offset. */
function pack(bytes: Uint8Array): Packed {
  const copy = bytes.slice();
  return {
    u8: copy,
    i8: new Int8Array(copy.buffer),
    f32: new Float32Array(copy.buffer, 0, copy.length >>> 2),
  };
}

/** Called as weights load: bytes of the weights so far and in all. */
export type LoadProgress = (doneBytes: number, totalBytes: number) => void;

export function allocateRuntime(m: Manifest, source: WeightSource, onProgress?: LoadProgress): Runtime {
  const weights: Record<string, Packed[]> = {};
  const vectors: Record<string, Float32Array[]> = {};
  const bytesOf = (w: Manifest["weights"][number]) => {
    const s = getScheme(w.scheme);
    return (w.shape.reduce((a, b) => a * b, 1) / s.blockSize) * s.blockBytes * Math.max(1, w.layers);
  };
  const total = m.weights.reduce((n, w) => n + bytesOf(w), 0);
  let done = 0;
  for (const w of m.weights) {
    const layers = w.layers === 0 ? [undefined] : [...Array(w.layers).keys()];
    if (w.shape.length === 1) {
      // Norm weights are tiny; the kernels read them as f32.
      vectors[w.key] = layers.map((l) => {
        const out = new Float32Array(w.shape[0]!);
        getScheme(w.scheme).decode(source.bytes(w.key, l), out);
        return out;
      });
    } else {
      weights[w.key] = layers.map((l) => pack(source.bytes(w.key, l)));
    }
    done += bytesOf(w);
    onProgress?.(done, total);
  }
  const kv = m.kv.flatMap((c) => {
    const slot = () =>
      Array.from({ length: c.layers }, () => new Float32Array(m.maxContext * c.kvHeads * c.headDim));
    return [slot(), slot()];
  });
  return {
    weights,
    vectors,
    kv,
    arena: new Float32Array(Math.ceil(m.arenaBytes / 4)),
    f16: f16Table,
    decode: (scheme, src, dst) => getScheme(scheme).decode(src, dst),
  };
}

/** A loaded model: step one token at a time. */
export class ModelInstance {
  readonly rt: Runtime;
  constructor(
    readonly module: CompiledModule,
    weights: WeightSource,
    onProgress?: LoadProgress,
  ) {
    this.rt = allocateRuntime(module.manifest, weights, onProgress);
  }

  step(token: number, pos: number): Float32Array {
    if (!Number.isInteger(pos) || pos < 0 || pos >= this.module.manifest.maxContext) {
      throw new RangeError(`position ${pos} is outside the context of ${this.module.manifest.maxContext}`);
    }
    return this.module.forward(this.rt, token, pos);
  }
}
