// Loads a compiled model (the generated module) and gives it weights, KV caches and its arena.
// Everything is allocated here, once, under a device budget (runtime/memory/place.ts); the forward pass
// allocates nothing.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Heap } from "./heap.ts";
import { sequenceSet, splitBySequence, stepSets } from "./kv-sets.ts";
import { type Manifest, withSequences } from "./manifest.ts";
import type { MemoryStats } from "./memory/memory-stats.ts";
import { type MemoryOptions, type Packed, type PlacedMemory, placeModel } from "./memory/place.ts";
import { composeQ8Kernels } from "./q8-kernels.ts";
import { f16Table } from "./quant/half.ts";
import { getScheme } from "./quant/registry.ts";
import { ThreadPool } from "./threads.ts";
import { chooseKernels } from "./wasm-kernels.ts";
import type { WeightSource } from "./weights.ts";

export type { LoadProgress, Packed } from "./memory/place.ts";

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
  /** The whole heap as one Packed with base 0: expert kernels read at the addresses `experts` gives. */
  heap: Packed;
  /** The chosen experts' gate/up/down addresses for MoE op `moe` in `layer` (see the generated module). */
  experts(moe: number, layer: number, s: Float32Array, so: number): Float64Array;
  /** One expert's gate/up/down addresses, for the batched prefill. */
  expert(moe: number, layer: number, expert: number): Float64Array;
  /** The residual stream as `layer` leaves it: the runtime may load the next layer's guessed experts. */
  prefetch(moe: number, layer: number, x: Float32Array, xo: number): void;
}

