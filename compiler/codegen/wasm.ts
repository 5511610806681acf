// The WebAssembly half of a compiled model: one SIMD matrix-vector kernel per (scheme, row length)
// the model uses, each with the scheme's `wasm.dot` piece inlined into a loop whose trip counts are
// constants. Written as WAT from a handlebars template (readable, diffable in `model.ts`), assembled by
// wabt at compile time; the bytes travel inside the generated module, so running needs no assembler.
// The kernels read and write one shared memory that the runtime owns (runtime/heap.ts).
import { readFileSync } from "node:fs";
import Handlebars from "handlebars";
import wabtInit from "wabt";
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

export class WasmKernels {
  private readonly funcs = new Map<string, string>();

  /** The export name of y = W·x for rows of `cols` elements in `scheme`, or undefined when the scheme has
   * no WebAssembly piece (or its step does not divide the row): the TypeScript kernel runs instead. */
  matvec(scheme: string, cols: number): string | undefined {
    const s = getScheme(scheme);
    if (!s.wasm || cols % s.wasm.step !== 0) return undefined;
    const name = `mv_${scheme}_${cols}`;
    if (!this.funcs.has(name)) {
      const steps = cols / s.wasm.step;
      this.funcs.set(
        name,
        matvec({
          name,
          doc: `rows of ${cols} ${scheme} weights`,
          steps,
          bytes: s.wasm.bytes,
          xBytes: s.wasm.step * 4,
          rowBytes: steps * s.wasm.bytes,
          dot: s.wasm.dot,
        }),
      );
    }
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
