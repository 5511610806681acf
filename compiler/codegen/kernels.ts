// One kernel per distinct (fused op, shape, scheme, epilogue): each node of the scheduled graph
// asks for a kernel by its specialization; equal specializations share one function.
import { readFileSync } from "node:fs";
import Handlebars from "handlebars";
import { KV_Q8_BLOCK, type KvType, kvRowBytes } from "../../runtime/kv-type.ts";
import { getScheme } from "../../runtime/quant/registry.ts";
import type { Node } from "../ir/graph.ts";
import { SpecError } from "../lang/errors.ts";
import { ATTENTION_PAD, ATTENTION_SET, ktStride } from "./attention.ts";
import { WasmKernels } from "./wasm.ts";

// A private environment: our helpers and partials never leak into (or from) another user of handlebars.
const hbs = Handlebars.create();
const dir = new URL("./templates/", import.meta.url);
const load = (name: string) => readFileSync(new URL(`${name}.hbs`, dir), "utf8");
hbs.registerPartial("norm", load("norm"));
hbs.registerPartial("rope", load("rope"));
hbs.registerPartial("dot", load("dot"));
const templates = new Map<string, HandlebarsTemplateDelegate>();
function template(name: string): HandlebarsTemplateDelegate {
  let t = templates.get(name);
  if (!t) templates.set(name, (t = hbs.compile(load(name), { noEscape: true, strict: true })));
  return t;
}

/** The most tokens a batched prefill runs at once (fewer when the arena copies would pass PREFILL_BYTES). */
export const PREFILL_MAX = 64;
/** About the most bytes the prefill's copies of the arena may take. */
export const PREFILL_BYTES = 16 * 2 ** 20;
/** Entries in each of the matrix-matrix kernels' column lists: a token per pick of up to 8 experts. */
const LIST_MAX = 8 * PREFILL_MAX;

/** A number as a TypeScript literal; String() round-trips every double exactly. */
export const num = (v: number) => String(v);

/** A number in a kernel's name: 0.015625 → 0p015625, -2 → m2, 1e-5 → 1em5. */
export const constName = (v: number) =>
  num(v).replace(/[-+.]/g, (c) => (c === "." ? "p" : c === "-" ? "m" : ""));

export interface Kernel {
  name: string;
  source: string;
  /** Module-level scratch arrays and constant tables this kernel uses. */
  statics: string[];
}

/** Bytes per row and blocks per row of a weight whose rows have `n` elements. */
function rowOf(scheme: string, n: number) {
  const s = getScheme(scheme);
  if (n % s.blockSize !== 0) throw new Error(`rows of ${n} are not whole ${scheme} blocks of ${s.blockSize}`);
  const nb = n / s.blockSize;
  return { nb, rowBytes: nb * s.blockBytes, dot: s.cpu.dot };
}

/** Keys per tile of the CPU attention: a tile's scores for a query-head group stay in the first cache level. */
export const ATTEND_TILE = 256;

export class KernelSet {
  /** The KV caches' element type, which the attention and cache-write kernels are specialized for. */
  kvType: KvType = "f32";
  readonly kernels = new Map<string, Kernel>();
  readonly wasm = new WasmKernels();
  /** The weights stored 8 rows interleaved (emit.ts's rows8Weights): their products read that layout. */
  rows8 = new Set<string>();
  /** Scratch buffers the kernels share with the WebAssembly kernels, so they live in the heap: name →
   * element count and element type. Each token of a prefill batch has its copy, unless `shared`: one copy
   * that a call uses for all the batch's tokens (after the tokens' copies, so it does not shrink the batch). */
  readonly scratch = new Map<string, { count: number; type: "f32" | "f64" | "i32"; shared?: boolean }>();

  private heapScratch(
    name: string,
    count: number,
    type: "f32" | "f64" | "i32" = "f32",
    shared = false,
  ): string {
    this.scratch.set(name, { count, type, ...(shared && { shared }) });
    return name;
  }

  private add(
    name: string,
    tpl: string,
    data: Record<string, unknown>,
    statics: (name: string) => string[] = () => [],
  ): string {
    if (!this.kernels.has(name)) {
      this.kernels.set(name, { name, source: template(tpl)({ name, ...data }), statics: statics(name) });
    }
    return name;
  }

  private normData(n: Node, width: number, name: string) {
    if (!n.weights.norm) return {};
    return {
      in: width,
      eps: num(n.attrs.norm_eps as number),
      scratch: this.heapScratch(`S_${name}`, width),
      rms: this.wasm.rows().rms,
    };
  }

