// Fusion: primitive patterns → the kernels the code generator emits. Each rule is small and
// only fires when the intermediate values have no other reader, so no result changes.
//   matmul(x, dequantize W)                 → linear      (a weight is never expanded to f32)
//   expert_mix(x, sel, dequantize …)        → moe_ffn     (touches only the selected experts)
//   mul(silu(linear g), linear u)           → gate_up     (one pass over both matrices)
//   topk(softmax(linear router))            → route
//   bias(linear), rms_norm(linear)         → linear with a bias / q-k norm epilogue
//   kv_write(rope(linear)), rope(linear)    → linear with rope / cache-write epilogue
//   linear(rms_norm(x)) …                   → linear with the norm folded into its input
//   add(a, linear | moe_ffn | sigmoid_gate) → residual epilogue (a gated shared expert onto the MoE's sum)
import type { Graph, Node } from "../ir/graph.ts";
import { dce } from "./dce.ts";
import { derive, mapNodes, nodeIndex, takeAttr, takeAttrs, useCounts } from "./rewrite.ts";

type Rule = (n: Node, at: (id: number) => Node | undefined, uses: (id: number) => number) => Node | undefined;

/** Applies a rule to every node until nothing changes; consumed producers die in DCE. */
function apply(g: Graph, rule: Rule): Graph {
  for (;;) {
    const index = nodeIndex(g);
    const counts = useCounts(g);
    let changed = false;
    g = mapNodes(g, (n) => {
      const r = rule(
        n,
        (id) => index.get(id),
        (id) => counts.get(id) ?? 0,
      );
      if (!r) return [n];
      changed = true;
      return [r];
    });
    g = dce(g);
    if (!changed) return g;
  }
}

const dequantIntoMatmul: Rule = (n, at) => {
  if (n.op === "matmul") {
    const w = at(n.inputs[1]!);
    if (w?.op !== "dequantize") return undefined;
    return derive(n, {
      op: "linear",
      inputs: [n.inputs[0]!],
      weights: { w: w.weights.w! },
      ...takeAttr(w, "scheme", "scheme"),
    });
  }
  if (n.op === "expert_mix") {
    const ws = n.inputs.slice(2).map(at);
    if (!ws.every((w) => w?.op === "dequantize")) return undefined;
    const roles = ["gate", "up", "down"];
    return derive(n, {
      op: "moe_ffn",
      inputs: n.inputs.slice(0, 2),
      weights: Object.fromEntries(ws.map((w, i) => [roles[i], w!.weights.w!])),
      ...takeAttrs(...ws.map((w, i) => takeAttr(w!, "scheme", `${roles[i]}_scheme`))),
    });
  }
  return undefined;
};

const gateUp: Rule = (n, at, uses) => {
  if (n.op !== "mul") return undefined;
  const s = at(n.inputs[0]!);
  const g = s?.op === "silu" ? at(s.inputs[0]!) : undefined;
  const u = at(n.inputs[1]!);
  if (!s || g?.op !== "linear" || u?.op !== "linear" || g.inputs[0] !== u.inputs[0]) return undefined;
  if (uses(s.id) !== 1 || uses(g.id) !== 1 || uses(u.id) !== 1 || g.attrs.norm_eps !== undefined)
    return undefined;
  return derive(n, {
    op: "gate_up",
    inputs: [g.inputs[0]!],
    weights: { gate: g.weights.w!, up: u.weights.w! },
    ...takeAttrs(takeAttr(g, "scheme", "gate_scheme"), takeAttr(u, "scheme", "up_scheme")),
  });
};

const route: Rule = (n, at, uses) => {
  if (n.op !== "topk") return undefined;
  const s = at(n.inputs[0]!);
  const l = s?.op === "softmax" ? at(s.inputs[0]!) : undefined;
  if (!s || l?.op !== "linear" || uses(s.id) !== 1 || uses(l.id) !== 1) return undefined;
  return derive(n, {
    op: "route",
    inputs: [l.inputs[0]!],
    weights: { router: l.weights.w! },
    ...takeAttrs(takeAttr(l, "scheme", "scheme"), { attrs: { experts: l.shape[0]! } }),
  });
};

/** A bias, then a q/k norm (per head or over the whole output), into the product's epilogue: before RoPE,
 * which ropeAndCache then folds in after them. */