export interface CompiledModule {
  manifest: Manifest;
  /** The model's WebAssembly kernels, base64; empty when every kernel is TypeScript. */
  wasm: string;
  /** The same kernels with relaxed SIMD (fused multiply-adds), chosen at load time where supported. */
  wasmRelaxed?: string;
  forward(rt: Runtime, token: number, pos: number): Float32Array;
  /** Up to `manifest.prefill.tokens` tokens at consecutive positions at once; the last one's logits
   * (skipped when `logits` is false, for a prompt's batches before its last; older modules ignore it).
   * Absent in modules compiled before batched prefill. */
  prefill?(rt: Runtime, tokens: ArrayLike<number>, pos0: number, logits?: boolean): Float32Array;
  /** One token for each of up to `manifest.prefill.tokens` sequences: token b at position P[b] with the
   * KV caches S[b] (laid out as `Runtime.kv`); each one's logits. Absent before batched decoding. */
  decode?(
    rt: Runtime,
    tokens: ArrayLike<number>,
    P: ArrayLike<number>,
    S: readonly Float32Array[][][],
  ): Float32Array[];
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

/** Every buffer the forward pass touches, laid out in one heap under a device budget: weights, norm
 * vectors, resident experts, expert cache slots, KV caches, arena (see MemoryOptions). */
export interface RuntimeOptions extends MemoryOptions {
  /** Threads for the WebAssembly kernels, the calling one included (default 1). */
  threads?: number;
  /** Sequences decoded at once (a server's parallel slots), each with its own KV caches (default 1). */
  sequences?: number;
}

export function allocateRuntime(
  module: Pick<CompiledModule, "manifest" | "wasm" | "wasmRelaxed">,
  source: WeightSource,
  { threads = 1, sequences = 1, ...memoryOptions }: RuntimeOptions = {},
): Runtime & { heap: Heap; pool?: ThreadPool; relaxedSimd: boolean; placed: PlacedMemory } {
  const placed = placeModel(withSequences(module.manifest, sequences), source, memoryOptions);
  const { heap, weights, vectors, kv, arena } = placed;
  let kernels: Record<string, WasmKernel> = {};
  let pool: ThreadPool | undefined;
  const chosen = chooseKernels(module);
  if (chosen) {
    const wasm = chosen.module;
    const { exports } = new WebAssembly.Instance(wasm, { env: { memory: heap.memory } });
    kernels = exports as Record<string, WasmKernel>;
    if (threads > 1) {
      pool = new ThreadPool(threads, heap.memory, wasm, Object.keys(exports).sort());
      kernels = pool.wrap(exports);
    }
    kernels = composeQ8Kernels(kernels, exports, module.manifest, arena);
  }
  return {
    heap,
    placed,
    experts: placed.experts,
    expert: placed.expert,
    prefetch: placed.prefetch,
    pool,
    relaxedSimd: chosen?.relaxed ?? false,
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
  /** Each sequence's KV caches ([sequence][cache * 2 + k/v][layer]); `rt.kv` is the current one's. */
  private readonly kvSets: Float32Array[][][];
  private current = 0;
  constructor(
    readonly module: CompiledModule,
    weights: WeightSource,
    options: RuntimeOptions = {},
  ) {
    this.rt = allocateRuntime(module, weights, options);
    this.kvSets = splitBySequence(this.rt.kv, module.manifest.kv.length * 2);
    this.rt.kv = this.kvSets[0]!;
  }

  /** How many sequences have KV caches (RuntimeOptions.sequences). */
  get sequences(): number {
    return this.kvSets.length;
  }

  /**
   * Makes `s` the sequence that prefill and step read and write the KV caches of: the generated module
   * reads `rt.kv` on every call, so switching is a pointer swap, not a copy.
   */
  useSequence(s: number): void {
    if (s === this.current) return;
    this.rt.kv = sequenceSet(this.kvSets, s);
    this.current = s;
  }

  /** Stops the worker threads, if any, and closes the file offloaded experts are read from. */
  close(): void {
    this.rt.pool?.close();
    this.rt.placed.close();
  }

  /** Device peak and budget, expert cache hits, misses and loads: `--stats` and `--json`'s "memory". */
  memory(): MemoryStats {
    return this.rt.placed.memory();
  }

  /**
   * Tokens at positions pos0, pos0 + 1, … (a prompt), in batches of the module's prefill size: the KV
   * caches get every position; returns the last token's logits (a view into the arena, valid until the
   * next call). Same logits as stepping token by token (see prefill.test.ts).
   */
  prefill(tokens: readonly number[], pos0 = 0): Float32Array {
    const max = this.module.manifest.maxContext;
    if (tokens.length === 0) throw new RangeError("prefill needs at least one token");
    if (!Number.isInteger(pos0) || pos0 < 0 || pos0 + tokens.length > max) {
      throw new RangeError(
        `positions ${pos0} to ${pos0 + tokens.length - 1} are outside the context of ${max}`,
      );
    }
    const batch = this.module.prefill ? (this.module.manifest.prefill?.tokens ?? 0) : 0;
    if (batch < 2) {
      let logits: Float32Array = new Float32Array(0);
      for (let i = 0; i < tokens.length; i++) logits = this.module.forward(this.rt, tokens[i]!, pos0 + i);
      return logits;
    }
    let logits: Float32Array = new Float32Array(0);
    for (let i = 0; i < tokens.length; i += batch) {
      logits = this.module.prefill!(
        this.rt,
        tokens.slice(i, i + batch),
        pos0 + i,
        i + batch >= tokens.length,
      );
    }
    return logits;
  }

  /**
   * One token for each of several sequences at once (batched decoding): tokens[i] at position
   * positions[i] of sequence seqs[i], all distinct. The generated `decode` reads each weight once per
   * batch of up to the module's prefill size; the logits are the same as stepping each sequence alone
   * (see model.test.ts). Returns each token's logits: views valid until the next call.
   */
  stepBatch(
    tokens: readonly number[],
    positions: readonly number[],
    seqs: readonly number[],
  ): Float32Array[] {
    const n = tokens.length;
    const sets = stepSets(this.kvSets, tokens, positions, seqs, this.module.manifest.maxContext);
    const batch = this.module.decode ? (this.module.manifest.prefill?.tokens ?? 0) : 0;
    if (batch < 2 || n === 1) {
      const current = this.current;
      const out = seqs.map((s, i) => {
        this.useSequence(s);
        // Each step overwrites the last one's logits: keep a copy unless it is the only one.
        const logits = this.module.forward(this.rt, tokens[i]!, positions[i]!);
        return n === 1 ? logits : logits.slice();
      });
      this.useSequence(current);
      return out;
    }
    if (n <= batch) return this.module.decode!(this.rt, tokens, positions, sets);
    const out: Float32Array[] = [];
    for (let i = 0; i < n; i += batch) {
      const part = this.module.decode!(
        this.rt,
        tokens.slice(i, i + batch),
        positions.slice(i, i + batch),
        sets.slice(i, i + batch),
      );
      out.push(...part.map((l) => l.slice()));
    }
    return out;
  }

  step(token: number, pos: number): Float32Array {
    if (!Number.isInteger(pos) || pos < 0 || pos >= this.module.manifest.maxContext) {
      throw new RangeError(`position ${pos} is outside the context of ${this.module.manifest.maxContext}`);
    }
    return this.module.forward(this.rt, token, pos);
  }
}
