// A compiled GPU model loaded onto a backend: the generated module's manifest and program, the backend
// made by name (the registry below; each GPU backend registers its factory), the weights placed under
// the device budget, every kernel compiled before the first token. `step` is async: a MoE layer reads
// its router's picks back before its experts run. With several sequences (a server's parallel slots),
// each has its own KV caches on the device and `useSequence` picks the one the next calls use; where the
// program has a batch program, `stepBatch` decodes a token of each of several sequences at once.
import { sequenceSet, splitBySequence, stepSets } from "../kv-sets.ts";
import { type Manifest, withSequences } from "../manifest.ts";
import type { MemoryStats } from "../memory/memory-stats.ts";
import type { MemoryOptions } from "../memory/place.ts";
import type { WeightSource } from "../weights.ts";
import { type Backend, type GpuBuffer, GpuError } from "./backend.ts";
import { BatchRunner } from "./batch.ts";
import { GpuForward } from "./forward.ts";
import { type GpuPlaced, placeGpu } from "./place.ts";
import { type GpuProgram, withPrelude } from "./program.ts";

/** What a generated module for a GPU backend exports (it imports nothing). */
export interface GpuModule {
  manifest: Manifest;
  backend: string;
  program: GpuProgram;
}

export function isGpuModule(m: unknown): m is GpuModule {
  return typeof (m as GpuModule)?.program === "object" && typeof (m as GpuModule).backend === "string";
}

/** Factories by backend name; `webgpu` registers itself in webgpu.ts, `gpujs` in its own file. */
const factories = new Map<string, () => Promise<Backend>>();

export function registerBackend(name: string, make: () => Promise<Backend>): void {
  factories.set(name, make);
}

export async function createBackend(name: string): Promise<Backend> {
  if (!factories.has(name)) {
    // The built-in GPU backends register on import.
    if (name === "webgpu") await import("./webgpu.ts");
    if (name === "gpujs") await import("./gpujs.ts");
  }
  const make = factories.get(name);
  if (!make)
    throw new GpuError(name, `no such GPU backend (known: ${[...factories.keys()].join(", ") || "none"})`);
  return make();
}

/**
 * The program with the prelude for the manifest's KV type: the `f16` preludes store the caches in f16, the
 * others in f32. A backend that cannot hold the type (an adapter without shader-f16, a backend without
 * preludes) is refused here, naming both, rather than silently storing another type than the plan counted.
 */
export function withKvType(module: GpuModule, features: ReadonlySet<string>): GpuProgram {
  const type = module.manifest.kvType ?? "f32";
  const offered = new Set(features);
  if (type === "f16") {
    if (!module.program.preludes || !offered.has("f16"))
      throw new GpuError(
        module.backend,
        `${module.program.preludes ? "this adapter offers no shader-f16, so it" : "it"} cannot hold an f16 KV cache; compile with --kv-type f32`,
      );
  } else if (type === "f32") offered.delete("f16");
  else
    throw new GpuError(module.backend, `cannot hold a ${type} KV cache; compile with --kv-type f32 or f16`);
  return withPrelude(module.program, offered).program;
}

export class GpuModel {
  private constructor(
    readonly module: GpuModule,
    /** The manifest as loaded: the module's, with the KV element size the chosen prelude stores. */
    readonly manifest: Manifest,
    readonly backend: Backend,
    readonly placed: GpuPlaced,
    private readonly fwd: GpuForward,
  ) {}

  /** Each sequence's KV buffers ([cache * 2 + (0 K, 1 V)][layer]); `placed.kv` is the current one's. */
  private kvSets: GpuBuffer[][][] = [];
  private current = 0;

  /** `options.sequences` (default 1): sequences with their own KV caches, planned and placed with the rest. */
  static async load(
    module: GpuModule,
    weights: WeightSource,
    options: MemoryOptions & { sequences?: number } = {},
  ): Promise<GpuModel> {
    const { sequences = 1, ...memory } = options;
    const backend = await createBackend(module.backend);
    let placed: GpuPlaced | undefined;
    try {
      const manifest = module.manifest;
      const program = withKvType(module, backend.features ?? new Set());
      placed = placeGpu(backend, withSequences(manifest, sequences), program, weights, memory);
      const kvSets = splitBySequence(placed.kv, manifest.kv.length * 2);
      placed.kv = kvSets[0]!;
      const fwd = new GpuForward(backend, program, manifest, placed);
      await fwd.prepare();
      const model = new GpuModel(module, manifest, backend, placed, fwd);
      model.kvSets = kvSets;
      if (BatchRunner.usable(program, placed)) {
        model.batch = new BatchRunner(backend, program, manifest, placed);
        await model.batch.prepare();
      }
      return model;
    } catch (e) {
      placed?.close();
      if (placed) placed.memory.destroy();
      else backend.destroy();
      throw e;
    }
  }

