// The WebAssembly half of a compiled model: one SIMD matrix-vector kernel per (scheme, row length)
// the model uses, each with the scheme's `wasm.dot` piece inlined into a loop whose trip counts are
// constants. Written as WAT from a handlebars template (readable, diffable in `model.ts`), assembled by
// wabt at compile time; the bytes travel inside the generated module, so running needs no assembler.
// The kernels read and write one shared memory that the runtime owns (runtime/heap.ts).
import { readFileSync } from "node:fs";
import Handlebars from "handlebars";
import wabtInit from "wabt";
import type { KvType } from "../../runtime/kv-type.ts";
import {
  Q8_BLOCK,
  Q8_BLOCK_BYTES,
  Q8_D,
  Q8_SHADOW,
  Q8_SUM,
  Q8_SUMS,
  Q8K_BLOCK,
  Q8K_BLOCK_BYTES,
  Q8K_D,
  Q8K_SHADOW,
  Q8K_SUMS,
  q8Format,
} from "../../runtime/quant/q8-activations.ts";
import { getScheme } from "../../runtime/quant/registry.ts";
import type { QuantScheme } from "../../runtime/quant/scheme.ts";
import { attentionWat, expWat } from "./attention.ts";
import { ColumnsError, columnsPiece } from "./columns.ts";
import { relaxIntegers, relaxWat } from "./relax.ts";
import { type Rows8Kernel, rows8Matmul, rows8Matvec } from "./rows8.ts";

const wabt = await wabtInit();
const hbs = Handlebars.create();
// `{{high "$v"}}`: the upper two f32 lanes of v moved to the lower two (for f64x2.promote_low_f32x4).
hbs.registerHelper(
  "high",
  (v: string) =>
    `(i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get ${v}) (local.get ${v}))`,
);
const template = (name: string) =>
  hbs.compile(readFileSync(new URL(`./templates/${name}.wat.hbs`, import.meta.url), "utf8"), {
    noEscape: true,
    strict: true,
  });
const matvec = template("matvec");
const matmul = template("matmul");
const rows = template("rows");

/** The row kernels' export names (templates/rows.wat.hbs): one function each, sizes as parameters. */
export const ROWS = {
  rms: "rms_norm",
  rope: "rope",
  swiglu: "swiglu",
  axpy: "axpy",
  router: "router_f32",
  topk: "topk",
} as const;

/**
 * The pieces' vector constants (masks, bit patterns, zeros) moved into locals set once per call: V8 builds a
 * `v128.const` with several instructions wherever it appears, so one inside the step loop costs that every
 * step. Returns the texts with `(local.get $kN)` in their place, and the locals' declarations and sets.
 */
function hoistConstants(...texts: string[]): { texts: string[]; locals: string; sets: string } {
  const consts = new Map<string, string>();
  const out = texts.map((t) =>
    t.replace(/\(v128\.const [^()]*\)/g, (c) => {
      const norm = c.replace(/\s+/g, " ");
      if (!consts.has(norm)) consts.set(norm, `$k${consts.size}`);
      return `(local.get ${consts.get(norm)})`;
    }),
  );
  const entries = [...consts];
  return {
    texts: out,
    locals: entries.map(([, n]) => `    (local ${n} v128)`).join("\n"),
    sets: entries.map(([c, n]) => `    (local.set ${n} ${c})`).join("\n"),
  };
}

/** Columns a matrix-matrix kernel unpacks each step's weights for at once: the most, then fewer. */
const MM_GROUPS = [4, 2];
export const MM_COLUMNS = MM_GROUPS[0]!;
/** About the bytes of weight rows a matrix-matrix kernel keeps in cache while it runs every column. */
const MM_BLOCK_BYTES = 16384;