  private ropeData(n: Node, width: number, name: string) {
    if (n.attrs.rope_heads === undefined) return {};
    const heads = n.attrs.rope_heads as number;
    const headDim = width / heads;
    return {
      heads,
      headDim,
      half: headDim / 2,
      interleaved: n.attrs.rope_style !== "half",
      style: n.attrs.rope_style,
      freq: `FREQ_${name}`,
      // A token's cosines then sines (f64, in its copy of the arena) for the WebAssembly rotation; shared by
      // every kernel with heads of this size (each fills it right before it rotates).
      cs: this.heapScratch(`CS_${headDim}`, headDim, "f64"),
      ropeK: this.wasm.rows().rope,
      theta: n.attrs.rope_theta,
    };
  }

  private ropeStatics(n: Node, width: number, prefix: string) {
    if (n.attrs.rope_heads === undefined) return [];
    const hd = width / (n.attrs.rope_heads as number);
    // Same expression as the reference executor, so the angles agree to the last bit.
    return [
      `const FREQ_${prefix} = Float64Array.from({ length: ${hd / 2} }, (_, j) => ${num(n.attrs.rope_theta as number)} ** ((-2 * j) / ${hd}));`,
    ];
  }

  /** Whether the product of `n`'s weight `role` in `scheme` reads it 8 rows interleaved. */
  private x8(n: Node, role: string, scheme: string): boolean {
    return this.rows8.has(n.weights[role]!) && this.wasm.interleaved(scheme);
  }

  /** A scheme as a kernel name shows it: `x8` after it where the weight is interleaved. */
  private label(n: Node, role: string, scheme: string): string {
    return this.x8(n, role, scheme) ? `${scheme}x8` : scheme;
  }

  linear(n: Node, inWidth: number): string {
    const scheme = n.attrs.scheme as string;
    const outWidth = n.shape[0]!;
    const r = rowOf(scheme, inWidth);
    const postHeads = n.weights.post_norm ? ((n.attrs.post_norm_heads as number | undefined) ?? 1) : 0;
    const flags = [
      n.weights.norm ? "n" : "",
      n.weights.bias ? "b" : "",
      postHeads ? `qk${postHeads}` : "",
      n.attrs.rope_heads !== undefined ? "r" : "",
      n.attrs.residual ? "res" : "",
    ].filter(Boolean);
    const name = `linear_${this.label(n, "w", scheme)}_${outWidth}x${inWidth}${flags.length ? `_${flags.join("_")}` : ""}`;
    const rope = this.ropeData(n, outWidth, name);
    return this.add(
      name,
      "linear",
      {
        doc: `y = W·x${n.weights.norm ? " over rms_norm(x)" : ""}${n.attrs.residual ? " + r" : ""}${n.weights.bias ? " + b" : ""}${postHeads ? `, then rms_norm over ${postHeads} head(s)` : ""}${rope.heads ? ", then RoPE" : ""}: W is [${outWidth}, ${inWidth}] ${scheme}`,
        norm: !!n.weights.norm,
        bias: !!n.weights.bias,
        post: postHeads > 0,
        postD: postHeads ? outWidth / postHeads : 0,
        postEps: postHeads ? num(n.attrs.post_norm_eps as number) : "",
        rms: this.wasm.rows().rms,
        residual: !!n.attrs.residual,
        rope: rope.heads !== undefined,
        out: outWidth,
        nb: r.nb,
        row: `o * ${r.rowBytes}`,
        result: `y[yo + o] = acc${n.attrs.residual ? " + r[ro + o]" : ""};`,
        dot: r.dot,
        mv: this.wasm.matvec(scheme, inWidth, this.x8(n, "w", scheme)),
        ...this.normData(n, inWidth, name),
        ...rope,
      },
      (k) => this.ropeStatics(n, outWidth, k),
    );
  }

