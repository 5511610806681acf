// The GPU forward pass: walks a compiled GpuProgram (runtime/gpu/program.ts) once per token against any
// Backend, with the weights placed on the device by place.ts. All kernels of a token are recorded in
// order; the only readbacks are each MoE layer's top-k expert ids (a few floats, so the expert cache can
// load the misses) and the logits at the end. Nothing else crosses to or from the host per token but the
// frame (token and position).
import type { Manifest } from "../manifest.ts";
import { type Access, type Backend, type GpuBuffer, GpuError, type Pipeline } from "./backend.ts";
import type { ExpertBuffers, GpuPlaced } from "./place.ts";
import { type GpuBinding, type GpuProgram, type GpuStep, innerSteps, type KernelStep } from "./program.ts";

/** A kernel step made ready: one pipeline per dispatch (a split weight dispatches once per chunk). */
export interface Ready {
  pipelines: Pipeline[];
  grids: [number, number, number][];
  /** Per dispatch: the chunk index of each binding (0 unless the binding is a split weight). */
  chunks: number[];
}

export class GpuForward {
  private readonly ready = new Map<KernelStep, Ready>();
  private readonly picks: ExpertBuffers[][];
  private readonly frameData = new Uint32Array(4);
  private readonly ids: Float32Array;
  private readonly idBytes: Uint8Array;
  readonly logits: Float32Array;
  private readonly logitBytes: Uint8Array;

  constructor(
    readonly backend: Backend,
    readonly program: GpuProgram,
    readonly manifest: Manifest,
    readonly placed: GpuPlaced,
  ) {
    const moes = manifest.moe ?? [];
    this.picks = moes.map((e) => Array.from({ length: e.topK }));
    const maxK = Math.max(1, ...moes.map((e) => e.topK));
    this.ids = new Float32Array(maxK);
    this.idBytes = new Uint8Array(this.ids.buffer);
    this.logits = new Float32Array(program.logits.count);
    this.logitBytes = new Uint8Array(this.logits.buffer);
  }

  /** Compiles every kernel and makes every pipeline, so a kernel that does not compile fails at load. */
  async prepare(): Promise<void> {
    const walk = async (steps: GpuStep[]) => {
      for (const s of steps) {
        if (s.op === "kernel") this.ready.set(s, await readyStep(this.backend, this.placed, this.program, s));
        else await walk(innerSteps(s));
      }
    };
    await walk(this.program.steps);
  }

  private buffer(b: GpuBinding, layer: number, chunk: number, kernel: string): GpuBuffer {
    switch (b.kind) {
      case "weight": {
        const per = this.placed.weights.get(b.key);
        if (!per) throw new GpuError(this.backend.name, `weight ${b.key} is not on the device`, kernel);
        const w = per[per.length > 1 ? layer : 0]!;
        return w.buffers[Math.min(chunk, w.buffers.length - 1)]!;
      }
      case "q8":
        if (!this.placed.q8)
          throw new GpuError(this.backend.name, "no buffer for quantized activations", kernel);
        return this.placed.q8;
      case "kv":
        return this.placed.kv[b.cache * 2 + (b.slot === "v" ? 1 : 0)]![layer]!;
      case "expert": {
        const p = this.picks[b.moe]![b.pick];
        if (!p) throw new Error(`kernel ${kernel} runs before MoE op ${b.moe}'s experts were chosen`);
        const c = p[b.role].buffers;
        return c[Math.min(chunk, c.length - 1)]!;
      }
    }
  }

  private readonly args: GpuBuffer[] = [];

  private async run(steps: GpuStep[], layer: number): Promise<void> {
    const { backend, placed } = this;
    for (const s of steps) {
      if (s.op === "loop") {
        for (let l = 0; l < s.count; l++) await this.run(s.body, l);
        continue;
      }
      if (s.op === "layers") {
        await this.run(s.cases[s.table[layer]!]!, layer);
        continue;
      }
      if (s.op === "experts") {
        const bytes = s.k * 4;
        await backend.read(placed.arena, s.ids * 4, bytes, placed.staging, this.idBytes.subarray(0, bytes));
        const e = this.manifest.moe![s.moe]!;
        placed.experts(s.moe, e.layers ? layer : 0, this.ids, this.picks[s.moe]!);
        continue;
      }
      const r = this.ready.get(s)!;
      for (let d = 0; d < r.pipelines.length; d++) {
        const args = this.args;
        args.length = 0;
        args.push(placed.arena, placed.frame);
        for (const b of s.bind) args.push(this.buffer(b, layer, r.chunks[d]!, s.kernel));
        backend.dispatch(r.pipelines[d]!, args, r.grids[d]!);
      }
    }
  }

