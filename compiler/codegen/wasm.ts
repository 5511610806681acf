// The WebAssembly half of a compiled model: one SIMD matrix-vector kernel per (scheme, row length)
// the model uses, each with the scheme's `wasm.dot` piece inlined into a loop whose trip counts are
// constants. Written as WAT from a handlebars template (readable, diffable in `model.ts`), assembled by
// wabt at compile time; the bytes travel inside the generated module, so running needs no assembler.
// The kernels read and write one shared memory that the runtime owns (runtime/heap.ts).
import { readFileSync } from "node:fs";
import Handlebars from "handlebars";
import wabtInit from "wabt";
import { Q8_BLOCK, Q8_BLOCK_BYTES } from "../../runtime/quant/q8-activations.ts";
import { getScheme } from "../../runtime/quant/registry.ts";
import type { QuantScheme } from "../../runtime/quant/scheme.ts";
import { ColumnsError, columnsPiece } from "./columns.ts";
import { relaxWat } from "./relax.ts";

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
const attention = template("attention");
const matmul = template("matmul");
const q8x = template("q8x");

/**
 * What a kernel for `s` runs per step: the scheme's integer `q8` piece over activations quantized to q8_0
 * when it has one (the export is then `mvq_…` / `mmq_…`, and runtime/q8-kernels.ts composes the `mv_…` /
 * `mm_…` the generated code calls), else its f32 `dot` piece.
 */
function pieceOf(s: QuantScheme): { dot: string; xBytes: number; q: "" | "q" } {
  const w = s.wasm!;
  return w.q8 !== undefined && w.step === Q8_BLOCK
    ? { dot: w.q8, xBytes: Q8_BLOCK_BYTES, q: "q" }
    : { dot: w.dot, xBytes: w.step * 4, q: "" };
}

/** Columns a matrix-matrix kernel unpacks each step's weights for at once. */
export const MM_COLUMNS = 4;
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

export class WasmKernels {
  private readonly funcs = new Map<string, string>();
  private readonly unwidened = new Set<string>();
  /** Bytes of one quantized activation vector for the widest integer kernel (0: none quantizes). */
  q8Bytes = 0;

  /** The export name of y = W·x for rows of `cols` elements in `scheme`, or undefined when the scheme has
   * no WebAssembly piece (or its step does not divide the row): the TypeScript kernel runs instead. */
  matvec(scheme: string, cols: number): string | undefined {
    const s = getScheme(scheme);
    if (!s.wasm || cols % s.wasm.step !== 0) return undefined;
    const name = `mv_${scheme}_${cols}`;
    const p = pieceOf(s);
    const exported = `mv${p.q}_${scheme}_${cols}`;
    if (!this.funcs.has(exported)) {
      const steps = cols / s.wasm.step;
      this.funcs.set(
        exported,
        matvec({
          name: exported,
          doc: `rows of ${cols} ${scheme} weights${p.q ? ", x quantized to q8_0 (integer products)" : ""}`,
          steps,
          bytes: s.wasm.bytes,
          xBytes: p.xBytes,
          rowBytes: steps * s.wasm.bytes,
          dot: p.dot,
        }),
      );
      if (p.q) this.quantizer(cols);
    }
    return name;
  }

