// The batch program (runtime/gpu/program.ts's GpuBatch), built from the same graph and activation plan as
// the per-token program, for a backend whose kernel set has matrix-matrix kernels (webgpu). It runs a
// prompt in batches of up to B tokens (the batched prefill), and one token for each of up to B sequences
// (batched decoding). Token t of a batch owns a copy of the arena (at t · stride: the decode arena is copy
// 0) and of the quantized activations; its id and position are in its copy, at `tko`.
//
// - Every linear op (and gate_up, and each expert's gate_up and down) is one matrix-matrix kernel over
//   the batch: each workgroup stages its rows' weight bytes in workgroup memory and every token's product
//   reads them there, so a weight is read from device memory once per batch instead of once per token.
//   An RMS norm the per-token kernel folds into a product runs first as its own (batched) kernel.
// - Every other kernel is its per-token kernel's batched twin (the same source, token t = workgroup_id.z).
//   KV rows are written for all the batch's tokens before attention reads them (causally, for a prompt).
//   Every step that binds a KV cache is a twin, so batched decoding can dispatch it token by token, each
//   with its own sequence's cache (the K and V products write their rows into the arena, then a twin
//   copies them into the cache).
// - MoE: the router's ids of all tokens are gathered and read back once per layer; the host groups the
//   tokens by expert, fetches each used expert once (through the expert cache when experts are
//   offloaded) and runs its gate_up and down over its tokens' list.
// - A prompt's final norm and LM head run for its last token only (`tail`): its loop results are copied
//   into the first arena copy and the per-token program's steps after the loop run there. Batched
//   decoding needs every token's logits: `head` is the steps after the loop over the whole batch.

import {
  type BatchBinding,
  type BatchStep,
  type GpuBatch,
  type GpuBinding,
  type GpuStep,
  innerSteps,
  type KernelStep,
} from "../../../runtime/gpu/program.ts";
import { type Graph, layerForms, type Node } from "../../ir/graph.ts";
import type { KernelUse } from "./program.ts";
import { elements, nodeSteps, normOf, Q, type StepContext, W } from "./steps.ts";

/** What buildGpuProgram shares with the batch builder: the same offsets, scratch, q8 regions and
 * shared emitters' context (its `scratch` and `qRegion` the batch's, past the per-token program's). */
export interface BatchContext extends StepContext {
  graph: Graph;
  /** The per-token program's steps (its steps after the layer loop become the batch's tail). */
  decode: GpuStep[];
  moeOfRoute: Map<number, number>;
  moeIndex: Map<number, number>;
  hidden: Map<number, number>;
}

/** The batch program, or undefined when the kernel set has no batch kernels (gpujs) or the graph has
 * no layer loop at its top level. */