  gateUp(n: Node, inWidth: number): string {
    const g = rowOf(n.attrs.gate_scheme as string, inWidth);
    const u = rowOf(n.attrs.up_scheme as string, inWidth);
    const name = `gate_up_${this.label(n, "gate", n.attrs.gate_scheme as string)}_${this.label(n, "up", n.attrs.up_scheme as string)}_${n.shape[0]}x${inWidth}${n.weights.norm ? "_n" : ""}`;
    return this.add(name, "gate_up", {
      doc: `y = silu(Wg·x) ⊙ (Wu·x): [${n.shape[0]}, ${inWidth}] ${n.attrs.gate_scheme}/${n.attrs.up_scheme}`,
      norm: !!n.weights.norm,
      out: n.shape[0],
      gateNb: g.nb,
      gateRow: `o * ${g.rowBytes}`,
      gateDot: g.dot,
      upNb: u.nb,
      upRow: `o * ${u.rowBytes}`,
      upDot: u.dot,
      swiglu: this.wasm.rows().swiglu,
      ...this.matvecPair(
        n,
        n.attrs.gate_scheme as string,
        n.attrs.up_scheme as string,
        inWidth,
        n.shape[0]!,
        name,
      ),
      ...this.normData(n, inWidth, name),
    });
  }

  /** WebAssembly kernels for a gate and an up projection, with heap scratch for their outputs; both or neither. */
  private matvecPair(n: Node, gate: string, up: string, inWidth: number, outWidth: number, name: string) {
    const mvGate = this.wasm.matvec(gate, inWidth, this.x8(n, "gate", gate));
    const mvUp = this.wasm.matvec(up, inWidth, this.x8(n, "up", up));
    if (!mvGate || !mvUp) return {};
    return {
      mvGate,
      mvUp,
      g: this.heapScratch(`G_${name}`, outWidth),
      u: this.heapScratch(`U_${name}`, outWidth),
    };
  }

  // Batched prefill: the same ops for up to PREFILL_MAX tokens at once, each token's values at its own copy
  // of the arena (STRIDE floats apart). A kernel has a batched twin only where its matrix products have a
  // matrix-matrix WebAssembly kernel; otherwise the prefill calls the one-token kernel per token.

  /** Column address lists for the matrix-matrix kernels: activations, then outputs. */
  private lists(): { lists: string; maxb: number; listBytes: number } {
    return { lists: this.heapScratch("LISTS", 2 * LIST_MAX, "i32"), maxb: LIST_MAX, listBytes: 4 * LIST_MAX };
  }

  linearBatch(n: Node, inWidth: number): string | undefined {
    const scheme = n.attrs.scheme as string;
    const q = this.wasm.matmulQ8(scheme, inWidth, this.x8(n, "w", scheme));
    const mm = q?.mm ?? this.wasm.matmul(scheme, inWidth);
    if (!mm) return undefined;
    const step = this.linear(n, inWidth);
    const name = `${step}_batch`;
    const rope = this.ropeData(n, n.shape[0]!, step);
    return this.add(name, "linear_batch", {
      doc: `${step}, batched`,
      norm: !!n.weights.norm,
      residual: !!n.attrs.residual,
      rope: rope.heads !== undefined,
      out: n.shape[0],
      mm,
      // One quantized copy of the input per quantizer (q8_0 and q8_K blocks differ in size).
      ...(q ? { qx: q.qx, q: this.heapScratch(`QX_${q.qx}`, q.qBytes / 4) } : {}),
      ...this.lists(),
      ...this.normData(n, inWidth, step),
      ...rope,
    });
  }

  gateUpBatch(n: Node, inWidth: number): string | undefined {
    const gate = n.attrs.gate_scheme as string;
    const up = n.attrs.up_scheme as string;
    // The integer path where both schemes have one over the same activation blocks: one quantized input.
    const qGate = this.wasm.matmulQ8(gate, inWidth, this.x8(n, "gate", gate));
    const qUp = this.wasm.matmulQ8(up, inWidth, this.x8(n, "up", up));
    const qIn = qGate && qUp && qGate.qx === qUp.qx ? qGate : undefined;
    const mmGate = qIn ? qGate!.mm : this.wasm.matmul(gate, inWidth);
    const mmUp = qIn ? qUp!.mm : this.wasm.matmul(up, inWidth);
    if (!mmGate || !mmUp) return undefined;
    const step = this.gateUp(n, inWidth);
    const pair = this.matvecPair(n, gate, up, inWidth, n.shape[0]!, step);
    return this.add(`${step}_batch`, "gate_up_batch", {
      doc: `y = silu(Wg·x) ⊙ (Wu·x): [${n.shape[0]}, ${inWidth}]`,
      norm: !!n.weights.norm,
      out: n.shape[0],
      mmGate,
      mmUp,
      g: pair.g,
      u: pair.u,
      swiglu: this.wasm.rows().swiglu,
      ...(qIn ? { qx: qIn.qx, q: this.heapScratch(`QX_${qIn.qx}`, qIn.qBytes / 4) } : {}),
      ...this.lists(),
      ...this.normData(n, inWidth, step),
    });
  }

