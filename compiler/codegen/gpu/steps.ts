// The node → kernel-step emission the per-token program (program.ts) and the batch program (batch.ts)
// share. They differ in how a step is dispatched (once, or over the batch's tokens as the kernel's
// batched twin), in the products (matrix-vector with the norm folded in, or tiled matrix-matrix) and in
// the MoE plumbing; everything else is emitted here, once, through the builder's `emit`.

import type { GpuBinding, KernelStep } from "../../../runtime/gpu/program.ts";
import type { WeightEntry } from "../../../runtime/manifest.ts";
import type { Node } from "../../ir/graph.ts";
import type { GpuKernelSet, KernelUse } from "./program.ts";

/** Emits one kernel step (per token, or over the batch's tokens). */
export type Emit = (
  use: KernelUse,
  bind: GpuBinding[],
  params: Record<string, number>,
  grid: [number, number, number],
  rows?: KernelStep["rows"],
) => void;

/** What the shared steps read of the program being built. */
export interface StepContext {
  ks: GpuKernelSet;
  off(id: number): number;
  width(id: number): number;
  weightOf(key: string): WeightEntry;
  scratch(floats: number): number;
  ropeTable(theta: number, headDim: number): number;
  /** Word offset of a region of the quantized activations. */
  qRegion(region: string, n: number): number;
  readsQ8(scheme: string): boolean;
  /** Attention scores' scratch per head count, and K rows' per width, shared by both programs. */
  scores: Map<number, number>;
  kvRows: Map<number, number>;
  maxContext: number;
}

export const W = (key: string): GpuBinding => ({ kind: "weight", key });
/** The quantized activations' binding, last, for a kernel that reads them. */
export const Q = (qo: number | undefined): GpuBinding[] => (qo === undefined ? [] : [{ kind: "q8" }]);
export const normOf = (n: Node) =>
  n.weights.norm ? { key: n.weights.norm, eps: n.attrs.norm_eps as number } : undefined;
export const elements = (n: number, per: number): [number, number, number] => [Math.ceil(n / per), 1, 1];
const kvOf = (n: Node): GpuBinding => ({
  kind: "kv",
  cache: n.attrs.cache as number,
  slot: (n.attrs.kv ?? n.attrs.slot) === "k" ? "k" : "v",
});