/** The horizontal sum of `acc` stored at column `j` of the group at `$c` (or the single column), row `$r`. */
function storeColumn(acc: string, j: number): string {
  const lane = (i: number) => `(f32x4.extract_lane ${i} (local.get ${acc}))`;
  return [
    `(local.set $sum (f32.add (f32.add ${lane(0)} ${lane(1)}) (f32.add ${lane(2)} ${lane(3)})))`,
    `(local.set $at (i32.add (i32.load offset=${4 * j} (i32.add (local.get $yl) (i32.shl (local.get $c) (i32.const 2)))) (i32.shl (local.get $r) (i32.const 2))))`,
    "(if (local.get $accumulate) (then (local.set $sum (f32.add (local.get $sum) (f32.load (local.get $at))))))",
    "(f32.store (local.get $at) (local.get $sum))",
  ].join("\n");
}

/**
 * `name(xl, ql, n)`: for j < n, the activation vector at xl[j] to `steps` q8 blocks at ql[j], exactly as
 * runtime/quant/q8-activations.ts says (its reference): d = max|x| / 127, q = x · (127 / max|x|) rounded
 * half to even, 32 × i16, then d as f32x4 (d in every lane), then Σq as i32x4 partial sums, then the two
 * runs of 16 again as int8 (the shadow, at 96 and 128), Σq in every i32 lane at 112; 144 bytes.
 */
function quantizer(name: string, steps: number): string {
  const at = (k: number) => `(f32x4.abs (v128.load offset=${16 * k} align=4 (local.get $x)))`;
  let m = at(0);
  for (let k = 1; k < 8; k++) m = `(f32x4.max ${m} ${at(k)})`;
  const lane = (i: number) => `(f32x4.extract_lane ${i} (local.get $m))`;
  const q = (k: number) =>
    `(i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul (v128.load offset=${16 * k} align=4 (local.get $x)) (local.get $s))))`;
  return `  ;; ${name}: for j < n, the ${steps * Q8_BLOCK} floats at xl[j] quantized to ${steps} int8 blocks of 32 at ql[j].
  (func (export "${name}") (param $xl i32) (param $ql i32) (param $n i32)
    (local $j i32) (local $x i32) (local $q i32) (local $b i32) (local $m v128) (local $s v128) (local $a f32) (local $d f32)
    (local $n0 v128) (local $n1 v128) (local $n2 v128) (local $n3 v128)
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $j) (local.get $n)))
        (local.set $x (i32.load (i32.add (local.get $xl) (i32.shl (local.get $j) (i32.const 2)))))
        (local.set $q (i32.load (i32.add (local.get $ql) (i32.shl (local.get $j) (i32.const 2)))))
        (local.set $b (i32.const 0))
        (loop $blocks
          (local.set $m ${m})
          (local.set $a (f32.max (f32.max ${lane(0)} ${lane(1)}) (f32.max ${lane(2)} ${lane(3)})))
          (local.set $d (f32.div (local.get $a) (f32.const 127)))
          (local.set $s (f32x4.splat (select (f32.div (f32.const 127) (local.get $a)) (f32.const 0) (f32.gt (local.get $a) (f32.const 0)))))
          ${[0, 1, 2, 3].map((k) => `(v128.store offset=${16 * k} align=2 (local.get $q) (local.tee $n${k} (i16x8.narrow_i32x4_s ${q(2 * k)} ${q(2 * k + 1)})))`).join("\n          ")}
          ${[0, 1].map((r) => `(v128.store offset=${Q8_SHADOW + 32 * r} align=1 (local.get $q) (i8x16.narrow_i16x8_s (local.get $n${2 * r}) (local.get $n${2 * r + 1})))`).join("\n          ")}
          (v128.store offset=${Q8_D} align=4 (local.get $q) (f32x4.splat (local.get $d)))
          (v128.store offset=${Q8_SUMS} align=4 (local.get $q)
            (local.tee $m (i32x4.extadd_pairwise_i16x8_s (i16x8.add (i16x8.add (local.get $n0) (local.get $n1)) (i16x8.add (local.get $n2) (local.get $n3))))))
          (local.set $m (i32x4.add (local.get $m) (i8x16.shuffle 4 5 6 7 0 1 2 3 12 13 14 15 8 9 10 11 (local.get $m) (local.get $m))))
          (v128.store offset=${Q8_SUM} align=4 (local.get $q) (i32x4.add (local.get $m) (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $m) (local.get $m))))
          (local.set $x (i32.add (local.get $x) (i32.const 128)))
          (local.set $q (i32.add (local.get $q) (i32.const ${Q8_BLOCK_BYTES})))
          (br_if $blocks (i32.lt_u (local.tee $b (i32.add (local.get $b) (i32.const 1))) (i32.const ${steps}))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $vectors)))
  )
`;
}