  moeFfnBatch(n: Node, hidden: number, ffn: number, k: number, experts: number): string | undefined {
    const sch = (role: string) => n.attrs[`${role}_scheme`] as string;
    // The integer path where the schemes have one: gate and up share the token's quantized input.
    const qGate = this.wasm.matmulQ8(sch("gate"), hidden, this.x8(n, "gate", sch("gate")));
    const qUp = this.wasm.matmulQ8(sch("up"), hidden, this.x8(n, "up", sch("up")));
    const qDown = this.wasm.matmulQ8(sch("down"), ffn, this.x8(n, "down", sch("down")));
    // (Only when both read the same blocks: one quantized input serves both.)
    const qIn = qGate && qUp && qGate.qx === qUp.qx ? qGate : undefined;
    const mmGate = qIn ? qGate!.mm : this.wasm.matmul(sch("gate"), hidden);
    const mmUp = qIn ? qUp!.mm : this.wasm.matmul(sch("up"), hidden);
    const mmDown = qDown?.mm ?? this.wasm.matmul(sch("down"), ffn);
    if (!mmGate || !mmUp || !mmDown || k * PREFILL_MAX > LIST_MAX) return undefined;
    const step = this.moeFfn(n, hidden, ffn, k);
    const pair = this.matvecPair(n, sch("gate"), sch("up"), hidden, ffn, step);
    const name = `${step}_batch`;
    return this.add(
      name,
      "moe_ffn_batch",
      {
        doc: `Σ over the ${k} chosen experts: weight · Wd·(silu(Wg·x) ⊙ (Wu·x)); hidden ${hidden}, ffn ${ffn}`,
        residual: !!n.attrs.residual,
        hidden,
        ffn,
        k,
        experts,
        mmGate,
        mmUp,
        mmDown,
        g: pair.g,
        u: pair.u,
        // Each token's hidden vectors and down projections, one per pick.
        h: this.heapScratch(`HB_${step}`, k * ffn),
        d: this.heapScratch(`DB_${step}`, k * hidden),
        ...(qIn ? { qx: qIn.qx, qh: this.heapScratch(`QX_${qIn.qx}`, qIn.qBytes / 4) } : {}),
        ...(qDown
          ? {
              qxDown: qDown.qx,
              qd: this.heapScratch(`QD_${step}`, (k * qDown.qBytes) / 4),
              qdWidth: qDown.qBytes / 4,
            }
          : {}),
        swiglu: this.wasm.rows().swiglu,
        axpy: this.wasm.rows().axpy,
        counts: `CNT_${name}`,
        pairs: `AT_${name}`,
        ...this.lists(),
      },
      (kn) => [
        `const CNT_${kn} = new Int32Array(${experts});`,
        `const AT_${kn} = new Int32Array(${k * PREFILL_MAX});`,
      ],
    );
  }

  route(n: Node, inWidth: number): string {
    const scheme = n.attrs.scheme as string;
    const r = rowOf(scheme, inWidth);
    const experts = n.attrs.experts as number;
    const k = n.attrs.k as number;
    const name = `route_${scheme}_${experts}x${inWidth}_top${k}${n.attrs.normalize ? "_norm" : ""}${n.weights.norm ? "_n" : ""}`;
    return this.add(name, "route", {
      doc: `router: softmax(Wr·x), top-${k}${n.attrs.normalize ? ", renormalized" : ""}; Wr is [${experts}, ${inWidth}] ${scheme}`,
      norm: !!n.weights.norm,
      normalize: !!n.attrs.normalize,
      experts,
      k,
      nb: r.nb,
      row: `e * ${r.rowBytes}`,
      dot: r.dot,
      topk: this.wasm.rows().topk,
      router: scheme === "f32" ? this.wasm.rows().router : undefined,
      // The router's logits, then its probabilities, in the heap for the WebAssembly top-k.
      probs: this.heapScratch(`P_${name}`, experts),
      ...this.normData(n, inWidth, name),
    });
  }

