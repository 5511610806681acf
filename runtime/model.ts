// Loads a compiled model (the generated module) and gives it weights, KV caches and its arena.
// Everything is allocated here, once; the forward pass allocates nothing.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Heap, layout, type Region } from "./heap.ts";
import type { Manifest } from "./manifest.ts";
import { f16Table } from "./quant/half.ts";
import { getScheme } from "./quant/registry.ts";
import { ThreadPool } from "./threads.ts";
import type { WeightSource } from "./weights.ts";

/** A weight in the heap: whole-heap views, and where its bytes start. */
export interface Packed {
  u8: Uint8Array;
  i8: Int8Array;
  f32: Float32Array;
  base: number;
}

/** A WebAssembly kernel of the model: matrix-vector products over byte addresses in the heap. */
export type WasmKernel = (
  w: number,
  x: number,
  y: number,
  r0: number,
  r1: number,
  alpha: number,
  acc: number,
) => void;

export interface Runtime {
  weights: Record<string, Packed[]>;
  vectors: Record<string, Float32Array[]>;
  kv: Float32Array[][];
  arena: Float32Array;
  f16: Float32Array;
  decode(scheme: string, src: Uint8Array, dst: Float32Array): void;
  kernels: Record<string, WasmKernel>;
}

export interface CompiledModule {
  manifest: Manifest;
  /** The model's WebAssembly kernels, base64; empty when every kernel is TypeScript. */
  wasm: string;
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

/** Called as weights load: bytes of the weights so far and in all. */
export type LoadProgress = (doneBytes: number, totalBytes: number) => void;

/** Every buffer the forward pass touches, laid out in one heap: weights, norm vectors, KV caches, arena. */
export interface RuntimeOptions {
  onProgress?: LoadProgress;
  /** Threads for the WebAssembly kernels, the calling one included (default 1). */
  threads?: number;
}

export function allocateRuntime(
  module: Pick<CompiledModule, "manifest" | "wasm">,
  source: WeightSource,
  { onProgress, threads = 1 }: RuntimeOptions = {},
): Runtime & { heap: Heap; pool?: ThreadPool } {
  const m = module.manifest;
  const bytesOf = (w: Manifest["weights"][number]) => {
    const s = getScheme(w.scheme);
    const one = (w.shape.reduce((a, b) => a * b, 1) / s.blockSize) * s.blockBytes;
    // Norm vectors are decoded to f32 once: the kernels read them as floats.
    return w.shape.length === 1 ? w.shape[0]! * 4 : one;
  };
  const layersOf = (w: Manifest["weights"][number]) => Math.max(1, w.layers);
  const kvFloats = (c: Manifest["kv"][number]) => m.maxContext * c.kvHeads * c.headDim;
  const regions: Region[] = [
    ...m.weights.flatMap((w) =>
      Array.from({ length: layersOf(w) }, () => ({ label: w.key, bytes: bytesOf(w) })),
    ),
    ...m.kv.flatMap((c) =>
      Array.from({ length: 2 * c.layers }, () => ({ label: "kv", bytes: kvFloats(c) * 4 })),
    ),
    { label: "arena", bytes: m.arenaBytes },
  ];
  const { offsets, total } = layout(regions);
  const heap = new Heap(total);
  let next = 0;
  const weights: Record<string, Packed[]> = {};
  const vectors: Record<string, Float32Array[]> = {};
  const totalWeights = m.weights.reduce((n, w) => n + bytesOf(w) * layersOf(w), 0);
  let done = 0;
  for (const w of m.weights) {
    const layers = w.layers === 0 ? [undefined] : [...Array(w.layers).keys()];
    const scheme = getScheme(w.scheme);
    if (w.shape.length === 1) {
      vectors[w.key] = layers.map((l) => {
        const out = heap.floats(offsets[next++]!, w.shape[0]!);
        scheme.decode(source.bytes(w.key, l), out);
        return out;
      });
    } else {
      weights[w.key] = layers.map((l) => {
        const base = offsets[next++]!;
        const bytes = source.bytes(w.key, l);
        if (bytes.length !== bytesOf(w)) {
          throw new Error(`${w.key}: ${bytes.length} bytes where its shape and scheme need ${bytesOf(w)}`);
        }
        heap.u8.set(bytes, base);
        return { u8: heap.u8, i8: heap.i8, f32: heap.f32, base };
      });
    }
    done += bytesOf(w) * layersOf(w);
    onProgress?.(done, totalWeights);
  }
  const kv = m.kv.flatMap((c) => {
    const slot = () => Array.from({ length: c.layers }, () => heap.floats(offsets[next++]!, kvFloats(c)));
    return [slot(), slot()];
  });
  const arena = heap.floats(offsets[next++]!, Math.ceil(m.arenaBytes / 4));
  let kernels: Record<string, WasmKernel> = {};
  let pool: ThreadPool | undefined;
  if (module.wasm) {
    const wasm = new WebAssembly.Module(Buffer.from(module.wasm, "base64"));
    const { exports } = new WebAssembly.Instance(wasm, { env: { memory: heap.memory } });
    kernels = exports as Record<string, WasmKernel>;
    if (threads > 1) {
      pool = new ThreadPool(threads, heap.memory, wasm, Object.keys(exports).sort());
      kernels = pool.wrap(exports);
    }
  }
  return {
    heap,
    pool,
    weights,
    vectors,
    kv,
    arena,
    f16: f16Table,
    decode: (scheme, src, dst) => getScheme(scheme).decode(src, dst),
    kernels,
  };
}

/** A loaded model: step one token at a time. */
export class ModelInstance {
  readonly rt: ReturnType<typeof allocateRuntime>;
  constructor(
    readonly module: CompiledModule,
    weights: WeightSource,
    options: RuntimeOptions = {},
  ) {
    this.rt = allocateRuntime(module, weights, options);
  }

  /** Stops the worker threads, if any. */
  close(): void {
    this.rt.pool?.close();
  }

  step(token: number, pos: number): Float32Array {
    if (!Number.isInteger(pos) || pos < 0 || pos >= this.module.manifest.maxContext) {
      throw new RangeError(`position ${pos} is outside the context of ${this.module.manifest.maxContext}`);
    }
    return this.module.forward(this.rt, token, pos);
  }
}