  /** `q8x_C(x, q)`: C activations at x quantized into C / 32 q8 blocks at q. */
  private quantizer(cols: number): void {
    const name = `q8x_${cols}`;
    if (this.funcs.has(name)) return;
    const blocks = cols / Q8_BLOCK;
    this.funcs.set(
      name,
      q8x({
        name,
        cols,
        blocks,
        blockBytes: Q8_BLOCK_BYTES,
        rest: [16, 32, 48, 64, 80, 96, 112],
        eights: [0, 1, 2, 3].map((e) => ({ x0: 32 * e, x1: 32 * e + 16, q: 4 + 16 * e })),
      }),
    );
    this.q8Bytes = Math.max(this.q8Bytes, blocks * Q8_BLOCK_BYTES);
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
    if (!mv) return undefined;
    const s = getScheme(scheme);
    const p = pieceOf(s);
    const name = `mm_${scheme}_${cols}`;
    const exported = `mm${p.q}_${scheme}_${cols}`;
    if (this.funcs.has(exported)) return name;
    if (this.unwidened.has(name)) return undefined;
    let wide: ReturnType<typeof columnsPiece>;
    try {
      wide = columnsPiece(p.dot, MM_COLUMNS);
    } catch (e) {
      if (!(e instanceof ColumnsError)) throw e;
      this.unwidened.add(name);
      return undefined;
    }
    const steps = cols / s.wasm!.step;
    const rowBytes = steps * s.wasm!.bytes;
    const js = [...Array(MM_COLUMNS).keys()];
    const locals = [
      ...wide.locals,
      ...js.map((j) => [`$xs_${j}`, "i32"] as const),
      ...(wide.locals.some(([n]) => n === "$x_0") ? [] : js.map((j) => [`$x_${j}`, "i32"] as const)),
      ...(wide.locals.some(([n]) => n === "$acc_0") ? [] : js.map((j) => [`$acc_${j}`, "v128"] as const)),
    ];
    this.funcs.set(
      exported,
      matmul({
        name: exported,
        mv: `mv${p.q}_${scheme}_${cols}`,
        doc: `rows of ${cols} ${scheme} weights, several activation vectors`,
        steps,
        bytes: s.wasm!.bytes,
        xBytes: p.xBytes,
        rowBytes,
        cols: MM_COLUMNS,
        block: Math.max(1, Math.floor(MM_BLOCK_BYTES / rowBytes)),
        locals: locals.map(([n, t]) => `    (local ${n} ${t})`).join("\n"),
        starts: js
          .map(
            (j) =>
              `(local.set $xs_${j} (i32.load offset=${4 * j} (i32.add (local.get $xl) (i32.shl (local.get $c) (i32.const 2)))))`,
          )
          .join("\n"),
        resets: js
          .map(
            (j) =>
              `(local.set $acc_${j} (v128.const i32x4 0 0 0 0)) (local.set $x_${j} (local.get $xs_${j}))`,
          )
          .join("\n"),
        wide: wide.text,
        advances: js
          .map((j) => `(local.set $x_${j} (i32.add (local.get $x_${j}) (i32.const ${p.xBytes})))`)
          .join("\n"),
        stores: js.map((j) => storeColumn(`$acc_${j}`, j)).join("\n"),
        dot: p.dot,
        store1: storeColumn("$acc", 0),
      }),
    );
    return name;
  }

  /** Export names of the attention pieces for heads of `headDim` in cache rows of `kvWidth` floats:
   * scores (q·k over positions) and the weighted sum of values; undefined when headDim is not whole
   * f32x4 vectors. Softmax stays in TypeScript, which has exp. */
  attention(headDim: number, kvWidth: number): { qk: string; av: string } | undefined {
    if (headDim % 4 !== 0) return undefined;
    const names = { qk: `qk_${headDim}_${kvWidth}`, av: `av_${headDim}_${kvWidth}` };
    if (!this.funcs.has(names.qk)) {
      this.funcs.set(
        names.qk,
        attention({ ...names, headDim, kvWidth, headBytes: headDim * 4, rowBytes: kvWidth * 4 }),
      );
    }
    return names;
  }

  get size(): number {
    return this.funcs.size;
  }

  /** The module's text: the shared memory it imports, the half-float table reader, the kernels. */
  text(): string {
    return [
      "(module",
      '  (import "env" "memory" (memory 1 65536 shared))',
      "  ;; Half bits → f32 through the table at heap address 0.",
      "  (func $f16 (param $h i32) (result f32) (f32.load (i32.shl (local.get $h) (i32.const 2))))",
      ...this.funcs.values(),
      ")",
      "",
    ].join("\n");
  }

  /** The assembled module (with relaxed SIMD's fused multiply-adds when asked); a WAT error here is a
   * bug in a scheme's piece or a template. */
  binary(relaxed = false): Uint8Array {
    const text = relaxed ? relaxWat(this.text()).text : this.text();
    const m = wabt.parseWat("model.wat", text, { simd: true, threads: true, relaxed_simd: relaxed });
    try {
      return m.toBinary({}).buffer;
    } finally {
      m.destroy();
    }
  }
}