/**
 * `name(xl, ql, n)`: for j < n, the activation vector at xl[j] to `steps` q8_K blocks at ql[j], exactly as
 * runtime/quant/q8-activations.ts says (its reference, after llama.cpp's quantize_row_q8_K_ref):
 * iscale = 127 / max|x|, q = x · iscale rounded half to even, the 16 sums of 16 q, d = 1 / iscale.
 */
function quantizerK(name: string, steps: number): string {
  const at = (k: number) => `(v128.load offset=${16 * k} align=4 (i32.add (local.get $x) (local.get $i)))`;
  const q = (k: number) => `(i32x4.trunc_sat_f32x4_s (f32x4.nearest (f32x4.mul ${at(k)} (local.get $s))))`;
  const lane = (v: string, i: number, t = "f32x4") => `(${t}.extract_lane ${i} (local.get ${v}))`;
  return `  ;; ${name}: for j < n, the ${steps * Q8K_BLOCK} floats at xl[j] quantized to ${steps} q8_K blocks at ql[j].
  (func (export "${name}") (param $xl i32) (param $ql i32) (param $n i32)
    (local $j i32) (local $x i32) (local $q i32) (local $b i32) (local $i i32) (local $m v128) (local $s v128) (local $t v128) (local $u v128) (local $a f32)
    (block $done
      (loop $vectors
        (br_if $done (i32.ge_u (local.get $j) (local.get $n)))
        (local.set $x (i32.load (i32.add (local.get $xl) (i32.shl (local.get $j) (i32.const 2)))))
        (local.set $q (i32.load (i32.add (local.get $ql) (i32.shl (local.get $j) (i32.const 2)))))
        (local.set $b (i32.const 0))
        (loop $blocks
          (local.set $m (v128.const i32x4 0 0 0 0))
          (local.set $i (i32.const 0))
          (loop $amax
            ${[0, 1, 2, 3].map((k) => `(local.set $m (f32x4.max (local.get $m) (f32x4.abs ${at(k)})))`).join("\n            ")}
            (br_if $amax (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 64))) (i32.const ${4 * Q8K_BLOCK}))))
          (local.set $a (f32.max (f32.max ${lane("$m", 0)} ${lane("$m", 1)}) (f32.max ${lane("$m", 2)} ${lane("$m", 3)})))
          (local.set $s (f32x4.splat (select (f32.div (f32.const 127) (local.get $a)) (f32.const 0) (f32.gt (local.get $a) (f32.const 0)))))
          (f32.store offset=${Q8K_D} align=4 (local.get $q)
            (select (f32.div (f32.const 1) ${lane("$s", 0)}) (f32.const 0) (f32.gt (local.get $a) (f32.const 0))))
          (local.set $i (i32.const 0))
          (loop $groups
            (v128.store align=2 (i32.add (local.get $q) (i32.shr_u (local.get $i) (i32.const 1))) (local.tee $t (i16x8.narrow_i32x4_s ${q(0)} ${q(1)})))
            (v128.store offset=16 align=2 (i32.add (local.get $q) (i32.shr_u (local.get $i) (i32.const 1))) (local.tee $u (i16x8.narrow_i32x4_s ${q(2)} ${q(3)})))
            (v128.store offset=${Q8K_SHADOW} align=1 (i32.add (local.get $q) (i32.shr_u (local.get $i) (i32.const 1))) (i8x16.narrow_i16x8_s (local.get $t) (local.get $u)))
            (local.set $t (i32x4.add (i32x4.extadd_pairwise_i16x8_s (local.get $t)) (i32x4.extadd_pairwise_i16x8_s (local.get $u))))
            (i32.store16 offset=${Q8K_SUMS} align=2 (i32.add (local.get $q) (i32.shr_u (local.get $i) (i32.const 5)))
              (i32.add (i32.add ${lane("$t", 0, "i32x4")} ${lane("$t", 1, "i32x4")}) (i32.add ${lane("$t", 2, "i32x4")} ${lane("$t", 3, "i32x4")})))
            (br_if $groups (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 64))) (i32.const ${4 * Q8K_BLOCK}))))
          (local.set $x (i32.add (local.get $x) (i32.const ${4 * Q8K_BLOCK})))
          (local.set $q (i32.add (local.get $q) (i32.const ${Q8K_BLOCK_BYTES})))
          (br_if $blocks (i32.lt_u (local.tee $b (i32.add (local.get $b) (i32.const 1))) (i32.const ${steps}))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $vectors)))
  )
`;
}