export function buildBatch(c: BatchContext): GpuBatch | undefined {
  const { ks, off, width } = c;
  if (!ks.matmul || !ks.batched || !ks.gatherIds || !ks.lastToken || !ks.batchTokens) return undefined;
  const top = c.graph.nodes;
  const loopAt = top.findIndex((n) => n.op === "loop");
  const decodeLoop = c.decode.findIndex((s) => s.op === "loop");
  if (loopAt < 0 || decodeLoop < 0) return undefined;
  const B = ks.batchTokens;
  const matmul = ks.matmul.bind(ks);
  const twin = ks.batched.bind(ks);
  const tko = c.scratch(2);
  let gather: number | undefined;
  const normed = new Map<number, number>();
  let lists = 0;

  const emitGraph = (nodes: Node[], layers = 0): BatchStep[] => {
    const out: BatchStep[] = [];
    const step = (
      use: KernelUse,
      bind: BatchBinding[],
      params: Record<string, number>,
      grid: [number, number, number],
      perToken: boolean,
      rows?: KernelStep["rows"],
    ) => {
      out.push({ op: "kernel", kernel: use.name, bind, params, grid, perToken, ...(rows ? { rows } : {}) });
    };
    /** A per-token kernel's twin, dispatched with z = the batch's tokens. */
    const each = (
      use: KernelUse,
      bind: BatchBinding[],
      params: Record<string, number>,
      grid: [number, number, number],
      rows?: KernelStep["rows"],
    ) => step(twin(use), bind, params, grid, true, rows);
    const at = nodeSteps(c, each);
    let lastN: { key: string; at: number } | undefined;
    /** x through its RMS norm into scratch (a product reading f32 activations cannot fold the norm in
     * when a workgroup serves many tokens); x itself without a norm. */
    const normalized = (x: number, n: number, norm?: { key: string; eps: number }) => {
      if (!norm) return off(x);
      const key = `${x} ${norm.key}`;
      if (lastN?.key === key) return lastN.at;
      let at = normed.get(n);
      if (at === undefined) normed.set(n, (at = c.scratch(n)));
      each(ks.rmsNorm({ n, eps: norm.eps }), [W(norm.key)], { xo: off(x), yo: at }, [1, 1, 1]);
      lastN = { key, at };
      return at;
    };
    const product = (
      weights: string[],
      binds: BatchBinding[],
      o: { out: number; in: number; residual?: boolean; scaled?: boolean; list?: boolean },
      params: Record<string, number>,
      splits: number[],
    ) => {
      const use = matmul({ weights, ...o });
      step(use, binds, params, [1, 1, 1], false, { count: o.out, perGroup: use.perGroup, weights: splits });
    };
    const emitNode = (n: Node) => {
      const x = n.inputs[0]!;
      at.visit(n);
      if (n.op !== "linear" && n.op !== "gate_up" && n.op !== "route") lastN = undefined;
      if (at.simple(n)) return;
      switch (n.op) {
        case "linear": {
          const scheme = n.attrs.scheme as string;
          const q8 = c.readsQ8(scheme);
          const qo = q8 ? at.quantized(x, width(x), off(x), normOf(n)) : undefined;
          const xo = q8 ? off(x) : normalized(x, width(x), normOf(n));
          const { kv, yo } = at.linearTarget(n, false);
          const params: Record<string, number> = { xo, yo, ...(qo !== undefined ? { qo } : {}) };
          if (n.attrs.residual) params.ro = off(n.inputs[1]!);
          product(
            [scheme],
            [W(n.weights.w!), ...Q(qo)],
            { out: n.shape[0]!, in: width(x), residual: !!n.attrs.residual },
            params,
            [0],
          );
          at.after(n, kv, yo);
          break;
        }
        case "gate_up": {
          const gate = n.attrs.gate_scheme as string;
          const up = n.attrs.up_scheme as string;
          const q = [c.readsQ8(gate), c.readsQ8(up)];
          const qo = q[0] || q[1] ? at.quantized(x, width(x), off(x), normOf(n)) : undefined;
          const xo = q[0] && q[1] ? off(x) : normalized(x, width(x), normOf(n));
          product(
            [gate, up],
            [W(n.weights.gate!), W(n.weights.up!), ...Q(qo)],
            { out: n.shape[0]!, in: width(x) },
            { xo, yo: off(n.id), ...(qo !== undefined ? { qo } : {}) },
            [0, 1],
          );
          break;
        }
        case "route": {
          const k = n.attrs.k as number;
          at.route(n);
          const moe = c.moeOfRoute.get(n.id);
          if (moe !== undefined) {
            lists = Math.max(lists, n.attrs.experts as number);
            gather ??= c.scratch(B * Math.max(k, 1));
            const g = ks.gatherIds!(k);
            step(g, [], { ido: off(n.id), go: gather }, elements(B * k, g.perGroup), false);
            out.push({ op: "picks", moe, k, gather });
          }
          break;
        }
        case "moe_ffn": {
          const moe = c.moeIndex.get(n.id)!;
          const k = width(n.inputs[1]!) / 2;
          const hid = n.shape[0]!;
          const ffn = c.weightOf(n.weights.gate!).shape[1]!;
          let h = c.hidden.get(ffn);
          if (h === undefined) c.hidden.set(ffn, (h = c.scratch(ffn)));
          const yo = off(n.id);
          at.moeInit(n);
          const gs = n.attrs.gate_scheme as string;
          const us = n.attrs.up_scheme as string;
          const ds = n.attrs.down_scheme as string;
          const gq = c.readsQ8(gs) || c.readsQ8(us);
          const xq = gq ? at.quantized(x, hid, off(x)) : undefined;
          const dq = c.readsQ8(ds);
          const so = off(n.inputs[1]!);
          const E = (role: "gate" | "up" | "down"): GpuBinding => ({ kind: "expert", moe, role, pick: 0 });
          const list: BatchBinding = { kind: "list" };
          // The expert's body: its gate_up and down over its tokens. Its hidden vectors are quantized for
          // every token of the batch (those not in the list are not read).
          const body = emitInto(() => {
            product(
              [gs, us],
              [E("gate"), E("up"), ...Q(xq), list],
              { out: ffn, in: hid, list: true },
              { xo: off(x), yo: h, ...(xq !== undefined ? { qo: xq } : {}) },
              [],
            );
            at.forget();
            const hq = dq ? at.quantized(`h`, ffn, h, undefined, `h${ffn}`) : undefined;
            at.forget();
            product(
              [ds],
              [E("down"), ...Q(hq), list],
              { out: hid, in: ffn, scaled: true, list: true },
              { xo: h, yo, so: so + k, ...(hq !== undefined ? { qo: hq } : {}) },
              [],
            );
          });
          out.push({ op: "experts", moe, body });
          break;
        }
        case "loop": {
          const b = n.body!;
          const copy = (to: number, from: number, w: number) => {
            if (off(to) === off(from)) return;
            const use = ks.elementwise("copy", w);
            each(use, [], { ao: off(from), yo: off(to) }, elements(w, use.perGroup));
          };
          b.params.forEach((p, k) => copy(p.id, n.inputs[k]!, p.shape[0]!));
          const body = emitInto(() => {
            out.push(...emitGraph(b.nodes, n.attrs.count as number));
            b.params.forEach((p, k) => copy(p.id, b.results[k]!, p.shape[0]!));
          });
          out.push({ op: "loop", count: n.attrs.count as number, body });
          break;
        }
        default:
          throw new Error(`no batched ${ks.backend} kernel for \`${n.op}\``);
      }
    };
    // A node whose scheme differs by layer: each form's steps as a case, from a clean slate (no input
    // counts as already quantized or normalized, since another case may have run in its place).
    const reset = () => {
      at.forget();
      lastN = undefined;
    };
    for (const n of nodes) {
      const { forms, table } = layerForms(n, layers);
      if (forms.length === 1) {
        emitNode(n);
        continue;
      }
      const cases = forms.map((f) =>
        emitInto(() => {
          reset();
          emitNode(f);
        }),
      );
      reset();
      out.push({ op: "layers", table, cases });
    }
    return out;

    /** The steps `f` emits, taken out of `out`. */
    function emitInto(f: () => void): BatchStep[] {
      const at = out.length;
      f();
      return out.splice(at);
    }
  };

  const steps = emitGraph(top.slice(0, loopAt + 1));
  const head = emitGraph(top.slice(loopAt + 1));
  // The tail: the last token's loop results (every value after the loop reads) into copy 0, then the
  // per-token program's steps after its loop.
  const tail: BatchStep[] = [];
  const rest = top.slice(loopAt + 1);
  const produced = new Set(rest.map((n) => n.id));
  const need = new Map<number, number>();
  for (const n of rest) {
    if (n.op === "loop_result") need.set(off(n.id), n.id);
    else for (const i of n.inputs) if (!produced.has(i)) need.set(off(i), i);
  }
  for (const id of need.values()) {
    const use = ks.lastToken(width(id));
    tail.push({
      op: "kernel",
      kernel: use.name,
      bind: [],
      params: { ao: off(id), yo: off(id) },
      grid: elements(width(id), use.perGroup),
      perToken: false,
    });
  }
  for (const s of c.decode.slice(decodeLoop + 1)) {
    if (s.op !== "kernel") return undefined;
    tail.push({ ...s, params: { ...s.params }, perToken: false });
  }
  return { tokens: B, stride: 0, qStride: 0, tko, steps, tail, head, lists };
}

/** The stride of the tokens' copies, and every batch kernel's `bstride`, `qstride` and `tko`, once the
 * scratch is all allocated. */
export function finishBatch(b: GpuBatch, stride: number, qStride: number): GpuBatch {
  b.stride = stride;
  b.qStride = qStride;
  const walk = (steps: BatchStep[]) => {
    for (const s of steps) {
      if (s.op === "kernel") Object.assign(s.params, { bstride: stride, qstride: qStride, tko: b.tko });
      else walk(innerSteps(s));
    }
  };
  walk(b.steps);
  walk(b.head);
  // The tail's own copies only: its other steps are the per-token program's kernels, constants and all.
  walk(b.tail.filter((s) => s.op === "kernel" && s.kernel.startsWith("batch_last_")));
  return b;
}
