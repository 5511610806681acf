// The GPU program builder, shared by the GPU backends: the same fused, scheduled graph and activation plan
// the CPU backend gets become an ordered list of kernel dispatches (runtime/gpu/program.ts), the layer
// loop kept as a loop. Which kernel serves a node, and its source, is the backend's GpuKernelSet (WGSL
// for webgpu); the steps, bindings, arena offsets and constants are decided here, once for every backend.
//
// Each kernel's constants (its `params`) are fixed by its call site: arena offsets in floats (xo, yo, …)
// and, for row-parallel kernels, the row range r0..r1 the runtime sets per weight chunk.

import {
  batchExtraBytes,
  type GpuBinding,
  type GpuProgram,
  type GpuStep,
  type GpuTable,
} from "../../../runtime/gpu/program.ts";
import type { Manifest } from "../../../runtime/manifest.ts";
import { type Graph, layerForms, type Node } from "../../ir/graph.ts";
import { SpecError } from "../../lang/errors.ts";
import type { ActivationPlan } from "../../plan/activations.ts";
import { moeOps } from "../emit.ts";
import { buildBatch, finishBatch } from "./batch.ts";
import { type Emit, elements, nodeSteps, normOf, Q, type StepContext, W } from "./steps.ts";

/** A kernel the backend made for a node: its name (its source is in `sources`) and, for a row-parallel
 * kernel, how many output rows one workgroup computes; for an element-parallel one, elements per workgroup. */
export interface KernelUse {
  name: string;
  perGroup: number;
}

/** What a GPU backend provides the builder: one kernel per distinct specialization, sources by name. */
export interface GpuKernelSet {
  readonly backend: string;
  readonly sources: Map<string, string>;
  /** Text every kernel source is put after, per variant (see GpuProgram.preludes); none when sources are whole. */
  readonly preludes?: Record<string, string>;
  /** One row of a [vocab, hidden] table, decoded; dispatched over hidden elements. */
  embed(scheme: string, vocab: number, hidden: number): KernelUse;
  /** y = W·x (+ r), x optionally through an RMS norm, y in the arena or a KV cache row; row-parallel. With
   * `scaled`: y += s · W·x, the weight s read from the arena (an expert's down projection). */
  linear(o: LinearKind): KernelUse;
  /** y = silu(Wg·x) ⊙ (Wu·x), x optionally through an RMS norm; row-parallel. */
  gateUp(o: { gate: string; up: string; out: number; in: number; norm?: number }): KernelUse;
  /** softmax(Wr·x), top-k: k ids then k weights; one workgroup. */
  route(o: {
    scheme: string;
    experts: number;
    in: number;
    k: number;
    normalize: boolean;
    norm?: number;
  }): KernelUse;
  attend(o: {
    heads: number;
    kvHeads: number;
    headDim: number;
    window: number;
    maxContext: number;
    /** Multiplies q·k in place of 1/sqrt(headDim) (Granite). */
    scale?: number;
  }): KernelUse;
  /** RoPE over `width` values (heads of headDim), from the table at `tab`: arena → arena, or a KV row in place. */
  rope(o: { width: number; headDim: number; interleaved: boolean; kv: boolean }): KernelUse;
  /** RMS norm over n floats; with `heads`, each of that many equal slices apart (one weight of n / heads),
   * one workgroup per head. */
  rmsNorm(o: { n: number; eps: number; heads?: number }): KernelUse;
  /** add, mul (binary), silu (unary), copy (y = a), zero (y = 0), scale (y = a · by). */
  elementwise(op: "add" | "mul" | "silu" | "copy" | "zero" | "scale", n: number, by?: number): KernelUse;
  /** y = a + g, g a weight vector bound first (a linear's bias). */
  bias(n: number): KernelUse;
  /** y = a · sigmoid(g · b): a of n, b and g (a weight vector bound first) of d; one workgroup. With
   * `residual`, y = r + that (the gated shared expert added onto the MoE's sum at `ro`). */
  sigmoidGate(n: number, d: number, residual?: boolean): KernelUse;
  softmax(n: number): KernelUse;
  kvWrite(n: number): KernelUse;
  /** Whether the scheme's piece reads its input quantized to q8_0 (`quantize` before it); absent: never. */
  readsQ8?(scheme: string): boolean;
  /** x (through an RMS norm, its weight bound first) quantized to q8_0: `in` integers then in/32 scales,
   * at arena float offset `qo`; one invocation per block. */
  quantize?(o: { in: number; norm?: number }): KernelUse;
  /** Tokens per batch of the batched prefill (absent: no batch program; the prefill steps token by token). */
  readonly batchTokens?: number;
  /** A kernel's twin over a batch: token t = workgroup_id.z, offsets moved to its arena copy (batch.ts). */
  batched?(use: KernelUse): KernelUse;
  /** A matrix-matrix product over the batch's tokens (or an expert's listed ones), weights read once. */
  matmul?(o: MatmulKind): KernelUse;
  /** The batch's top-k ids gathered for one readback. */
  gatherIds?(k: number): KernelUse;
  /** n values of the batch's last token into the first arena copy. */
  lastToken?(n: number): KernelUse;
}