/** The names of a q8 piece's product over quantized x (`mvq_` over q8_0, `mvqk_` over q8_K) and of the
 * quantizer it runs after (`qx_` or `qxk_`); runtime/q8-kernels.ts pairs them by these prefixes. */
const q8Names = (step: number, scheme: string, cols: number) =>
  step === Q8K_BLOCK
    ? { product: `mvqk_${scheme}_${cols}`, quantizer: `qxk_${cols}` }
    : { product: `mvq_${scheme}_${cols}`, quantizer: `qx_${cols}` };

export class WasmKernels {
  /** Whether a scheme's products use its integer piece (default: wherever it has one). A compile that must
   * match a backend multiplying by f32 activations turns it off (CompileOptions.integerProducts). */
  integer: (scheme: string) => boolean = () => true;

  /** The piece a scheme's kernels run in each build: its integer piece where it has one and it is used, with
   * relaxed SIMD's 8-bit products in the relaxed build; else its f32 piece. */
  private pieces(s: QuantScheme): { plain: string; relaxed: string } {
    const q8 = this.q8Piece(s);
    if (!q8) return { plain: s.wasm!.dot, relaxed: s.wasm!.dot };
    return { plain: q8, relaxed: relaxIntegers(q8, q8Format(s.wasm!.step)!).text };
  }

  /** A scheme's integer piece (activations quantized to the q8 blocks of its step), when it has one and it is
   * used. */
  private q8Piece(s: QuantScheme): string | undefined {
    return s.wasm && q8Format(s.wasm.step) && this.integer(s.name) ? s.wasm.q8 : undefined;
  }
  /** Each function's text in the plain build and in the relaxed-SIMD one (the same text for most). */
  private readonly funcs = new Map<string, { plain: string; relaxed: string }>();
  private add(name: string, plain: string, relaxed = plain) {
    this.funcs.set(name, { plain, relaxed });
  }
  private readonly unwidened = new Set<string>();
  /** Bytes of one quantized activation vector for the widest integer matrix-vector kernel (0: none). */
  q8Bytes = 0;

