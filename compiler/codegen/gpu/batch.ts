// The batched prefill's program (runtime/gpu/program.ts's GpuBatch), built from the same graph and
// activation plan as the per-token program, for a backend whose kernel set has matrix-matrix kernels
// (webgpu). A prompt runs in batches of up to B tokens; token t of a batch owns a copy of the arena (at
// t · arenaFloats: the decode arena is copy 0) and of the quantized activations, at position pos0 + t.
//
// - Every linear op (and gate_up, and each expert's gate_up and down) is one matrix-matrix kernel over
//   the batch: each workgroup stages its rows' weight bytes in workgroup memory and every token's product
//   reads them there, so a weight is read from device memory once per batch instead of once per token.
//   An RMS norm the per-token kernel folds into a product runs first as its own (batched) kernel.
// - Every other kernel is its per-token kernel's batched twin (the same source, token t = workgroup_id.z).
//   KV rows are written for all the batch's tokens before attention reads them (causally: pos0 + t).
// - MoE: the router's ids of all tokens are gathered and read back once per layer; the host groups the
//   tokens by expert, fetches each used expert once (through the expert cache when experts are
//   offloaded) and runs its gate_up and down over its tokens' list.
// - The final norm and LM head run for the last token only: its loop results are copied into the first
//   arena copy and the per-token program's steps after the loop run there.

import type {
  BatchBinding,
  BatchStep,
  GpuBatch,
  GpuBinding,
  GpuStep,
  KernelStep,
} from "../../../runtime/gpu/program.ts";
import type { WeightEntry } from "../../../runtime/manifest.ts";
import type { Graph, Node } from "../../ir/graph.ts";
import type { GpuKernelSet, KernelUse } from "./program.ts";

/** What buildGpuProgram shares with the batch builder: the same offsets, scratch and q8 regions. */
export interface BatchContext {
  graph: Graph;
  ks: GpuKernelSet;
  /** The per-token program's steps (its steps after the layer loop become the batch's tail). */
  decode: GpuStep[];
  off(id: number): number;
  width(id: number): number;
  weightOf(key: string): WeightEntry;
  scratch(floats: number): number;
  ropeTable(theta: number, headDim: number): number;
  /** Word offset of a region of the quantized activations (shared with the per-token program's). */
  qRegion(region: string, n: number): number;
  readsQ8(scheme: string): boolean;
  moeOfRoute: Map<number, number>;
  moeIndex: Map<number, number>;
  hidden: Map<number, number>;
  scores: Map<number, number>;
  maxContext: number;
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
  const tko = c.scratch(1);
  let gather: number | undefined;
  const normed = new Map<number, number>();
  const kvRows = new Map<number, number>();
  let lists = 0;
  const elements = (n: number, per: number): [number, number, number] => [Math.ceil(n / per), 1, 1];
  const W = (key: string): GpuBinding => ({ kind: "weight", key });
  const Q = (qo: number | undefined): BatchBinding[] => (qo === undefined ? [] : [{ kind: "q8" }]);
  const normOf = (n: Node) =>
    n.weights.norm ? { key: n.weights.norm, eps: n.attrs.norm_eps as number } : undefined;