/** A batched product: one weight (linear, with its epilogue) or two (gate and up); `list`: an expert's tokens. */
export interface MatmulKind {
  weights: string[];
  out: number;
  in: number;
  residual?: boolean;
  scaled?: boolean;
  list?: boolean;
}

export interface LinearKind {
  scheme: string;
  out: number;
  in: number;
  /** The RMS norm's eps when x goes through one (its weight is bound after W). */
  norm?: number;
  residual?: boolean;
  /** Writes row `pos` of a KV cache (bound last) instead of the arena. */
  kv?: boolean;
  scaled?: boolean;
}

export interface GpuBuild {
  program: GpuProgram;
  /** The manifest with the arena grown by the GPU scratch, tables and host-visible buffers. */
  manifest: Manifest;
}

const align16 = (n: number) => Math.ceil(n / 16) * 16;

/** Words per block of 32 quantized activations: 8 of packed int8, d, the sum. */
export const Q8_WORDS = 10;

export function buildGpuProgram(
  graph: Graph,
  plan: ActivationPlan,
  planned: Manifest,
  ks: GpuKernelSet,
): GpuBuild {
  const manifest = planned;
  const moes = moeOps(graph);
  const moeOfRoute = new Map(moes.map((m, i) => [m.route.id, i]));
  const moeIndex = new Map(moes.map((m, i) => [m.node.id, i]));
  const off = (id: number) => {
    const b = plan.arena.offsets.get(plan.alias.get(id) ?? id);
    if (b === undefined) throw new Error(`no arena slot for %${id}`);
    return b / 4;
  };
  const shapes = new Map<number, number[]>();
  const note = (g: Graph) => {
    for (const p of g.params) shapes.set(p.id, p.shape);
    for (const n of g.nodes) {
      shapes.set(n.id, n.shape);
      if (n.body) note(n.body);
    }
  };
  note(graph);
  const width = (id: number) => shapes.get(id)![0]!;
  const weightOf = (key: string) => manifest.weights.find((w) => w.key === key)!;
  // GPU scratch after the plan's activations: expert hidden vectors, attention scores, RoPE tables.
  let top = align16(plan.arena.size / 4);
  const scratch = (floats: number) => {
    const at = top;
    top = align16(top + floats);
    return at;
  };
  const tables: GpuTable[] = [];
  const ropeTable = (theta: number, headDim: number) => {
    let t = tables.find((x) => x.theta === theta && x.headDim === headDim);
    if (!t) {
      t = { kind: "rope", offset: scratch(manifest.maxContext * headDim), theta, headDim };
      tables.push(t);
    }
    return t.offset;
  };
  const hidden = new Map<number, number>();
  const kvRows = new Map<number, number>();
  const scores = new Map<number, number>();

  // Quantized activations live in a buffer of u32 words of their own: per block of 32, 8 words of packed
  // int8, the f32 d, the i32 sum of the 32 integers (what a product with an unsigned piece subtracts).
  const qRegions = new Map<string, number>();
  let q8Words = 0;
  const readsQ8 = (scheme: string) => ks.readsQ8?.(scheme) ?? false;

  const qRegion = (region: string, n: number) => {
    let at = qRegions.get(region);
    if (at === undefined) {
      qRegions.set(region, (at = q8Words));
      q8Words += (n / 32) * Q8_WORDS;
    }
    return at;
  };
  const context: StepContext = {
    ks,
    off,
    width,
    weightOf,
    scratch,
    ropeTable,
    qRegion,
    readsQ8,
    scores,
    kvRows,
    maxContext: manifest.maxContext,
  };

  const emitGraph = (g: Graph, layers = 0): GpuStep[] => {
    const out: GpuStep[] = [];
    const kernel: Emit = (use, bind, params, grid, rows) => {
      out.push({ op: "kernel", kernel: use.name, bind, params, grid, ...(rows ? { rows } : {}) });
    };
    const at = nodeSteps(context, kernel);
    const emitNode = (n: Node) => {
      const x = n.inputs[0]!;
      at.visit(n);
      if (at.simple(n)) return;
      switch (n.op) {
        case "linear": {
          const scheme = n.attrs.scheme as string;
          const qo = readsQ8(scheme) ? at.quantized(x, width(x), off(x), normOf(n)) : undefined;
          // The norm goes into the kernel unless the quantize kernel applied it.
          const norm = qo === undefined ? normOf(n) : undefined;
          const { kv, direct, yo } = at.linearTarget(n);
          const use = ks.linear({
            scheme,
            out: n.shape[0]!,
            in: width(x),
            norm: norm?.eps,
            residual: !!n.attrs.residual,
            kv: !!direct,
          });
          const bind = [
            W(n.weights.w!),
            ...(norm ? [W(norm.key)] : []),
            ...(direct ? [direct] : []),
            ...Q(qo),
          ];
          const params: Record<string, number> = { xo: off(x), yo, ...(qo !== undefined ? { qo } : {}) };
          if (n.attrs.residual) params.ro = off(n.inputs[1]!);
          kernel(use, bind, params, [1, 1, 1], { count: n.shape[0]!, perGroup: use.perGroup, weights: [0] });
          at.after(n, kv, yo);
          break;
        }
        case "gate_up": {
          const gate = n.attrs.gate_scheme as string;
          const up = n.attrs.up_scheme as string;
          const q = [readsQ8(gate), readsQ8(up)];
          const qo = q[0] || q[1] ? at.quantized(x, width(x), off(x), normOf(n)) : undefined;
          const norm = q[0] && q[1] ? undefined : normOf(n);
          const use = ks.gateUp({ gate, up, out: n.shape[0]!, in: width(x), norm: norm?.eps });
          const bind = [W(n.weights.gate!), W(n.weights.up!), ...(norm ? [W(norm.key)] : []), ...Q(qo)];
          kernel(use, bind, { xo: off(x), yo: off(n.id), ...(qo !== undefined ? { qo } : {}) }, [1, 1, 1], {
            count: n.shape[0]!,
            perGroup: use.perGroup,
            weights: [0, 1],
          });
          break;
        }
        case "route": {
          at.route(n);
          const moe = moeOfRoute.get(n.id);
          if (moe !== undefined) out.push({ op: "experts", moe, ids: off(n.id), k: n.attrs.k as number });
          break;
        }
        case "moe_ffn": {
          const moe = moeIndex.get(n.id)!;
          const k = width(n.inputs[1]!) / 2;
          const hid = n.shape[0]!;
          const ffn = weightOf(n.weights.gate!).shape[1]!;
          let h = hidden.get(ffn);
          if (h === undefined) hidden.set(ffn, (h = scratch(ffn)));
          const yo = off(n.id);
          at.moeInit(n);
          const gu = ks.gateUp({
            gate: n.attrs.gate_scheme as string,
            up: n.attrs.up_scheme as string,
            out: ffn,
            in: hid,
          });
          const down = ks.linear({ scheme: n.attrs.down_scheme as string, out: hid, in: ffn, scaled: true });
          const so = off(n.inputs[1]!);
          const gq = readsQ8(n.attrs.gate_scheme as string) || readsQ8(n.attrs.up_scheme as string);
          const xq: Record<string, number> = gq ? { qo: at.quantized(x, hid, off(x)) } : {};
          const dq = readsQ8(n.attrs.down_scheme as string);
          for (let j = 0; j < k; j++) {
            const e = (role: "gate" | "up" | "down"): GpuBinding => ({ kind: "expert", moe, role, pick: j });
            kernel(gu, [e("gate"), e("up"), ...Q(xq.qo)], { xo: off(x), yo: h, ...xq }, [1, 1, 1], {
              count: ffn,
              perGroup: gu.perGroup,
              weights: [],
            });
            // Each expert's hidden vector is new: quantized afresh.
            at.forget();
            const hq: Record<string, number> = dq
              ? { qo: at.quantized(`h${j}`, ffn, h, undefined, `h${ffn}`) }
              : {};
            kernel(down, [e("down"), ...Q(hq.qo)], { xo: h, yo, so: so + k + j, ...hq }, [1, 1, 1], {
              count: hid,
              perGroup: down.perGroup,
              weights: [],
            });
          }
          break;
        }
        case "loop": {
          const b = n.body!;
          const copy = (to: number, from: number, w: number, into: GpuStep[]) => {
            if (off(to) === off(from)) return;
            const use = ks.elementwise("copy", w);
            into.push({
              op: "kernel",
              kernel: use.name,
              bind: [],
              params: { ao: off(from), yo: off(to) },
              grid: elements(w, use.perGroup),
            });
          };
          b.params.forEach((p, k) => copy(p.id, n.inputs[k]!, p.shape[0]!, out));
          const body = emitGraph(b, n.attrs.count as number);
          b.params.forEach((p, k) => copy(p.id, b.results[k]!, p.shape[0]!, body));
          out.push({ op: "loop", count: n.attrs.count as number, body });
          break;
        }
        default:
          throw new SpecError(
            n.loc,
            `no ${ks.backend} kernel for \`${n.op}\` (a pattern the fusion pass should have folded)`,
          );
      }
    };
    // A node whose scheme differs by layer: each form's steps as a case, none relying on an input another
    // case would have quantized.
    for (const n of g.nodes) {
      const { forms, table } = layerForms(n, layers);
      if (forms.length === 1) {
        emitNode(n);
        continue;
      }
      const cases = forms.map((f) => {
        at.forget();
        const start = out.length;
        emitNode(f);
        return out.splice(start);
      });
      at.forget();
      out.push({ op: "layers", table, cases });
    }
    return out;
  };
  const steps = emitGraph(graph);
  // The batch's own scratch and q8 regions lie past the per-token program's, in each token's copy only
  // (the decode arena keeps its size).
  let batchTop = top;
  let batchQ = q8Words;
  const batch = buildBatch({
    graph,
    ks,
    decode: steps,
    off,
    width,
    weightOf,
    scratch: (floats) => {
      const at = batchTop;
      batchTop = align16(batchTop + floats);
      return at;
    },
    ropeTable,
    qRegion: (region, n) => {
      let at = qRegions.get(region);
      if (at === undefined) {
        qRegions.set(region, (at = batchQ));
        batchQ += (n / 32) * Q8_WORDS;
      }
      return at;
    },
    readsQ8,
    moeOfRoute,
    moeIndex,
    hidden,
    scores,
    kvRows,
    maxContext: manifest.maxContext,
  });
  const result = graph.results[0]!;
  const maxK = Math.max(1, ...(manifest.moe ?? []).map((e) => e.topK));
  const frameBytes = 16;
  const readbackBytes = Math.ceil((Math.max(width(result), maxK) * 4) / 256) * 256;
  const program: GpuProgram = {
    backend: ks.backend,
    kernels: Object.fromEntries([...ks.sources].sort(([a], [b]) => (a < b ? -1 : 1))),
    ...(ks.preludes ? { preludes: ks.preludes } : {}),
    steps,
    arenaFloats: top,
    ...(q8Words ? { q8Words } : {}),
    tables,
    logits: { offset: off(result), count: width(result) },
    frameBytes,
    readbackBytes,
    ...(batch ? { batch: finishBatch(batch, batchTop, batchQ) } : {}),
  };
  const arenaBytes =
    top * 4 + q8Words * 4 + frameBytes + readbackBytes + (batch ? batchExtraBytes(batch, program) : 0);
  return { program, manifest: { ...manifest, arenaBytes } };
}

/** The generated module for a GPU backend: the manifest and the program as data; it imports nothing. */
export function emitGpuModule(build: GpuBuild, header: string): string {
  return [
    header,
    "",
    "/** The backend this module was compiled for: runtime/gpu/model.ts makes it and walks the program. */",
    `export const backend = ${JSON.stringify(build.program.backend)};`,
    "",
    `export const manifest = ${JSON.stringify(build.manifest, null, 2)};`,
    "",
    "/** The forward pass as steps (runtime/gpu/program.ts), the layer loop kept as a loop; kernel sources by name. */",
    `export const program = ${JSON.stringify(build.program, null, 2)};`,
    "",
  ].join("\n");
}
