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
const q8x = template("q8x");

export class WasmKernels {
  private readonly funcs = new Map<string, string>();
  /** Bytes of quantized activations the largest integer kernel needs: one thread's scratch (global `$xq`,
   * set by the runtime per instance). 0 when no kernel quantizes. */
  q8Bytes = 0;

  /** The export name of y = W·x for rows of `cols` elements in `scheme`, or undefined when the scheme has
   * no WebAssembly piece (or its step does not divide the row): the TypeScript kernel runs instead. */
  matvec(scheme: string, cols: number): string | undefined {
    const s = getScheme(scheme);
    if (!s.wasm || cols % s.wasm.step !== 0) return undefined;
    const name = `mv_${scheme}_${cols}`;
    if (this.funcs.has(name)) return name;
    const steps = cols / s.wasm.step;
    const kernel = (kname: string, dot: string, xBytes: number) =>
      matvec({
        name: kname,
        doc: `rows of ${cols} ${scheme} weights`,
        steps,
        bytes: s.wasm!.bytes,
        xBytes,
        rowBytes: steps * s.wasm!.bytes,
        dot,
      });
    if (s.wasm.q8 === undefined || s.wasm.step !== Q8_BLOCK) {
      this.funcs.set(name, kernel(name, s.wasm.dot, s.wasm.step * 4));
      return name;
    }
    // Integer products: x is quantized into this instance's scratch (each thread has its own), then the
    // rows run against it. Every thread quantizes the whole x: cols values against its rows × cols.
    const quantize = `q8x_${cols}`;
    const blocks = cols / Q8_BLOCK;
    if (!this.funcs.has(quantize)) {
      this.funcs.set(
        quantize,
        q8x({
          name: quantize,
          cols,
          blocks,
          rest: [16, 32, 48, 64, 80, 96, 112],
          blockBytes: Q8_BLOCK_BYTES,
          eights: [0, 1, 2, 3].map((e) => ({ x0: 32 * e, x1: 32 * e + 16, q: 4 + 16 * e })),
        }),
      );
    }
    const inner = `mvq_${scheme}_${cols}`;
    this.funcs.set(inner, kernel(inner, s.wasm.q8, Q8_BLOCK_BYTES));
    this.funcs.set(
      name,
      [
        `  ;; rows of ${cols} ${scheme} weights against x quantized to q8_0 (integer products, as llama.cpp).`,
        `  (func $${name} (export "${name}") (param $w i32) (param $x i32) (param $y i32) (param $r0 i32) (param $r1 i32) (param $alpha f32) (param $accumulate i32)`,
        `    (call $${quantize} (local.get $x) (global.get $xq))`,
        `    (call $${inner} (local.get $w) (global.get $xq) (local.get $y) (local.get $r0) (local.get $r1) (local.get $alpha) (local.get $accumulate)))`,
        "",
      ].join("\n"),
    );
    this.q8Bytes = Math.max(this.q8Bytes, blocks * Q8_BLOCK_BYTES);
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
      ...(this.q8Bytes
        ? ['  (global $xq (export "xq") (mut i32) (i32.const 0)) ;; this instance\'s q8 scratch']
        : []),
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