  /** The export name of y = W·x for rows of `cols` elements in `scheme`, or undefined when the scheme has
   * no WebAssembly piece (or its step does not divide the row): the TypeScript kernel runs instead. With
   * `rows8`, for weights stored 8 rows interleaved where the scheme has that layout (`interleaved` says). */
  matvec(scheme: string, cols: number, rows8 = false): string | undefined {
    const s = getScheme(scheme);
    if (!s.wasm || cols % s.wasm.step !== 0) return undefined;
    const x8 = rows8 && this.interleaved(scheme);
    const label = x8 ? `${scheme}x8` : scheme;
    const name = `mv_${label}_${cols}`;
    const q8 = this.q8Piece(s);
    // With an integer piece the export is the product over quantized x, and runtime/q8-kernels.ts
    // composes the `mv_…` the generated code calls: quantize on the calling thread, then the rows.
    const exported = q8 ? q8Names(s.wasm.step, label, cols).product : name;
    if (!this.funcs.has(exported)) {
      const steps = cols / s.wasm.step;
      const wasm = s.wasm;
      if (x8) {
        const kernel = (relaxed: boolean) =>
          rows8Matvec(this.rows8Kernel(s, exported, cols, relaxed, "one activation vector"));
        this.add(exported, kernel(false), kernel(true));
      } else {
        const build = (piece: string) => {
          const k = hoistConstants(piece);
          return matvec({
            name: exported,
            doc: `rows of ${cols} ${scheme} weights${q8 ? ", x quantized to q8 blocks (integer products)" : ""}`,
            steps,
            bytes: wasm.bytes,
            xBytes: q8 ? q8Format(wasm.step)!.bytes : wasm.step * 4,
            rowBytes: steps * wasm.bytes,
            dot: k.texts[0],
            constLocals: k.locals,
            constSets: k.sets,
          });
        };
        const piece = this.pieces(s);
        this.add(exported, build(piece.plain), build(piece.relaxed));
      }
      if (q8) this.quantizer(s.wasm.step, cols);
    }
    return name;
  }

  /** Whether `scheme`'s products here can read weights stored 8 rows interleaved (its integer piece is used
   * and it has that layout); the compiler stores only such weights that way (WeightEntry.rows8). */
  interleaved(scheme: string): boolean {
    const s = getScheme(scheme);
    return !!s.wasm?.rows8 && this.q8Piece(s) !== undefined;
  }

  /** What rows8.ts needs for one build of a kernel over interleaved rows of `cols` in `s`. */
  private rows8Kernel(
    s: QuantScheme,
    name: string,
    cols: number,
    relaxed: boolean,
    what: string,
  ): Rows8Kernel {
    const wasm = s.wasm!;
    return {
      name,
      doc: `groups of 8 interleaved rows of ${cols} ${s.name} weights, ${what} quantized to q8 blocks (integer products${relaxed ? ", relaxed SIMD" : ""})`,
      steps: cols / wasm.step,
      rowBytes: (cols / wasm.step) * wasm.bytes,
      stepBytes: 8 * wasm.bytes,
      xBytes: q8Format(wasm.step)!.bytes,
      piece: (c) => wasm.rows8!.q8(c, relaxed),
      hoist: hoistConstants,
    };
  }

  /** The quantizer of activation vectors of `cols` values to the q8 blocks of `step`; returns its name. */
  private quantizer(step: number, cols: number): string {
    const { quantizer: qx } = q8Names(step, "", cols);
    const format = q8Format(step)!;
    const steps = cols / format.block;
    if (!this.funcs.has(qx)) this.add(qx, (step === Q8K_BLOCK ? quantizerK : quantizer)(qx, steps));
    this.q8Bytes = Math.max(this.q8Bytes, steps * format.bytes);
    return qx;
  }

  /**
   * The export name of the matrix-matrix product for rows of `cols` elements in `scheme` (batched
   * prefill): `mm(w, xl, yl, r0, r1, n, accumulate)` over n activation vectors listed by address, each
   * column bit-identical to the matrix-vector kernel's result. Undefined where `matvec` is, or when the
   * scheme's piece cannot be widened to several columns (the prefill then runs the matrix-vector kernel
   * once per column).
   */
  matmul(scheme: string, cols: number): string | undefined {
    const mv = this.matvec(scheme, cols);
    const s = getScheme(scheme);
    // A scheme with an integer piece runs matmulQ8: its products must be the matrix-vector kernel's.
    if (!mv || this.q8Piece(s)) return undefined;
    const name = `mm_${scheme}_${cols}`;
    return this.widened(name, mv, s, cols, this.pieces(s), s.wasm!.step * 4) ? name : undefined;
  }