const epilogue: Rule = (n, at, uses) => {
  if (n.op !== "bias" && n.op !== "rms_norm") return undefined;
  const src = at(n.inputs[0]!);
  if (
    src?.op !== "linear" ||
    uses(src.id) !== 1 ||
    src.attrs.residual ||
    src.attrs.kv !== undefined ||
    src.attrs.rope_heads !== undefined ||
    src.weights.post_norm
  )
    return undefined;
  if (n.op === "bias")
    return src.weights.bias ? undefined : derive(src, { id: n.id, weights: { bias: n.weights.bias! } });
  const attrs: Node["attrs"] = { post_norm_eps: n.attrs.eps! };
  if (n.attrs.heads !== undefined) attrs.post_norm_heads = n.attrs.heads;
  return derive(src, { id: n.id, weights: { post_norm: n.weights.weight! }, attrs });
};

const ropeAndCache: Rule = (n, at, uses) => {
  if (n.op !== "kv_write" && n.op !== "rope") return undefined;
  let src = at(n.inputs[0]!);
  let rope: Node | undefined;
  if (n.op === "kv_write" && src?.op === "rope" && uses(src.id) === 1) {
    rope = src;
    src = at(src.inputs[0]!);
  } else if (n.op === "rope") rope = n;
  if (src?.op !== "linear" || uses(src.id) !== 1 || src.attrs.residual) return undefined;
  if ((rope && src.attrs.rope_heads !== undefined) || (n.op === "kv_write" && src.attrs.kv !== undefined))
    return undefined;
  const attrs: Node["attrs"] = {};
  if (rope)
    Object.assign(attrs, {
      rope_heads: rope.attrs.heads!,
      rope_theta: rope.attrs.theta!,
      rope_style: rope.attrs.style!,
    });
  if (n.op === "kv_write") Object.assign(attrs, { kv: n.attrs.slot!, cache: n.attrs.cache! });
  return derive(src, { id: n.id, attrs });
};

const normConsumers = new Set(["linear", "gate_up", "route"]);

/** Folds rms_norm into each reader; every reader must take it, else the norm would be computed anyway. */
function normIntoMatmul(g: Graph): Graph {
  const index = nodeIndex(g);
  const readers = new Map<number, Node[]>();
  const blocked = new Set<number>();
  const visit = (x: Graph) => {
    for (const n of x.nodes) {
      n.inputs.forEach((id, i) => {
        const norm = index.get(id);
        if (norm?.op !== "rms_norm") return;
        // A per-head norm (q/k) is not an input prologue: it stays its own step.
        if (
          i === 0 &&
          normConsumers.has(n.op) &&
          n.attrs.norm_eps === undefined &&
          norm.attrs.heads === undefined
        )
          readers.set(id, [...(readers.get(id) ?? []), n]);
        else blocked.add(id);
      });
      if (n.body) visit(n.body);
    }
    x.results.forEach((r) => blocked.add(r));
  };
  visit(g);
  return dce(
    mapNodes(g, (n) => {
      const norm = index.get(n.inputs[0]!);
      if (norm?.op !== "rms_norm" || blocked.has(norm.id) || !readers.get(norm.id)?.includes(n)) return [n];
      return [
        derive(n, {
          inputs: [norm.inputs[0]!, ...n.inputs.slice(1)],
          weights: { norm: norm.weights.weight! },
          attrs: { norm_eps: norm.attrs.eps! },
        }),
      ];
    }),
  );
}

const residual: Rule = (n, at, uses) => {
  if (n.op !== "add") return undefined;
  for (const [mine, other] of [
    [1, 0],
    [0, 1],
  ] as const) {
    const p = at(n.inputs[mine]!);
    if (
      (p?.op === "linear" || p?.op === "moe_ffn" || p?.op === "sigmoid_gate") &&
      uses(p.id) === 1 &&
      !p.weights.post_norm &&
      !p.attrs.residual &&
      p.attrs.kv === undefined
    ) {
      return derive(p, { id: n.id, inputs: [...p.inputs, n.inputs[other]!], attrs: { residual: true } });
    }
  }
  return undefined;
};

export function fuse(g: Graph): Graph {
  g = apply(g, dequantIntoMatmul);
  g = apply(g, gateUp);
  g = apply(g, route);
  g = apply(g, epilogue);
  g = apply(g, ropeAndCache);
  g = normIntoMatmul(g);
  g = apply(g, residual);
  return g;
}
