// Built-in ops of the forward language: their arguments and shape rules, stated once.
// The checker binds call arguments against these signatures; the IR keeps the op names.
// Shapes are per token: the token (sequence) dimension is implicit, bounded by the target's max_context.

export type ArgKind = "tensor" | "tokens" | "weight" | "int" | "float" | "bool" | "enum" | "expert";

export interface ArgSpec {
  name: string;
  kind: ArgKind;
  doc: string;
  default?: number | string | boolean;
  optional?: boolean;
  values?: readonly string[];
}

/** Bound arguments: tensors and weights carry shapes, scalars their values. */
export interface Bound {
  shapes: Record<string, number[]>;
  attrs: Record<string, number | string | boolean>;
  expert?: { op: string; shapes: Record<string, number[]> };
}

/** A shape rule failed; `arg` says which argument to point at. */
export class ShapeError extends Error {
  constructor(
    message: string,
    readonly arg?: string,
  ) {
    super(message);
  }
}

export interface OpSpec {
  name: string;
  doc: string;
  args: readonly ArgSpec[];
  /** For ops that can be a moe expert body: the weight arguments, which then carry a leading experts dim. */
  expertWeights?: readonly string[];
  infer(b: Bound): number[];
}

const fmt = (s: number[]) => `[${s.join(", ")}]`;

function want(cond: boolean, message: string, arg?: string): void {
  if (!cond) throw new ShapeError(message, arg);
}

function vec(b: Bound, arg: string): number {
  const s = b.shapes[arg]!;
  want(s.length === 1, `\`${arg}\` must be a vector per token, found shape ${fmt(s)}`, arg);
  return s[0]!;
}

function matrix(
  b: Bound,
  arg: string,
  rows: number | undefined,
  cols: number,
  role: string,
  out = "out",
): number[] {
  const s = b.shapes[arg]!;
  want(s.length === 2, `\`${arg}\` must be a matrix [out, in], found shape ${fmt(s)}`, arg);
  want(
    s[1] === cols && (rows === undefined || s[0] === rows),
    `\`${arg}\` has shape ${fmt(s)} but ${role} needs [${rows ?? out}, ${cols}]`,
    arg,
  );
  return s;
}

function sameShape(b: Bound, x: string, y: string): number[] {
  const a = b.shapes[x]!;
  const c = b.shapes[y]!;
  want(fmt(a) === fmt(c), `shapes ${fmt(a)} and ${fmt(c)} differ`, y);
  return a;
}

/** Width of one head, after checking the width splits evenly into `heads`. */
function headDim(width: number, heads: number, arg: string): number {
  want(Number.isInteger(heads) && heads > 0, `heads must be a positive integer, found ${heads}`, "heads");
  want(width % heads === 0, `\`${arg}\` has width ${width}, which does not split into ${heads} heads`, arg);
  return width / heads;
}

const x = (doc = "input activations"): ArgSpec => ({ name: "x", kind: "tensor", doc });

