// A GPU program: what the compiler emits for a GPU backend (webgpu, gpujs) from the same fused, scheduled
// graph and activation plan the CPU backend gets. It is plain data, so the generated module imports
// nothing: an ordered list of steps (kernel name, what it binds, its constants, its grid), the layer
// loop kept as a loop, and the kernel sources keyed by name. runtime/gpu/forward.ts walks it per token
// against a Backend (runtime/gpu/backend.ts).

/** What a kernel binds, in order, after the arena (binding 0) and the frame (binding 1). */
export type GpuBinding =
  /** A packed matrix (u32 words) or an f32 vector (norm weights); per-layer weights take the loop's layer. */
  | { kind: "weight"; key: string }
  /** A KV cache of the loop's layer: cache `cache`, K or V (f32, maxContext × width). */
  | { kind: "kv"; cache: number; slot: "k" | "v" }
  /** The `pick`-th chosen expert's matrix of MoE op `moe` (a resident expert's buffer or a cache slot). */
  | { kind: "expert"; moe: number; role: "gate" | "up" | "down"; pick: number }
  /** The quantized activations (u32 words, `q8Words`): written by a quantize kernel, read by the products. */
  | { kind: "q8"; write?: boolean };

/** One kernel dispatch. */
export interface KernelStep {
  op: "kernel";
  kernel: string;
  bind: GpuBinding[];
  /** The kernel's constants (WGSL `override`s; gpu.js constants): arena offsets in floats, widths. */
  params: Record<string, number>;
  /** Workgroups in x, y, z. */
  grid: [number, number, number];
  /**
   * A row-parallel kernel over a weight that may be split by rows (a weight larger than the adapter's
   * storage binding limit lives in several buffers of whole rows): the executor dispatches once per
   * chunk, with params `r0` and `r1` set to the chunk's rows and x = ceil(rows / perGroup) workgroups.
   * Without a split: one dispatch with r0 = 0, r1 = rows. `weights` are the binding indexes split alike.
   */
  rows?: { count: number; perGroup: number; weights: number[] };
}

/**
 * After MoE op `moe`'s router: read back its top-k ids (k floats at arena float offset `ids`), find the
 * chosen experts in the expert cache (uploading the ones that missed), then bind them for the kernels
 * that follow. The only readback inside a token.
 */
export interface ExpertsStep {
  op: "experts";
  moe: number;
  ids: number;
  k: number;
}

/** The layer loop: its body runs `count` times with the layer index bound (never unrolled). */
export interface LoopStep {
  op: "loop";
  count: number;
  body: GpuStep[];
}

/**
 * In the layer loop, a node whose weight's scheme differs by layer: one list of steps per distinct form of
 * it, and layer l runs `cases[table[l]]` (the choice per layer is data; the loop is still one loop).
 */
export interface LayersStep<S> {
  op: "layers";
  table: number[];
  cases: S[][];
}

export type GpuStep = KernelStep | ExpertsStep | LoopStep | LayersStep<GpuStep>;

/** A constant table the runtime computes once at load and uploads into the arena (RoPE angles). */
export interface GpuTable {
  kind: "rope";
  /** Arena float offset: maxContext × half pairs of (cos, sin), in f64 math as the CPU kernels do it. */
  offset: number;
  theta: number;
  headDim: number;
}

export interface GpuProgram {
  backend: string;
  /** Kernel sources by name (WGSL for webgpu). */
  kernels: Record<string, string>;
  /**
   * When present, each kernel's source is a prelude followed by its entry in `kernels`. Keyed by the
   * optional adapter features the prelude needs, comma-separated ("" needs none, "subgroups"): the runtime
   * takes the one with the most features its backend offers (`withPrelude`).
   */
  preludes?: Record<string, string>;
  steps: GpuStep[];
  /** The activation arena in floats: the plan's values, the GPU kernels' scratch, the constant tables. */
  arenaFloats: number;
  /** Words of the buffer of quantized activations (0: no kernel reads them); counted in the manifest's
   * arena bytes. */
  q8Words?: number;
  tables: GpuTable[];
  /** Where the logits are after a token: arena float offset and count. */
  logits: { offset: number; count: number };
  /** Bytes of the small host-visible buffers (the frame's token and position, the readback buffer);
   * counted in the manifest's arena bytes with the arena itself. */
  frameBytes: number;
  readbackBytes: number;
  /** The batched prefill's program (webgpu): absent where the backend has none, whose prefill steps. */
  batch?: GpuBatch;
}

/** What a batch kernel binds: a GpuBinding, or the current expert's token list (its count, then per token
 * its index in the batch | its pick << 16). An `expert` binding's pick is the current expert. */
export type BatchBinding = GpuBinding | { kind: "list" };

/** A kernel dispatch of the batch program. Each token t of a batch owns a copy of the arena (at t ·
 * arenaFloats) and of the quantized activations (at t · q8Words); the constants `bstride`, `qstride` and
 * `tko` say where. */