  /**
   * Registers `name`, the matrix-matrix kernel whose columns are `mv`'s products: `pieces` (one step of a
   * row against activations `xBytes` apart per step, in each build) widened to MM_COLUMNS vectors. False
   * when the piece cannot be widened (the prefill then runs the matrix-vector kernel once per column).
   */
  private widened(
    name: string,
    mv: string,
    s: QuantScheme,
    cols: number,
    pieces: { plain: string; relaxed: string },
    xBytes: number,
  ): boolean {
    if (this.funcs.has(name)) return true;
    if (this.unwidened.has(name)) return false;
    try {
      const plain = this.widen(name, mv, s, cols, pieces.plain, xBytes);
      this.add(name, plain, this.widen(name, mv, s, cols, pieces.relaxed, xBytes));
      return true;
    } catch (e) {
      if (!(e instanceof ColumnsError)) throw e;
      this.unwidened.add(name);
      return false;
    }
  }

  /** The text of `widened`'s kernel for one build's piece; throws ColumnsError where it cannot widen. */
  private widen(
    name: string,
    mv: string,
    s: QuantScheme,
    cols: number,
    piece: string,
    xBytes: number,
  ): string {
    // The widest group first, then narrower ones for what is left (an expert a batch's few tokens chose),
    // so a weight step is unpacked once for as many columns as there are; the last column alone.
    const wides = MM_GROUPS.map((c) => columnsPiece(piece, c));
    const steps = cols / s.wasm!.step;
    const rowBytes = steps * s.wasm!.bytes;
    const js = [...Array(MM_COLUMNS).keys()];
    const k = hoistConstants(...wides.map((w) => w.text), piece);
    const wideLocals = new Map(wides.flatMap((w) => w.locals));
    const locals = [
      ...wideLocals,
      ...js.map((j) => [`$xs_${j}`, "i32"] as const),
      ...(wideLocals.has("$x_0") ? [] : js.map((j) => [`$x_${j}`, "i32"] as const)),
      ...(wideLocals.has("$acc_0") ? [] : js.map((j) => [`$acc_${j}`, "v128"] as const)),
    ];
    const group = (cols: number, wide: string) => {
      const cs = [...Array(cols).keys()];
      return {
        cols,
        wide,
        starts: cs
          .map(
            (j) =>
              `(local.set $xs_${j} (i32.load offset=${4 * j} (i32.add (local.get $xl) (i32.shl (local.get $c) (i32.const 2)))))`,
          )
          .join("\n"),
        resets: cs
          .map(
            (j) =>
              `(local.set $acc_${j} (v128.const i32x4 0 0 0 0)) (local.set $x_${j} (local.get $xs_${j}))`,
          )
          .join("\n"),
        advances: cs
          .map((j) => `(local.set $x_${j} (i32.add (local.get $x_${j}) (i32.const ${xBytes})))`)
          .join("\n"),
        stores: cs.map((j) => storeColumn(`$acc_${j}`, j)).join("\n"),
      };
    };
    return matmul({
      name,
      mv,
      doc: `rows of ${cols} ${s.name} weights, several activation vectors`,
      steps,
      bytes: s.wasm!.bytes,
      xBytes,
      rowBytes,
      widths: MM_GROUPS.join(", "),
      groups: MM_GROUPS.map((c, i) => group(c, k.texts[i]!)),
      block: Math.max(1, Math.floor(MM_BLOCK_BYTES / rowBytes)),
      locals: locals.map(([n, t]) => `    (local ${n} ${t})`).join("\n"),
      constLocals: k.locals,
      constSets: k.sets,
      dot: k.texts[MM_GROUPS.length],
      store1: storeColumn("$acc", 0),
    });
  }

