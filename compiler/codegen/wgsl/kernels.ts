// The webgpu backend's kernels: WGSL rendered from the handlebars templates beside this file, one kernel per
// distinct specialization (op, shape, scheme, epilogue), with each quantization scheme's `wgsl` piece
// inlined once per weight it reads. Weights stay packed as u32 words; the pieces read bytes by shifting.
// The reductions and the KV caches' element type live in a prelude the runtime puts before each kernel, in
// one variant per set of optional adapter features (subgroups, f16), so one compiled program serves any adapter.
import { readFileSync } from "node:fs";
import Handlebars from "handlebars";
import { getScheme } from "../../../runtime/quant/registry.ts";
import type { QuantScheme } from "../../../runtime/quant/scheme.ts";
import { registerGpuKernels } from "../gpu/backends.ts";
import type { GpuKernelSet, KernelUse, LinearKind, MatmulKind } from "../gpu/program.ts";
import { constName } from "../kernels.ts";

const hbs = Handlebars.create();
const dir = new URL("./templates/", import.meta.url);
const load = (name: string) => readFileSync(new URL(`${name}.wgsl.hbs`, dir), "utf8");
for (const p of ["head", "weight", "norm", "xq"]) hbs.registerPartial(p, load(p));
const templates = new Map<string, HandlebarsTemplateDelegate>();
function template(name: string): HandlebarsTemplateDelegate {
  let t = templates.get(name);
  if (!t) templates.set(name, (t = hbs.compile(load(name), { noEscape: true, strict: true })));
  return t;
}