  moeFfn(n: Node, hidden: number, ffn: number, k: number): string {
    const sch = (role: string) => n.attrs[`${role}_scheme`] as string;
    const g = rowOf(sch("gate"), hidden);
    const u = rowOf(sch("up"), hidden);
    const d = rowOf(sch("down"), ffn);
    const label = (role: string) => this.label(n, role, sch(role));
    const name = `moe_ffn_${label("gate")}_${label("up")}_${label("down")}_${hidden}x${ffn}_top${k}${n.attrs.residual ? "_res" : ""}`;
    return this.add(name, "moe_ffn", {
      doc: `Σ over the ${k} chosen experts: weight · Wd·(silu(Wg·x) ⊙ (Wu·x)); hidden ${hidden}, ffn ${ffn}`,
      residual: !!n.attrs.residual,
      hidden,
      ffn,
      k,
      scratch: this.heapScratch(`H_${name}`, ffn),
      swiglu: this.wasm.rows().swiglu,
      ...this.matvecPair(n, sch("gate"), sch("up"), hidden, ffn, name),
      mvDown: this.wasm.matvec(sch("down"), ffn, this.x8(n, "down", sch("down"))),
      // Each chosen expert's matrices start at the heap addresses the runtime gives (wg, wu, wd): a slice
      // of the resident stacked tensor, or an expert cache slot.
      gateNb: g.nb,
      gateRow: `wg + f * ${g.rowBytes}`,
      gateDot: g.dot,
      upNb: u.nb,
      upRow: `wu + f * ${u.rowBytes}`,
      upDot: u.dot,
      downNb: d.nb,
      downRow: `wd + i * ${d.rowBytes}`,
      downDot: d.dot,
    });
  }

  attend(n: Node): string {
    const heads = n.attrs.heads as number;
    const kvHeads = n.attrs.kv_heads as number;
    const headDim = n.shape[0]! / heads;
    const window = n.attrs.window as number;
    const group = heads / kvHeads;
    const given = n.attrs.scale as number | undefined;
    const scaleName = given === undefined ? "" : `_s${constName(given)}`;
    const type = this.kvType;
    const name = `attend_${heads}x${headDim}_kv${kvHeads}${window ? `_w${window}` : ""}${scaleName}_${type}`;
    if (headDim % 4 !== 0)
      throw new SpecError(
        n.loc,
        `the cpu backend's attention needs heads of a multiple of 4 values, not ${headDim}`,
      );
    const rowBytes = kvRowBytes(kvHeads * headDim, type);
    const sets = Math.ceil(group / ATTENTION_SET);
    const wasm = this.wasm.attention(type, headDim, rowBytes, kvHeads, group, ATTEND_TILE, window);
    const scale = new Float32Array([given ?? 1 / Math.sqrt(headDim)]);
    return this.add(name, "attend", {
      doc: `causal attention: ${heads} heads of ${headDim}, ${kvHeads} KV heads${window ? `, window ${window}` : ""}, a ${type} cache`,
      heads,
      kvHeads,
      headDim,
      group,
      groupWidth: group * headDim,
      rowBytes,
      headRowBytes: rowBytes / kvHeads,
      tile: ATTEND_TILE,
      // The f32 scale's bits, for the parameter block.
      scaleBits: new Int32Array(scale.buffer)[0],
      window: window || undefined,
      // Per KV head (each thread takes whole KV heads): the scores (then the softmax weights) of a tile, a
      // vector per key for each set of ATTENTION_SET query heads of the group; each set's corrections; the
      // group's queries, scaled; and per token of a batch (in its copy of the arena), each set's running max
      // (f32) and sums (f64). And the parameter block of the call. All but the running max and sums are one
      // copy for the batch (a call works token by token).
      scores: this.heapScratch(
        `SC_${name}`,
        kvHeads * (ATTEND_TILE + ATTENTION_PAD) * ATTENTION_SET * sets,
        "f32",
        true,
      ),
      // A float cache's keys of a tile, transposed (attention.ts ktStride); a q8_0 cache's scores read it as is.
      keysT:
        type === "q8_0"
          ? undefined
          : this.heapScratch(`KT_${name}`, (kvHeads * headDim * ktStride(ATTEND_TILE)) / 4, "f32", true),
      // A narrow cache's values of a tile, widened to f32 for a prefill batch.
      valuesF32:
        type === "f32"
          ? undefined
          : this.heapScratch(`VW_${name}`, kvHeads * ATTEND_TILE * headDim, "f32", true),
      corr: this.heapScratch(`CR_${name}`, kvHeads * ATTENTION_SET * sets, "f32", true),
      ml: this.heapScratch(`ML_${name}`, kvHeads * 6 * sets, "f64"),
      qs: this.heapScratch(`QS_${name}`, kvHeads * group * headDim, "f32", true),
      params: this.heapScratch(`AP_${name}`, 16, "i32", true),
      ...wasm,
    });
  }