  /** One token at `pos` through the model; resolves to the logits (this object's own array, reused). */
  async forward(token: number, pos: number): Promise<Float32Array> {
    const m = this.manifest;
    if (!(token >= 0 && token < m.vocab && Number.isInteger(token))) {
      throw new RangeError(`token ${token} is outside the vocabulary of ${m.vocab}`);
    }
    if (!Number.isInteger(pos) || pos < 0 || pos >= m.maxContext) {
      throw new RangeError(`position ${pos} is outside the context of ${m.maxContext}`);
    }
    this.frameData[0] = token;
    this.frameData[1] = pos;
    this.placed.memory.upload(this.placed.frame, this.frameData.subarray(0, 2), 0, "activations");
    await this.run(this.program.steps, 0);
    const { offset, count } = this.program.logits;
    await this.backend.read(this.placed.arena, offset * 4, count * 4, this.placed.staging, this.logitBytes);
    return this.logits;
  }
}

/** A kernel step (per token or batched) and its bindings, as readyStep needs them. */
interface StepLike {
  kernel: string;
  bind: readonly { kind: string }[];
  params: Record<string, number>;
  grid: [number, number, number];
  rows?: KernelStep["rows"];
}

/** How a kernel sees each of its buffers: the arena, the frame, then its bindings (caches and the quantize
 * kernel's output written, the rest read). */
export function bindingAccess(bind: readonly { kind: string }[]): Access[] {
  return [
    "write",
    "uniform",
    ...(bind as GpuBinding[]).map(
      (b): Access => (b.kind === "kv" || (b.kind === "q8" && b.write) ? "write" : "read"),
    ),
  ];
}

/** A step's pipelines, one per chunk of its split weights (with r0, r1) or one for a step that is not
 * row-parallel (which must read each weight whole: one split under the limit cannot run). */
export async function readyStep(
  backend: Backend,
  placed: GpuPlaced,
  program: GpuProgram,
  s: StepLike,
): Promise<Ready> {
  const source = program.kernels[s.kernel];
  if (source === undefined) throw new GpuError(backend.name, `no source for kernel ${s.kernel}`, s.kernel);
  const access = bindingAccess(s.bind);
  const r: Ready = { pipelines: [], grids: [], chunks: [] };
  if (!s.rows) {
    for (const b of s.bind as GpuBinding[]) {
      const w = b.kind === "weight" ? placed.weights.get(b.key)?.[0] : undefined;
      if (b.kind === "weight" && w && w.buffers.length > 1) {
        throw new GpuError(
          backend.name,
          `kernel ${s.kernel} reads ${b.key} whole, but it is split into ${w.buffers.length} buffers under the adapter's storage binding limit of ${backend.limits.maxBindingBytes} bytes`,
          s.kernel,
        );
      }
    }
    r.pipelines.push(await backend.pipeline(s.kernel, source, s.params, access));
    r.grids.push(s.grid);
    r.chunks.push(0);
    return r;
  }
  const per = chunkRows(backend, placed, s);
  for (let c = 0, r0 = 0; r0 < s.rows.count; c++, r0 += per) {
    const r1 = Math.min(s.rows.count, r0 + per);
    r.pipelines.push(await backend.pipeline(s.kernel, source, { ...s.params, r0, r1 }, access));
    r.grids.push(s.rows.perGroup ? grid(backend, Math.ceil((r1 - r0) / s.rows.perGroup)) : s.grid);
    r.chunks.push(c);
  }
  return r;
}

/** Rows per chunk of a row-split step (per token or batched): its split weights and its experts' matrices
 * must agree (the same rows in every chunk). */
export function chunkRows(
  backend: Backend,
  placed: GpuPlaced,
  s: { kernel: string; bind: readonly { kind: string }[]; rows?: KernelStep["rows"] },
): number {
  const rows = s.rows!;
  let per: number | undefined;
  const agree = (n: number) => {
    if (per !== undefined && per !== n) {
      throw new GpuError(
        backend.name,
        `kernel ${s.kernel} reads weights split into different row ranges (${per} and ${n} rows per buffer) under the adapter's storage binding limit of ${backend.limits.maxBindingBytes} bytes`,
        s.kernel,
      );
    }
    per = n;
  };
  for (const i of rows.weights) {
    const b = s.bind[i] as GpuBinding;
    if (b.kind !== "weight") continue;
    const chunks = placed.weights.get(b.key)?.[0];
    if (chunks) agree(chunks.rowsPerChunk);
  }
  for (const b of s.bind as GpuBinding[]) if (b.kind === "expert") agree(placed.expertRows[b.moe]![b.role]);
  return Math.min(per ?? rows.count, rows.count);
}

/** x workgroups, folded into y past the adapter's per-dimension limit (kernels index wid.x + wid.y · nwg.x). */
export function grid(backend: Backend, n: number): [number, number, number] {
  const max = backend.limits.maxWorkgroups;
  return n <= max ? [n, 1, 1] : [max, Math.ceil(n / max), 1];
}