export const ops: Record<string, OpSpec> = {
  embed: {
    name: "embed",
    doc: "token embedding lookup: one row of `table` per token",
    args: [
      { name: "table", kind: "weight", doc: "[vocab, hidden]" },
      { name: "tokens", kind: "tokens", doc: "the forward input" },
    ],
    infer: (b) => {
      const t = b.shapes.table!;
      want(t.length === 2, `\`table\` must be [vocab, hidden], found ${fmt(t)}`, "table");
      return [t[1]!];
    },
  },
  rms_norm: {
    name: "rms_norm",
    doc: "x / sqrt(mean(x²) + eps) * weight; with `heads`, each head's slice of x on its own (Qwen3's q/k norm)",
    args: [
      x(),
      { name: "weight", kind: "weight", doc: "[d], or [d / heads] with heads" },
      { name: "eps", kind: "float", doc: "added to the mean square", default: 1e-5 },
      {
        name: "heads",
        kind: "int",
        doc: "normalize each of this many equal slices of x apart, all with the same weight",
        optional: true,
      },
    ],
    infer: (b) => {
      const d = vec(b, "x");
      const w = b.shapes.weight!;
      if (b.attrs.heads === undefined) {
        want(w.length === 1 && w[0] === d, `\`weight\` has shape ${fmt(w)} but x has width ${d}`, "weight");
        return [d];
      }
      const hd = headDim(d, b.attrs.heads as number, "x");
      want(
        w.length === 1 && w[0] === hd,
        `\`weight\` has shape ${fmt(w)} but a head of x has width ${d} / ${b.attrs.heads} = ${hd}`,
        "weight",
      );
      return [d];
    },
  },
  linear: {
    name: "linear",
    doc: "x · wᵀ + bias (w is [out, in], as in GGUF and PyTorch; the bias is optional)",
    args: [
      x(),
      { name: "w", kind: "weight", doc: "[out, in]" },
      { name: "bias", kind: "weight", doc: "[out], added to the product (Qwen2's q/k/v)", optional: true },
    ],
    infer: (b) => {
      const width = vec(b, "x");
      const out = matrix(b, "w", undefined, width, `x of width ${width}`)[0]!;
      const bias = b.shapes.bias;
      if (bias)
        want(
          bias.length === 1 && bias[0] === out,
          `\`bias\` has shape ${fmt(bias)} but the product has width ${out}`,
          "bias",
        );
      return [out];
    },
  },
  scale: {
    name: "scale",
    doc: "x · by, a constant (Granite's multipliers; also written `x * number`)",
    args: [x(), { name: "by", kind: "float", doc: "the constant" }],
    infer: (b) => {
      want(Number.isFinite(b.attrs.by), `by must be a finite number, found ${b.attrs.by}`, "by");
      return b.shapes.x!;
    },
  },
  sigmoid_gate: {
    name: "sigmoid_gate",
    doc: "x · sigmoid(weight · by): x scaled by one gate value per token (Qwen2-MoE's shared expert)",
    args: [
      x("the gated value"),
      { name: "by", kind: "tensor", doc: "what the gate reads, [d]" },
      { name: "weight", kind: "weight", doc: "[d]" },
    ],
    infer: (b) => {
      const d = vec(b, "by");
      const w = b.shapes.weight!;
      want(
        w.length === 1 && w[0] === d,
        `\`weight\` has shape ${fmt(w)} but \`by\` has width ${d}`,
        "weight",
      );
      return b.shapes.x!;
    },
  },
  rope: {
    name: "rope",
    doc: "rotary position embedding applied to each head",
    args: [
      x("[heads * head_dim]"),
      { name: "heads", kind: "int", doc: "number of heads in x" },
      { name: "theta", kind: "float", doc: "base frequency", default: 10000 },
      {
        name: "style",
        kind: "enum",
        doc: "pairing: `interleaved` (GGUF/llama.cpp: (0,1),(2,3)…) or `half` (Hugging Face: (0,d/2),…)",
        values: ["interleaved", "half"],
        default: "interleaved",
      },
    ],
    infer: (b) => {
      const w = vec(b, "x");
      const hd = headDim(w, b.attrs.heads as number, "x");
      want(
        hd % 2 === 0,
        `head_dim ${w} / ${b.attrs.heads} = ${hd} is odd, but rope rotates pairs of values`,
        "x",
      );
      return [w];
    },
  },
  attention: {
    name: "attention",
    doc: "causal grouped-query attention with a per-layer KV cache",
    args: [
      { name: "q", kind: "tensor", doc: "[heads * head_dim]" },
      { name: "k", kind: "tensor", doc: "[kv_heads * head_dim]" },
      { name: "v", kind: "tensor", doc: "[kv_heads * head_dim]" },
      { name: "heads", kind: "int", doc: "query heads" },
      { name: "kv_heads", kind: "int", doc: "key/value heads; divides heads" },
      { name: "head_dim", kind: "int", doc: "checked against q's width when given", optional: true },
      { name: "window", kind: "int", doc: "sliding window in tokens; 0 for none", default: 0 },
      {
        name: "scale",
        kind: "float",
        doc: "multiplies q·k before the softmax; 1/sqrt(head_dim) when not given (Granite sets its own)",
        optional: true,
      },
    ],
    infer: (b) => {
      const heads = b.attrs.heads as number;
      const kvHeads = b.attrs.kv_heads as number;
      want(
        Number.isInteger(kvHeads) && kvHeads > 0,
        `kv_heads must be a positive integer, found ${kvHeads}`,
        "kv_heads",
      );
      want(heads % kvHeads === 0, `heads (${heads}) is not divisible by kv_heads (${kvHeads})`, "kv_heads");
      const q = vec(b, "q");
      const hd = headDim(q, heads, "q");
      if (b.attrs.head_dim !== undefined) {
        want(
          b.attrs.head_dim === hd,
          `head_dim (${b.attrs.head_dim}) × heads (${heads}) = ${(b.attrs.head_dim as number) * heads}, but q has width ${q}`,
          "head_dim",
        );
      }
      for (const kv of ["k", "v"]) {
        const w = vec(b, kv);
        want(
          w === kvHeads * hd,
          `\`${kv}\` has width ${w} but kv_heads × head_dim = ${kvHeads} × ${hd} = ${kvHeads * hd}`,
          kv,
        );
      }
      want(
        Number.isInteger(b.attrs.window) && (b.attrs.window as number) >= 0,
        `window must be a non-negative integer, found ${b.attrs.window}`,
        "window",
      );
      if (b.attrs.scale !== undefined)
        want(
          Number.isFinite(b.attrs.scale) && (b.attrs.scale as number) > 0,
          `scale must be a positive number, found ${b.attrs.scale}`,
          "scale",
        );
      return [q];
    },
  },
  moe: {
    name: "moe",
    doc: "mixture of experts: router softmax, top-k, optional renormalization, weighted sum of the chosen experts",
    args: [
      x(),
      { name: "router", kind: "weight", doc: "[experts, hidden]" },
      { name: "top_k", kind: "int", doc: "experts per token" },
      {
        name: "expert",
        kind: "expert",
        doc: "the expert body, e.g. swiglu(w_gate, w_up, w_down) with [experts, …] weights",
      },
      {
        name: "normalize",
        kind: "bool",
        doc: "renormalize the top-k weights to sum to 1 (Mixtral: true)",
        default: true,
      },
    ],
    infer: (b) => {
      const h = vec(b, "x");
      const r = matrix(b, "router", undefined, h, `a router over x of width ${h}`, "experts");
      const experts = r[0]!;
      const k = b.attrs.top_k as number;
      want(Number.isInteger(k) && k >= 1, `top_k must be a positive integer, found ${k}`, "top_k");
      want(k <= experts, `top_k (${k}) is greater than the number of experts (${experts})`, "top_k");
      const e = b.expert!;
      const inner: Record<string, number[]> = { x: [h] };
      for (const [name, s] of Object.entries(e.shapes)) {
        want(
          s.length >= 2 && s[0] === experts,
          `expert weight \`${name}\` has shape ${fmt(s)}; it needs a leading dimension of ${experts} experts`,
          name,
        );
        inner[name] = s.slice(1);
      }
      let out: number[];
      try {
        out = ops[e.op]!.infer({ shapes: inner, attrs: {} });
      } catch (err) {
        if (!(err instanceof ShapeError)) throw err;
        throw new ShapeError(`in the expert body (shapes per expert), ${err.message}`, err.arg);
      }
      want(fmt(out) === fmt([h]), `the expert body gives ${fmt(out)}, but moe needs [${h}]`, "expert");
      return [h];
    },
  },
  swiglu: {
    name: "swiglu",
    doc: "down · (silu(gate · x) ⊙ (up · x)); as a moe expert, written without x",
    args: [
      x(),
      { name: "gate", kind: "weight", doc: "[ffn, hidden]" },
      { name: "up", kind: "weight", doc: "[ffn, hidden]" },
      { name: "down", kind: "weight", doc: "[hidden, ffn]" },
    ],
    expertWeights: ["gate", "up", "down"],
    infer: (b) => {
      const h = vec(b, "x");
      const g = matrix(b, "gate", undefined, h, "a gate over x");
      matrix(b, "up", g[0], h, "an up projection matching gate");
      matrix(b, "down", h, g[0]!, "a down projection back to x's width");
      return [h];
    },
  },
  silu: { name: "silu", doc: "x · sigmoid(x)", args: [x()], infer: (b) => b.shapes.x! },
  softmax: {
    name: "softmax",
    doc: "softmax over the last dimension",
    args: [x()],
    infer: (b) => b.shapes.x!,
  },
  add: {
    name: "add",
    doc: "elementwise a + b (also written `a + b`)",
    args: [
      { name: "a", kind: "tensor", doc: "" },
      { name: "b", kind: "tensor", doc: "same shape as a" },
    ],
    infer: (b) => sameShape(b, "a", "b"),
  },
  mul: {
    name: "mul",
    doc: "elementwise a ⊙ b (also written `a * b`)",
    args: [
      { name: "a", kind: "tensor", doc: "" },
      { name: "b", kind: "tensor", doc: "same shape as a" },
    ],
    infer: (b) => sameShape(b, "a", "b"),
  },
};