  embed(n: Node, vocab: number, scheme: string): string {
    const hidden = n.shape[0]!;
    const r = rowOf(scheme, hidden);
    const name = `embed_${scheme}_${vocab}x${hidden}`;
    return this.add(name, "embed", {
      doc: `token embedding: one row of a [${vocab}, ${hidden}] ${scheme} table`,
      vocab,
      hidden,
      rowBytes: r.rowBytes,
      schemeLiteral: JSON.stringify(scheme),
    });
  }

  rmsNorm(n: Node): string {
    const heads = n.attrs.heads as number | undefined;
    const name = `rms_norm_${n.shape[0]}${heads ? `_h${heads}` : ""}`;
    return this.add(name, "rms_norm", {
      doc: `rms_norm over ${n.shape[0]}${heads ? `, each of ${heads} heads apart` : ""}`,
      n: n.shape[0],
      heads,
      d: n.shape[0]! / (heads ?? 1),
      eps: num(n.attrs.eps as number),
      rms: this.wasm.rows().rms,
    });
  }

  elementwise(n: Node): string {
    // [expression of v = a[i], reads b (another activation), reads g (a weight vector)]
    const exprs: Record<string, [string, boolean, boolean]> = {
      add: ["v + b[bo + i]", true, false],
      mul: ["v * b[bo + i]", true, false],
      silu: ["v / (1 + Math.exp(-v))", false, false],
      bias: ["v + g[i]", false, true],
      scale: [`v * ${num(n.attrs.by as number)}`, false, false],
    };
    const [expr, binary, vector] = exprs[n.op]!;
    const name = `${n.op}_${n.shape[0]}${n.op === "scale" ? `_${constName(n.attrs.by as number)}` : ""}`;
    return this.add(name, "elementwise", {
      doc: `${n.op} over ${n.shape[0]}`,
      n: n.shape[0],
      expr,
      binary,
      vector,
    });
  }

  sigmoidGate(n: Node, width: number): string {
    const residual = !!n.attrs.residual;
    return this.add(`sigmoid_gate_${n.shape[0]}x${width}${residual ? "_res" : ""}`, "sigmoid_gate", {
      doc: `${residual ? "r + " : ""}x · sigmoid(g · h): x of ${n.shape[0]}, h and g of ${width}`,
      residual,
      n: n.shape[0],
      d: width,
    });
  }

  softmax(n: Node): string {
    return this.add(`softmax_${n.shape[0]}`, "softmax", { doc: `softmax over ${n.shape[0]}`, n: n.shape[0] });
  }

  rope(n: Node): string {
    const name = `rope_${n.shape[0]}_h${n.attrs.heads}_${n.attrs.style}`;
    const attrs = { rope_heads: n.attrs.heads!, rope_theta: n.attrs.theta!, rope_style: n.attrs.style! };
    const m = { ...n, attrs };
    return this.add(
      name,
      "rope_op",
      { doc: `RoPE over ${n.shape[0]}`, n: n.shape[0], ...this.ropeData(m, n.shape[0]!, name) },
      (k) => this.ropeStatics(m, n.shape[0]!, k),
    );
  }

  /** The kernel that stores `width` values (one token's K or V) into a cache row of the model's KV type. */
  kvWrite(width: number): string {
    const type = this.kvType;
    if (type === "f32")
      return this.add(`kv_write_${width}`, "kv_write", {
        doc: `append ${width} values to a KV cache`,
        n: width,
      });
    // The f32 → f16 conversion every narrower store shares, defined once.
    this.add("to_half", "to_half", {});
    return this.add(`kv_write_${width}_${type}`, "kv_write_narrow", {
      doc: `append ${width} values to a ${type} KV cache`,
      n: width,
      rowBytes: kvRowBytes(width, type),
      f16: type === "f16",
      q8: type === "q8_0",
      blocks: width / KV_Q8_BLOCK,
    });
  }

  /** A row of `width` floats per token in the arena's scratch, where a product whose result goes to a
   * narrower cache puts it first (the cache write converts from there). */
  kvStaging(width: number): string {
    return this.heapScratch(`KX_${width}`, width);
  }
}