/** The shared emitters of one graph body, with its own memory of the last quantized input. */
export function nodeSteps(c: StepContext, emit: Emit) {
  const { ks, off, width } = c;
  // The last input quantized, kept while the nodes after it read the same value (q, k and v; a router
  // and its experts), so each input is quantized once for all of them.
  let lastQ: { key: string; at: number } | undefined;

  /** x (of `n` values, through the norm when given) quantized to q8_0, unless the last quantized input
   * was the same; returns where it is (`qo`). An expert's hidden vector has a region of its own, so it
   * never overwrites the input the next expert reads. */
  const quantized = (
    x: number | string,
    n: number,
    xo: number,
    norm?: { key: string; eps: number },
    region = `${n}`,
  ): number => {
    const key = `${x} ${norm?.key ?? ""}`;
    if (lastQ?.key === key) return lastQ.at;
    const at = c.qRegion(region, n);
    const use = ks.quantize!({ in: n, norm: norm?.eps });
    emit(
      use,
      [...(norm ? [W(norm.key)] : []), { kind: "q8", write: true }],
      { xo, qo: at },
      elements(n / 32, use.perGroup),
    );
    lastQ = { key, at };
    return at;
  };

  /** RoPE over a linear's output at `at`, in place, or into a KV cache row (rounded to its type once). */
  const ropeAfter = (n: Node, kv: GpuBinding | undefined, at: number) => {
    const w = n.shape[0]!;
    const headDim = w / (n.attrs.rope_heads as number);
    const use = ks.rope({ width: w, headDim, interleaved: n.attrs.rope_style !== "half", kv: !!kv });
    const tab = c.ropeTable(n.attrs.rope_theta as number, headDim);
    emit(use, kv ? [kv] : [], { xo: at, yo: at, tab }, elements(w / 2, use.perGroup));
  };

  /** A linear's epilogue after its product at `yo`: its bias, its q/k norm, then RoPE (or the KV row).
   * `kv`: the cache row to write, unless the product wrote it directly. */
  const after = (n: Node, kv: GpuBinding | undefined, yo: number) => {
    const w = n.shape[0]!;
    if (n.weights.bias) {
      const use = ks.bias(w);
      emit(use, [W(n.weights.bias)], { ao: yo, yo }, elements(w, use.perGroup));
    }
    if (n.weights.post_norm) {
      const heads = n.attrs.post_norm_heads as number | undefined;
      const use = ks.rmsNorm({ n: w, eps: n.attrs.post_norm_eps as number, ...(heads ? { heads } : {}) });
      emit(use, [W(n.weights.post_norm)], { xo: yo, yo }, [heads ?? 1, 1, 1]);
    }
    if (n.attrs.rope_heads !== undefined) ropeAfter(n, kv, yo);
    else if (kv) {
      const use = ks.kvWrite(w);
      emit(use, [kv], { xo: yo }, elements(w, use.perGroup));
    }
  };

  return {
    quantized,
    ropeAfter,
    after,

    /** Before each node: a node other than a product forgets the last quantized input. */
    visit(n: Node): void {
      if (n.op !== "linear" && n.op !== "gate_up" && n.op !== "route") lastQ = undefined;
    },
    forget(): void {
      lastQ = undefined;
    },

    /** Where a linear writes: the arena, or its KV cache row directly (`direct`, when `mayDirect`), or,
     * for a K row that RoPE rotates (or a bias or q/k norm epilogue changes), the arena first so the cache
     * rounds it once; then `kv` is the row `after` writes. The batch program never writes directly: its
     * tokens may belong to different sequences, whose caches one product cannot bind. */
    linearTarget(n: Node, mayDirect = true): { kv?: GpuBinding; direct?: GpuBinding; yo: number } {
      const kv = n.attrs.kv !== undefined ? kvOf(n) : undefined;
      if (!kv) return { yo: off(n.id) };
      const plain = n.attrs.rope_heads === undefined && !n.weights.bias && !n.weights.post_norm;
      if (plain && mayDirect) return { direct: kv, yo: 0 };
      let row = c.kvRows.get(n.shape[0]!);
      if (row === undefined) c.kvRows.set(n.shape[0]!, (row = c.scratch(n.shape[0]!)));
      return { kv, yo: row };
    },

    /** The router's kernel (softmax, top-k), its input quantized first when its scheme reads q8. */
    route(n: Node): void {
      const x = n.inputs[0]!;
      const scheme = n.attrs.scheme as string;
      const qo = c.readsQ8(scheme) ? quantized(x, width(x), off(x), normOf(n)) : undefined;
      const norm = qo === undefined ? normOf(n) : undefined;
      const use = ks.route({
        scheme,
        experts: n.attrs.experts as number,
        in: width(x),
        k: n.attrs.k as number,
        normalize: !!n.attrs.normalize,
        norm: norm?.eps,
      });
      const bind = [W(n.weights.router!), ...(norm ? [W(norm.key)] : []), ...Q(qo)];
      emit(use, bind, { xo: off(x), yo: off(n.id), ...(qo !== undefined ? { qo } : {}) }, [1, 1, 1]);
    },

    /** An MoE op's output before its experts add in: its residual input, or zero. */
    moeInit(n: Node): void {
      const hid = n.shape[0]!;
      const yo = off(n.id);
      const op = n.attrs.residual ? "copy" : "zero";
      const use = ks.elementwise(op, hid);
      emit(
        use,
        [],
        { ...(n.attrs.residual ? { ao: off(n.inputs[2]!) } : {}), yo },
        elements(hid, use.perGroup),
      );
    },

    /** The nodes with one kernel the same in both programs; false for the others. */
    simple(n: Node): boolean {
      const x = n.inputs[0]!;
      switch (n.op) {
        case "embed": {
          const table = c.weightOf(n.weights.table!);
          const use = ks.embed(table.scheme, table.shape[0]!, n.shape[0]!);
          emit(use, [W(table.key)], { yo: off(n.id) }, elements(n.shape[0]!, use.perGroup), {
            count: table.shape[0]!,
            perGroup: 0,
            weights: [0],
          });
          return true;
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
            ...(n.attrs.scale !== undefined ? { scale: n.attrs.scale as number } : {}),
          });
          const kv: GpuBinding[] = [
            { kind: "kv", cache, slot: "k" },
            { kind: "kv", cache, slot: "v" },
          ];
          emit(use, kv, { qo: off(x), yo: off(n.id), so: sc }, [heads, 1, 1]);
          return true;
        }
        case "rms_norm": {
          const heads = n.attrs.heads as number | undefined;
          emit(
            ks.rmsNorm({ n: n.shape[0]!, eps: n.attrs.eps as number, ...(heads ? { heads } : {}) }),
            [W(n.weights.weight!)],
            { xo: off(x), yo: off(n.id) },
            [heads ?? 1, 1, 1],
          );
          return true;
        }
        case "bias": {
          const use = ks.bias(n.shape[0]!);
          emit(use, [W(n.weights.bias!)], { ao: off(x), yo: off(n.id) }, elements(n.shape[0]!, use.perGroup));
          return true;
        }
        case "scale": {
          const use = ks.elementwise("scale", n.shape[0]!, n.attrs.by as number);
          emit(use, [], { ao: off(x), yo: off(n.id) }, elements(n.shape[0]!, use.perGroup));
          return true;
        }
        case "sigmoid_gate": {
          const by = n.inputs[1]!;
          const use = ks.sigmoidGate(n.shape[0]!, width(by), !!n.attrs.residual);
          const params = { ao: off(x), bo: off(by), yo: off(n.id) };
          emit(
            use,
            [W(n.weights.weight!)],
            n.attrs.residual ? { ...params, ro: off(n.inputs[2]!) } : params,
            [1, 1, 1],
          );
          return true;
        }
        case "add":
        case "mul": {
          const use = ks.elementwise(n.op, n.shape[0]!);
          const params = { ao: off(x), bo: off(n.inputs[1]!), yo: off(n.id) };
          emit(use, [], params, elements(n.shape[0]!, use.perGroup));
          return true;
        }
        case "silu": {
          const use = ks.elementwise("silu", n.shape[0]!);
          emit(use, [], { ao: off(x), yo: off(n.id) }, elements(n.shape[0]!, use.perGroup));
          return true;
        }
        case "softmax":
          emit(ks.softmax(n.shape[0]!), [], { xo: off(x), yo: off(n.id) }, [1, 1, 1]);
          return true;
        case "rope": {
          const w = n.shape[0]!;
          const headDim = w / (n.attrs.heads as number);
          const use = ks.rope({ width: w, headDim, interleaved: n.attrs.style !== "half", kv: false });
          const tab = c.ropeTable(n.attrs.theta as number, headDim);
          emit(use, [], { xo: off(x), yo: off(n.id), tab }, elements(w / 2, use.perGroup));
          return true;
        }
        case "kv_write": {
          const use = ks.kvWrite(width(x));
          emit(use, [kvOf(n)], { xo: off(x) }, elements(width(x), use.perGroup));
          return true;
        }
        case "loop_result":
          return true;
        default:
          return false;
      }
    },
  };
}