  /**
   * The batched prefill's integer path for `scheme` (where the scheme has a `q8` piece): `qx`
   * quantizes activation vectors of `cols` to int8 blocks of 32 with an f32 scale (`qx(xl, ql, n)`: n
   * vectors at the addresses in list xl to the addresses in list ql, `cols / 32 × 96` bytes each), and
   * `mm` multiplies a matrix by such vectors like `matmul`, with 16-bit integer dot products per block.
   */
  matmulQ8(
    scheme: string,
    cols: number,
    rows8 = false,
  ): { mm: string; mv: string; qx: string; qBytes: number } | undefined {
    const s = getScheme(scheme);
    const piece = this.q8Piece(s);
    if (!piece || !this.matvec(scheme, cols, rows8)) return undefined;
    const step = s.wasm!.step;
    const format = q8Format(step)!;
    const x8 = rows8 && this.interleaved(scheme);
    const mv = q8Names(step, x8 ? `${scheme}x8` : scheme, cols).product;
    const name = `mm${mv.slice(2)}`;
    const qx = this.quantizer(step, cols);
    const qBytes = (cols / format.block) * format.bytes;
    if (x8) {
      if (!this.funcs.has(name)) {
        const kernel = (relaxed: boolean) =>
          rows8Matmul(this.rows8Kernel(s, name, cols, relaxed, "several activation vectors"));
        this.add(name, kernel(false), kernel(true));
      }
      return { mm: name, mv, qx, qBytes };
    }
    if (!this.widened(name, mv, s, cols, this.pieces(s), format.bytes)) return undefined;
    return { mm: name, mv, qx, qBytes };
  }

  /** Export name of the attention of `kvHeads` KV heads of `headDim` (a multiple of 4) in cache rows of
   * `rowBytes` holding `type`, `group` query heads per KV head, tiles of `tile` keys, a sliding `window` (0:
   * none), split by KV heads over the threads (attention.ts). */
  attention(
    type: KvType,
    headDim: number,
    rowBytes: number,
    kvHeads: number,
    group: number,
    tile: number,
    window: number,
  ): { mva: string } {
    const key = `${type}_${headDim}_${rowBytes}_h${kvHeads}_g${group}${window ? `_w${window}` : ""}`;
    const names = { qk: `qk_${key}`, sm: `sm_${key}`, av: `av_${key}`, mva: `mva_${key}` };
    if (!this.funcs.has(names.qk)) {
      const shape = { type, headDim, rowBytes, kvHeads, group, tile, window };
      this.add(
        names.qk,
        attentionWat(names, shape, (t) => hoistConstants(t)),
      );
    }
    return { mva: names.mva };
  }

  /** The row kernels (norms, RoPE, SwiGLU, a pick's weighted sum, the router's top-k) and the `$expf` they
   * share (attention's polynomial), added once. */
  rows(): typeof ROWS {
    if (!this.funcs.has(ROWS.rms)) this.add(ROWS.rms, rows({ ...ROWS, expf: expWat("$x", "$x") }));
    return ROWS;
  }

  get size(): number {
    return this.funcs.size;
  }

  /** The module's text in the plain or the relaxed build (before relaxWat's fused multiply-adds): the shared
   * memory it imports, the half-float table reader, the kernels. */
  text(relaxed = false): string {
    return [
      "(module",
      '  (import "env" "memory" (memory 1 65536 shared))',
      "  ;; Half bits → f32 through the table at heap address 0.",
      "  (func $f16 (param $h i32) (result f32) (f32.load (i32.shl (local.get $h) (i32.const 2))))",
      ...[...this.funcs.values()].map((f) => (relaxed ? f.relaxed : f.plain)),
      ")",
      "",
    ].join("\n");
  }

  /** The assembled module (with relaxed SIMD's fused multiply-adds when asked); a WAT error here is a
   * bug in a scheme's piece or a template. */
  binary(relaxed = false): Uint8Array {
    const text = relaxed ? relaxWat(this.text(true)).text : this.text();
    const m = wabt.parseWat("model.wat", text, { simd: true, threads: true, relaxed_simd: relaxed });
    try {
      return m.toBinary({ write_debug_names: true }).buffer;
    } finally {
      m.destroy();
    }
  }
}