export interface BatchKernelStep {
  op: "kernel";
  kernel: string;
  bind: BatchBinding[];
  params: Record<string, number>;
  grid: [number, number, number];
  /** Dispatched with z = the batch's token count (the kernel's token is workgroup_id.z); else z = 1 and the
   * kernel loops over the tokens itself (a matrix-matrix product) or runs once (the tail). */
  perToken: boolean;
  rows?: KernelStep["rows"];
}

/** After MoE op `moe`'s router and the gather of its ids: read back the batch's n × k ids (at arena float
 * offset `gather`) and group the tokens by expert. */
export interface BatchPicksStep {
  op: "picks";
  moe: number;
  k: number;
  gather: number;
}

/** MoE op `moe`'s experts: `body` runs once per expert the batch chose, with its matrices and its tokens'
 * list bound; each expert is fetched once per batch (in groups the expert cache holds at once). */
export interface BatchExpertsStep {
  op: "experts";
  moe: number;
  body: BatchStep[];
}

export interface BatchLoopStep {
  op: "loop";
  count: number;
  body: BatchStep[];
}

export type BatchStep =
  | BatchKernelStep
  | BatchPicksStep
  | BatchExpertsStep
  | BatchLoopStep
  | LayersStep<BatchStep>;

/** The steps nested in a step (a loop's body, an expert's body, every case of a per-layer choice). */
export function innerSteps<S extends GpuStep | BatchStep>(s: S): S[] {
  if (s.op === "loop" || (s.op === "experts" && "body" in s)) return s.body as S[];
  if (s.op === "layers") return (s.cases as S[][]).flat();
  return [];
}

export interface GpuBatch {
  /** Tokens per batch at most (the runtime takes fewer where the arena copies would not fit a binding). */
  tokens: number;
  /** Floats per token's copy of the arena: the per-token program's arena and the batch's own scratch. */
  stride: number;
  /** Words per token's copy of the quantized activations. */
  qStride: number;
  /** Arena float offset (in each token's copy) of the token id, then of its position, as f32s. */
  tko: number;
  /** Every token through the layer loop. */
  steps: BatchStep[];
  /** After the last batch only: its last token's loop results into the first copy, then the decode
   * program's steps after the loop (the final norm and the LM head) for that token alone. */
  tail: BatchStep[];
  /** Batched decoding: the steps after the loop (the final norm, the LM head) for every token of the
   * batch, each token's logits in its copy at the per-token program's `logits.offset`. */
  head: BatchStep[];
  /** Token-list buffers (one per expert id), each tokens + 1 words. */
  lists: number;
}

/** Bytes the batch adds to the arena region: the tokens' copies of the arena and the quantized
 * activations beyond the per-token program's, the token lists, and a frame per token (batched decoding
 * dispatches a step that binds a KV cache token by token, each with its own frame). */
export function batchExtraBytes(
  b: GpuBatch,
  p: { arenaFloats: number; q8Words?: number; frameBytes: number },
): number {
  const words =
    b.tokens * (b.stride + b.qStride) - p.arenaFloats - (p.q8Words ?? 0) + b.lists * (b.tokens + 1);
  return words * 4 + b.tokens * p.frameBytes;
}

/** Copies of the arena the device holds: the batch's tokens where each buffer fits under `limit` bytes,
 * else 1 (no batch program, or not even two copies fit: the prefill steps token by token). */
export function batchCopies(p: GpuProgram, limit: number): number {
  if (!p.batch) return 1;
  const per = Math.max(p.batch.stride, p.batch.qStride) * 4;
  const n = Math.min(p.batch.tokens, Math.floor(limit / per));
  return n >= 2 ? n : 1;
}

/** Bytes of the arena buffer and of the q8 buffer for `copies` (1: the per-token program's alone). */
export function arenaBuffers(p: GpuProgram, copies: number): { arena: number; q8: number } {
  if (copies < 2 || !p.batch) return { arena: p.arenaFloats * 4, q8: (p.q8Words ?? 0) * 4 };
  return { arena: copies * p.batch.stride * 4, q8: copies * p.batch.qStride * 4 };
}

/** Every kernel step, loop bodies included. */
export function* kernelSteps(steps: GpuStep[]): Generator<KernelStep> {
  for (const s of steps) {
    if (s.op === "kernel") yield s;
    else yield* kernelSteps(innerSteps(s));
  }
}

/** The program with whole kernel sources for a backend offering `features`: the prelude needing the most
 * of them, all offered, put before every kernel. `variant` names it ("" when none is needed). */
export function withPrelude(
  p: GpuProgram,
  features: ReadonlySet<string>,
): { program: GpuProgram; variant: string } {
  if (!p.preludes) return { program: p, variant: "" };
  const needs = (key: string) => (key ? key.split(",") : []);
  const usable = Object.keys(p.preludes).filter((k) => needs(k).every((f) => features.has(f)));
  if (usable.length === 0)
    throw new Error("the program has no prelude for an adapter without optional features");
  const variant = usable.reduce((a, b) => (needs(b).length > needs(a).length ? b : a));
  const prelude = p.preludes[variant]!;
  const kernels = Object.fromEntries(Object.entries(p.kernels).map(([k, src]) => [k, `${prelude}\n${src}`]));
  return { program: { ...p, kernels, preludes: undefined }, variant };
}