  /** How many sequences have KV caches. */
  get sequences(): number {
    return this.kvSets.length;
  }

  /** Makes sequence `s`'s KV caches the ones `step` and `prefill` read and write. */
  useSequence(s: number): void {
    if (s === this.current) return;
    this.placed.kv = sequenceSet(this.kvSets, s);
    this.current = s;
  }

  /** One token at `pos`; the logits array is reused by the next step. */
  step(token: number, pos: number): Promise<Float32Array> {
    return this.fwd.forward(token, pos);
  }

  /** The batched prefill, where the program has a batch program and the device holds its arena copies. */
  private batch?: BatchRunner;

  /** Tokens per batch of `prefill` (1: it steps token by token). */
  get prefillBatch(): number {
    return this.batch?.tokens ?? 1;
  }

  /** `tokens` at positions pos0, pos0 + 1, …, their KV rows written; the last token's logits (an array the
   * next call reuses). In batches where the backend has a batch program, else token by token. */
  async prefill(tokens: readonly number[], pos0: number): Promise<Float32Array> {
    if (this.batch) return this.batch.prefill(tokens, pos0);
    if (tokens.length === 0) throw new RangeError("prefill of no tokens");
    let logits: Float32Array = new Float32Array(0);
    for (let i = 0; i < tokens.length; i++) logits = await this.fwd.forward(tokens[i]!, pos0 + i);
    return logits;
  }

  /** Tokens `stepBatch` decodes in one batch (1: the backend has no batch program; it steps them). */
  get decodeBatch(): number {
    return this.batch?.tokens ?? 1;
  }

  /**
   * One token for each of several sequences: tokens[i] at positions[i] of sequence seqs[i], each sequence
   * at most once. Resolves to each one's logits (arrays the next call reuses). Through the batch program,
   * in batches of `decodeBatch`: every weight is read once per batch, and a sequence's logits do not depend
   * on which others share its batch (each token's sums run in the same order whatever the batch holds).
   * Without a batch program, each sequence steps in turn.
   */
  async stepBatch(
    tokens: readonly number[],
    positions: readonly number[],
    seqs: readonly number[],
  ): Promise<Float32Array[]> {
    const n = tokens.length;
    const m = this.manifest;
    const sets = stepSets(this.kvSets, tokens, positions, seqs, m.maxContext);
    // A kernel cannot throw: a token outside the vocabulary would read past the embedding table.
    for (const t of tokens) {
      if (!(Number.isInteger(t) && t >= 0 && t < m.vocab))
        throw new RangeError(`token ${t} is outside the vocabulary of ${m.vocab}`);
    }
    const out: Float32Array[] = [];
    if (!this.batch) {
      const current = this.current;
      try {
        for (let i = 0; i < n; i++) {
          this.useSequence(seqs[i]!);
          out.push(Float32Array.from(await this.fwd.forward(tokens[i]!, positions[i]!)));
        }
      } finally {
        this.useSequence(current);
      }
      return out;
    }
    const per = this.batch.tokens;
    for (let i = 0; i < n; i += per) {
      const part = await this.batch.decode(
        tokens.slice(i, i + per),
        positions.slice(i, i + per),
        sets.slice(i, i + per),
      );
      // The runner reuses its arrays: copies where another batch follows.
      out.push(...(i + per < n ? part.map((l) => Float32Array.from(l)) : part));
    }
    return out;
  }

  /** Bytes uploaded since load (activations and expert cache misses). */
  get uploadedBytes(): number {
    return this.placed.memory.uploaded;
  }

  memory(): MemoryStats {
    return this.placed.memoryStats();
  }

  close(): void {
    this.placed.close();
    this.placed.memory.destroy();
  }
}