  const emitGraph = (nodes: Node[]): BatchStep[] => {
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
    let lastQ: { key: string; at: number } | undefined;
    let lastN: { key: string; at: number } | undefined;
    const quantized = (
      x: number | string,
      n: number,
      xo: number,
      norm?: { key: string; eps: number },
      region = `${n}`,
    ) => {
      const key = `${x} ${norm?.key ?? ""}`;
      if (lastQ?.key === key) return lastQ.at;
      const at = c.qRegion(region, n);
      const use = ks.quantize!({ in: n, norm: norm?.eps });
      each(
        use,
        [...(norm ? [W(norm.key)] : []), { kind: "q8", write: true }],
        { xo, qo: at },
        elements(n / 32, use.perGroup),
      );
      lastQ = { key, at };
      return at;
    };
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
      o: { out: number; in: number; kv?: boolean; residual?: boolean; scaled?: boolean; list?: boolean },
      params: Record<string, number>,
      splits: number[],
    ) => {
      const use = matmul({ weights, ...o });
      step(use, binds, params, [1, 1, 1], false, { count: o.out, perGroup: use.perGroup, weights: splits });
    };
    const ropeAfter = (n: Node, kv: GpuBinding | undefined, at: number) => {
      if (n.attrs.rope_heads === undefined) return;
      const w = n.shape[0]!;
      const headDim = w / (n.attrs.rope_heads as number);
      const use = ks.rope({ width: w, headDim, interleaved: n.attrs.rope_style !== "half", kv: !!kv });
      const tab = c.ropeTable(n.attrs.rope_theta as number, headDim);
      each(use, kv ? [kv] : [], { xo: at, yo: at, tab }, elements(w / 2, use.perGroup));
    };
    for (const n of nodes) {
      const x = n.inputs[0]!;
      if (n.op !== "linear" && n.op !== "gate_up" && n.op !== "route") {
        lastQ = undefined;
        lastN = undefined;
      }
      switch (n.op) {
        case "embed": {
          const table = c.weightOf(n.weights.table!);
          const use = ks.embed(table.scheme, table.shape[0]!, n.shape[0]!);
          each(use, [W(table.key)], { yo: off(n.id) }, elements(n.shape[0]!, use.perGroup), {
            count: table.shape[0]!,
            perGroup: 0,
            weights: [0],
          });
          break;
        }
        case "linear": {
          const kv: GpuBinding | undefined =
            n.attrs.kv !== undefined
              ? { kind: "kv", cache: n.attrs.cache as number, slot: n.attrs.kv === "k" ? "k" : "v" }
              : undefined;
          const scheme = n.attrs.scheme as string;
          const q8 = c.readsQ8(scheme);
          const qo = q8 ? quantized(x, width(x), off(x), normOf(n)) : undefined;
          const xo = q8 ? off(x) : normalized(x, width(x), normOf(n));
          // As in the per-token program: a K row that RoPE rotates goes through the arena first.
          const rope = n.attrs.rope_heads !== undefined;
          const direct = kv && !rope ? kv : undefined;
          let yo = 0;
          if (!kv) yo = off(n.id);
          else if (rope) {
            let row = kvRows.get(n.shape[0]!);
            if (row === undefined) kvRows.set(n.shape[0]!, (row = c.scratch(n.shape[0]!)));
            yo = row;
          }
          const params: Record<string, number> = { xo, yo, ...(qo !== undefined ? { qo } : {}) };
          if (n.attrs.residual) params.ro = off(n.inputs[1]!);
          product(
            [scheme],
            [W(n.weights.w!), ...(direct ? [direct] : []), ...Q(qo)],
            { out: n.shape[0]!, in: width(x), kv: !!direct, residual: !!n.attrs.residual },
            params,
            [0],
          );
          if (rope) ropeAfter(n, kv, yo);
          break;
        }
        case "gate_up": {
          const gate = n.attrs.gate_scheme as string;
          const up = n.attrs.up_scheme as string;
          const q = [c.readsQ8(gate), c.readsQ8(up)];
          const qo = q[0] || q[1] ? quantized(x, width(x), off(x), normOf(n)) : undefined;
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
          const scheme = n.attrs.scheme as string;
          const qo = c.readsQ8(scheme) ? quantized(x, width(x), off(x), normOf(n)) : undefined;
          const norm = qo === undefined ? normOf(n) : undefined;
          const use = ks.route({
            scheme,
            experts: n.attrs.experts as number,
            in: width(x),
            k,
            normalize: !!n.attrs.normalize,
            norm: norm?.eps,
          });
          const bind = [W(n.weights.router!), ...(norm ? [W(norm.key)] : []), ...Q(qo)];
          each(use, bind, { xo: off(x), yo: off(n.id), ...(qo !== undefined ? { qo } : {}) }, [1, 1, 1]);
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
          if (n.attrs.residual) {
            const use = ks.elementwise("copy", hid);
            each(use, [], { ao: off(n.inputs[2]!), yo }, elements(hid, use.perGroup));
          } else {
            const use = ks.elementwise("zero", hid);
            each(use, [], { yo }, elements(hid, use.perGroup));
          }
          const gs = n.attrs.gate_scheme as string;
          const us = n.attrs.up_scheme as string;
          const ds = n.attrs.down_scheme as string;
          const gq = c.readsQ8(gs) || c.readsQ8(us);
          const xq = gq ? quantized(x, hid, off(x)) : undefined;
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
            lastQ = undefined;
            const hq = dq ? quantized(`h`, ffn, h, undefined, `h${ffn}`) : undefined;
            lastQ = undefined;
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
        case "attend": {
          const heads = n.attrs.heads as number;
          const cache = n.attrs.cache as number;
          let sc = c.scores.get(heads);
          if (sc === undefined) c.scores.set(heads, (sc = c.scratch(heads * c.maxContext)));
          const use = ks.attend({
            heads,
            kvHeads: n.attrs.kv_heads as number,
            headDim: n.shape[0]! / heads,
            window: (n.attrs.window as number) || 0,
            maxContext: c.maxContext,
          });
          each(
            use,
            [
              { kind: "kv", cache, slot: "k" },
              { kind: "kv", cache, slot: "v" },
            ],
            { qo: off(x), yo: off(n.id), so: sc },
            [heads, 1, 1],
          );
          break;
        }
        case "rms_norm":
          each(
            ks.rmsNorm({ n: n.shape[0]!, eps: n.attrs.eps as number }),
            [W(n.weights.weight!)],
            { xo: off(x), yo: off(n.id) },
            [1, 1, 1],
          );
          break;
        case "add":
        case "mul": {
          const use = ks.elementwise(n.op, n.shape[0]!);
          each(
            use,
            [],
            { ao: off(x), bo: off(n.inputs[1]!), yo: off(n.id) },
            elements(n.shape[0]!, use.perGroup),
          );
          break;
        }
        case "silu": {
          const use = ks.elementwise("silu", n.shape[0]!);
          each(use, [], { ao: off(x), yo: off(n.id) }, elements(n.shape[0]!, use.perGroup));
          break;
        }
        case "softmax":
          each(ks.softmax(n.shape[0]!), [], { xo: off(x), yo: off(n.id) }, [1, 1, 1]);
          break;
        case "rope": {
          const w = n.shape[0]!;
          const headDim = w / (n.attrs.heads as number);
          const use = ks.rope({ width: w, headDim, interleaved: n.attrs.style !== "half", kv: false });
          const tab = c.ropeTable(n.attrs.theta as number, headDim);
          each(use, [], { xo: off(x), yo: off(n.id), tab }, elements(w / 2, use.perGroup));
          break;
        }
        case "kv_write": {
          const use = ks.kvWrite(width(x));
          const kv: GpuBinding = {
            kind: "kv",
            cache: n.attrs.cache as number,
            slot: n.attrs.slot === "k" ? "k" : "v",
          };
          each(use, [kv], { xo: off(x) }, elements(width(x), use.perGroup));
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
            out.push(...emitGraph(b.nodes));
            b.params.forEach((p, k) => copy(p.id, b.results[k]!, p.shape[0]!));
          });
          out.push({ op: "loop", count: n.attrs.count as number, body });
          break;
        }
        case "loop_result":
          break;
        default:
          throw new Error(`no batched ${ks.backend} kernel for \`${n.op}\``);
      }
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
  return { tokens: B, stride: 0, qStride: 0, tko, steps, tail, lists };
}

/** The stride of the tokens' copies, and every batch kernel's `bstride`, `qstride` and `tko`, once the
 * scratch is all allocated. */
export function finishBatch(b: GpuBatch, stride: number, qStride: number): GpuBatch {
  b.stride = stride;
  b.qStride = qStride;
  const walk = (steps: BatchStep[]) => {
    for (const s of steps) {
      if (s.op === "kernel") Object.assign(s.params, { bstride: stride, qstride: qStride, tko: b.tko });
      else if (s.op === "loop" || s.op === "experts") walk(s.body);
    }
  };
  walk(b.steps);
  // The tail's own copies only: its other steps are the per-token program's kernels, constants and all.
  walk(b.tail.filter((s) => s.op === "kernel" && s.kernel.startsWith("batch_last_")));
  return b;
}