/** A WGSL f32 literal for a double (always with a point or an exponent). */
export function f32(v: number): string {
  const s = String(v);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/** A scheme that has no WGSL piece cannot run on webgpu: says which and where to add it. */
export class NoWgslError extends Error {
  readonly exitCode = 2;
  constructor(readonly scheme: string) {
    super(
      `quantization scheme \`${scheme}\` has no WGSL piece, so the webgpu backend cannot run it: give the scheme a \`wgsl\` field (see runtime/quant/scheme.ts) or run with --backend cpu`,
    );
  }
}

function schemeOf(name: string): QuantScheme & { wgsl: NonNullable<QuantScheme["wgsl"]> } {
  const s = getScheme(name);
  if (!s.wgsl) throw new NoWgslError(name);
  return s as QuantScheme & { wgsl: NonNullable<QuantScheme["wgsl"]> };
}

/** Renames a piece's `$name`s for the weight `tag` (`$x`, `$xq`, `$xq4`, `$xd`, `$xs` read activations). */
function specialize(text: string, tag: string): string {
  return text
    .replace(/\$x\(/g, "X(")
    .replace(/\$xq\(/g, "XQ(")
    .replace(/\$xq4\(/g, "XQ4(")
    .replace(/\$xd\(/g, "XD(")
    .replace(/\$xs\(/g, "XS(")
    .replace(/\$([A-Za-z_][A-Za-z0-9_]*)/g, `${tag}_$1`);
}

/** The template data of one weight binding: accessors, the scheme's piece, the row geometry. */
function weight(tag: string, binding: number, scheme: string, rowLength: number) {
  const s = schemeOf(scheme);
  if (rowLength % s.blockSize !== 0) {
    throw new Error(`rows of ${rowLength} are not whole ${scheme} blocks of ${s.blockSize}`);
  }
  const nb = rowLength / s.blockSize;
  return {
    tag,
    binding,
    scheme,
    helpers: specialize(s.wgsl.helpers ?? "", tag),
    dot: specialize(s.wgsl.dot, tag)
      .split("\n")
      .map((l) => `  ${l}`)
      .join("\n"),
    nb,
    blockBytes: s.blockBytes,
    blockSize: s.blockSize,
    rowBytes: nb * s.blockBytes,
    q8: !!s.wgsl.q8,
  };
}

/** Invocations per row: enough for the row's blocks, a power of two up to the workgroup's 64. */
function perRow(blocks: number): number {
  let t = 1;
  while (t < 64 && t < blocks) t *= 2;
  return t;
}

export class WgslKernels implements GpuKernelSet {
  readonly backend = "webgpu";
  readonly sources = new Map<string, string>();
  /** Keyed by the features each needs: `subgroups` for the shuffles, `f16` for KV caches in f16. */
  readonly preludes = {
    "": template("prelude")({ subgroups: false, f16: false }),
    subgroups: template("prelude")({ subgroups: true, f16: false }),
    f16: template("prelude")({ subgroups: false, f16: true }),
    "subgroups,f16": template("prelude")({ subgroups: true, f16: true }),
  };

  private add(name: string, tpl: string, data: Record<string, unknown>, perGroup: number): KernelUse {
    if (!this.sources.has(name)) this.sources.set(name, template(tpl)({ name, ...data }));
    return { name, perGroup };
  }

  embed(scheme: string, vocab: number, hidden: number): KernelUse {
    const w = weight("W", 2, scheme, hidden);
    return this.add(
      `embed_${scheme}_${vocab}x${hidden}`,
      "embed",
      { doc: `token embedding: one row of a [${vocab}, ${hidden}] ${scheme} table`, w, hidden, ...w },
      64,
    );
  }

  readsQ8(scheme: string): boolean {
    return !!schemeOf(scheme).wgsl.q8;
  }

  quantize(o: { in: number; norm?: number }): KernelUse {
    return this.add(
      `quantize_${o.in}${o.norm !== undefined ? "_n" : ""}`,
      "quantize",
      {
        doc: `${o.norm !== undefined ? "rms_norm(x)" : "x"} of ${o.in} quantized to q8_0 blocks, for the kernels after it`,
        norm: o.norm !== undefined,
        normBinding: 2,
        qBinding: o.norm !== undefined ? 3 : 2,
        in: o.in,
        eps: f32(o.norm ?? 0),
        blocks: o.in / 32,
      },
      64,
    );
  }

  linear(o: LinearKind): KernelUse {
    const w = weight("W", 2, o.scheme, o.in);
    const tpr = perRow(w.nb);
    const flags = [
      o.norm !== undefined ? "n" : "",
      o.residual ? "res" : "",
      o.kv ? "kv" : "",
      o.scaled ? "acc" : "",
    ];
    const name = `linear_${o.scheme}_${o.out}x${o.in}${flags
      .filter(Boolean)
      .map((f) => `_${f}`)
      .join("")}`;
    const next = 3 + (o.norm !== undefined ? 1 : 0);
    return this.add(
      name,
      "linear",
      {
        doc: `y ${o.scaled ? "+= s ·" : "="} W·x${o.norm !== undefined ? " over rms_norm(x)" : ""}${o.residual ? " + r" : ""}${o.kv ? " into a KV cache row" : ""}: W is [${o.out}, ${o.in}] ${o.scheme}`,
        w,
        ...w,
        norm: o.norm !== undefined,
        normBinding: 3,
        in: o.in,
        eps: f32(o.norm ?? 0),
        residual: !!o.residual,
        scaled: !!o.scaled,
        kv: !!o.kv,
        kvBinding: next,
        qBinding: next + (o.kv ? 1 : 0),
        out: o.out,
        tpr,
        rpg: 64 / tpr,
      },
      64 / tpr,
    );
  }

  gateUp(o: { gate: string; up: string; out: number; in: number; norm?: number }): KernelUse {
    const g = weight("WG", 2, o.gate, o.in);
    const u = weight("WU", 3, o.up, o.in);
    const tpr = perRow(Math.max(g.nb, u.nb));
    const name = `gate_up_${o.gate}_${o.up}_${o.out}x${o.in}${o.norm !== undefined ? "_n" : ""}`;
    return this.add(
      name,
      "gate_up",
      {
        doc: `y = silu(Wg·x) ⊙ (Wu·x): [${o.out}, ${o.in}] ${o.gate}/${o.up}`,
        g,
        u,
        q8: g.q8 || u.q8,
        qBinding: o.norm !== undefined ? 5 : 4,
        norm: o.norm !== undefined,
        normBinding: 4,
        in: o.in,
        eps: f32(o.norm ?? 0),
        tpr,
        rpg: 64 / tpr,
      },
      64 / tpr,
    );
  }

  route(o: {
    scheme: string;
    experts: number;
    in: number;
    k: number;
    normalize: boolean;
    norm?: number;
  }): KernelUse {
    const w = weight("W", 2, o.scheme, o.in);
    const name = `route_${o.scheme}_${o.experts}x${o.in}_top${o.k}${o.normalize ? "_norm" : ""}${o.norm !== undefined ? "_n" : ""}`;
    return this.add(
      name,
      "route",
      {
        doc: `router: softmax(Wr·x), top-${o.k}${o.normalize ? ", renormalized" : ""}; Wr is [${o.experts}, ${o.in}] ${o.scheme}`,
        w,
        ...w,
        experts: o.experts,
        k: o.k,
        normalize: o.normalize,
        qBinding: o.norm !== undefined ? 4 : 3,
        norm: o.norm !== undefined,
        normBinding: 3,
        in: o.in,
        eps: f32(o.norm ?? 0),
      },
      1,
    );
  }

  attend(o: {
    heads: number;
    kvHeads: number;
    headDim: number;
    window: number;
    maxContext: number;
    scale?: number;
  }): KernelUse {
    const name = `attend_${o.heads}x${o.headDim}_kv${o.kvHeads}${o.window ? `_w${o.window}` : ""}_ctx${o.maxContext}${o.scale !== undefined ? `_s${constName(o.scale)}` : ""}`;
    return this.add(
      name,
      "attend",
      {
        doc: `causal attention: ${o.heads} heads of ${o.headDim}, ${o.kvHeads} KV heads${o.window ? `, window ${o.window}` : ""}`,
        headDim: o.headDim,
        group: o.heads / o.kvHeads,
        kvWidth: o.kvHeads * o.headDim,
        scale: f32(o.scale ?? 1 / Math.sqrt(o.headDim)),
        window: o.window || undefined,
        maxContext: o.maxContext,
      },
      1,
    );
  }

  rope(o: { width: number; headDim: number; interleaved: boolean; kv: boolean }): KernelUse {
    const name = `rope_${o.width}_d${o.headDim}_${o.interleaved ? "interleaved" : "half"}${o.kv ? "_kv" : ""}`;
    return this.add(
      name,
      "rope",
      {
        doc: `RoPE over ${o.width} values, heads of ${o.headDim}${o.kv ? ", a KV cache row in place" : ""}`,
        style: o.interleaved ? "interleaved" : "half",
        interleaved: o.interleaved,
        kv: o.kv,
        width: o.width,
        headDim: o.headDim,
        half: o.headDim / 2,
        pairs: o.width / 2,
      },
      64,
    );
  }

  rmsNorm(o: { n: number; eps: number; heads?: number }): KernelUse {
    const d = o.n / (o.heads ?? 1);
    return this.add(
      `rms_norm_${o.n}${o.heads ? `_h${o.heads}` : ""}`,
      "rms_norm",
      {
        doc: `rms_norm over ${o.n}${o.heads ? `, each of ${o.heads} heads apart` : ""}`,
        n: d,
        heads: o.heads,
        eps: f32(o.eps),
      },
      1,
    );
  }

  elementwise(op: "add" | "mul" | "silu" | "copy" | "zero" | "scale", n: number, by = 1): KernelUse {
    const exprs = {
      add: "A[ao + i] + A[bo + i]",
      mul: "A[ao + i] * A[bo + i]",
      silu: "A[ao + i] / (1.0 + exp(-A[ao + i]))",
      copy: "A[ao + i]",
      zero: "0.0",
      scale: `A[ao + i] * ${f32(by)}`,
    };
    return this.add(
      `${op}_${n}${op === "scale" ? `_${constName(by)}` : ""}`,
      "elementwise",
      { doc: `${op} over ${n}`, n, expr: exprs[op], a: op !== "zero", b: op === "add" || op === "mul" },
      64,
    );
  }

  bias(n: number): KernelUse {
    return this.add(`bias_${n}`, "bias", { doc: `y = x + b over ${n}`, n }, 64);
  }

  sigmoidGate(n: number, d: number, residual = false): KernelUse {
    return this.add(
      `sigmoid_gate_${n}x${d}${residual ? "_res" : ""}`,
      "sigmoid_gate",
      { doc: `y = ${residual ? "r + " : ""}x · sigmoid(g · h): x of ${n}, h of ${d}`, n, d, residual },
      1,
    );
  }

  softmax(n: number): KernelUse {
    return this.add(`softmax_${n}`, "softmax", { doc: `softmax over ${n}`, n }, 1);
  }

  kvWrite(n: number): KernelUse {
    return this.add(`kv_write_${n}`, "kv_write", { doc: `append ${n} values to a KV cache`, n }, 64);
  }

  // The batched prefill (compiler/codegen/gpu/batch.ts): B tokens per dispatch, each with its own copy of
  // the arena (`bstride` floats apart) and of the quantized activations (`qstride` words apart).

  /** Tokens per batch. */
  readonly batchTokens = BATCH_TOKENS;

  /** A kernel's batched twin: the same source with token t = F.first + workgroup_id.z, its arena (and
   * q8) offsets moved to token t's copy, its token id and position read from that copy at `tko`. */
  batched(use: KernelUse): KernelUse {
    const name = `b_${use.name}`;
    if (!this.sources.has(name)) this.sources.set(name, batchTwin(this.sources.get(use.name)!));
    return { name, perGroup: use.perGroup };
  }

  /** y = W·x for every token of the batch (or, with `list`, the tokens an expert's list names), the weight
   * staged in workgroup memory a tile of rows at a time; `weights` two: gate and up, y = silu(g) ⊙ u. */
  matmul(o: MatmulKind): KernelUse {
    const rt = MM_ROWS;
    const lanes = 64 / rt;
    const tags = o.weights.length === 2 ? ["WG", "WU"] : ["W"];
    const ws = o.weights.map((scheme, i) => weight(tags[i]!, 2 + i, scheme, o.in));
    // A chunk of inputs covers whole blocks of every weight, each weight's tile about 4 KiB.
    const maxBlock = Math.max(...ws.map((w) => w.blockSize));
    const perChunkBytes = Math.max(...ws.map((w) => (maxBlock / w.blockSize) * w.blockBytes * rt));
    const chunk = Math.min(o.in, maxBlock * Math.max(1, Math.floor(TILE_BYTES / perChunkBytes)));
    const q8 = ws.some((w) => w.q8);
    let next = 2 + ws.length;
    const qBinding = q8 ? next++ : 0;
    const listBinding = o.list ? next++ : 0;
    const tiles = ws.map((w) => {
      const ww = Math.ceil(((chunk / w.blockSize) * w.blockBytes) / 4) + 1;
      const text = hbs
        .compile(load("weight"), { noEscape: true, strict: true })(w)
        .replace(
          new RegExp(`^(@group\\(0\\) @binding\\(\\d+\\) var<storage, read> )${w.tag}: array<u32>;$`, "m"),
          `$1${w.tag}_src: array<u32>;
var<workgroup> ${w.tag}: array<u32, ${rt * ww}>;`,
        );
      if (!text.includes(`${w.tag}_src`)) throw new Error("the weight partial's binding was not found");
      return { ...w, ww, tileWords: rt * ww, text };
    });
    const flags = [o.scaled ? "acc" : "", o.residual ? "res" : "", o.list ? "list" : ""];
    const name = `mm_${o.weights.join("_")}_${o.out}x${o.in}${flags
      .filter(Boolean)
      .map((f) => `_${f}`)
      .join("")}_b${BATCH_TOKENS}`;
    return this.add(
      name,
      "matmul",
      {
        doc: `${o.weights.length === 2 ? "y = silu(Wg·x) ⊙ (Wu·x)" : `y ${o.scaled ? "+= s ·" : "="} W·x`}${o.residual ? " + r" : ""} over a batch of tokens: [${o.out}, ${o.in}] ${o.weights.join("/")}`,
        ws: tiles,
        gateUp: o.weights.length === 2,
        q8,
        scaled: !!o.scaled,
        residual: !!o.residual,
        list: !!o.list,
        qBinding,
        listBinding,
        in: o.in,
        out: o.out,
        chunk,
        rt,
        lanes,
        tpl: BATCH_TOKENS / lanes,
      },
      rt,
    );
  }

  /** The batch's top-k ids gathered into one run for the readback. */
  gatherIds(k: number): KernelUse {
    return this.add(
      `batch_gather_top${k}`,
      "batch_gather",
      { doc: `gather the batch's top-${k} ids`, k },
      64,
    );
  }

  /** n values of the batch's last token copied into the first arena copy. */
  lastToken(n: number): KernelUse {
    return this.add(`batch_last_${n}`, "batch_last", { doc: `the last token's ${n} values`, n }, 64);
  }
}

registerGpuKernels("webgpu", () => new WgslKernels());

/** Tokens per batch of the prefill, rows per matmul workgroup, bytes of a weight's tile in workgroup memory. */
const BATCH_TOKENS = 32;
const MM_ROWS = 16;
const TILE_BYTES = 4096;

/** Arena offsets a kernel's constants may name, moved to token t's copy by its batched twin. */
const PER_TOKEN = new Set(["xo", "yo", "ro", "so", "ao", "bo", "qo"]);

/** See WgslKernels.batched: rewrites a kernel's source for token t = F.first + workgroup_id.z of a batch.
 * A batch's tokens may be at any positions (batched decoding steps several sequences), so each token's
 * position is read from its copy, after its id. */
export function batchTwin(src: string): string {
  // qo is a word offset in the quantized activations where the kernel binds them, else an arena offset.
  const q8 = /var<storage, read(_write)?> Q: array<u32>/.test(src);
  // Each moved constant keeps its name (the program's params are the per-token kernel's); the kernel reads
  // a private copy, `<name>_t`, set to token t's offset.
  const moved = [...src.matchAll(/^override (\w+): u32;$/gm)]
    .map((m) => m[1]!)
    .filter((n) => PER_TOKEN.has(n));
  let out = src;
  for (const n of moved) {
    out = out
      .replace(new RegExp(`\\b${n}\\b`, "g"), `${n}_t`)
      .replace(`override ${n}_t: u32;`, `override ${n}: u32;\nvar<private> ${n}_t: u32;`);
  }
  out = out
    .replace(/F\.token/g, "u32(A[tko + bt * bstride])")
    .replace(/F\.pos/g, "u32(A[tko + 1u + bt * bstride])");
  const sig = /fn main\(([\s\S]*?)\) \{\n/.exec(out);
  if (!sig) throw new Error("a kernel without `fn main(…) {`");
  const wid = /@builtin\(workgroup_id\) (\w+)/.exec(sig[1]!);
  const params = wid ? sig[1]! : `@builtin(workgroup_id) bt_wid: vec3<u32>, ${sig[1]!}`;
  const init = [
    `  bt = F.first + ${wid ? wid[1] : "bt_wid"}.z;`,
    ...moved.map((n) => `  ${n}_t = ${n} + bt * ${n === "qo" && q8 ? "qstride" : "bstride"};`),
  ];
  out = `${out.slice(0, sig.index)}fn main(${params}) {\n${init.join("\n")}\n${out.slice(sig.index + sig[0].length)}`;
  return `${out}
// The batch: token bt (from the dispatch's z), its arena copy bstride floats on, its q8 copy qstride words
// on; its id at tko and its position at tko + 1 of its copy.
override bstride: u32;
override qstride: u32;
override tko: u32;
var<private> bt: u32;
`;
}
