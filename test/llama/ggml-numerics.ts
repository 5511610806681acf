// llama.cpp's CPU matmul arithmetic, as moec quantization schemes registered by the test (the stock
// schemes are left alone). ggml does not multiply a weight row by the activations as they are: it
// first converts the activation vector to the weight type's `vec_dot_type` and dots in that form.
//
//   weights q8_0, q4_0 → activations quantized to q8_0 per block of 32 (quantize_row_q8_0, x86:
//                        amax over the block, d = amax/127 stored as f16, q = round-half-even(x·127/amax)),
//                        then Σ_blocks f16(d_w)·f16(d_x)·Σ q_w·q_x, the inner sum in integers;
//   weights f16        → activations rounded to f16 (F16C, round to nearest even), then Σ w·x in f32.
//
// moec's stock kernels dot the f32 activations directly (more precise). These variants exist so a
// test can show that, with this one difference removed, moec and llama.cpp agree to float rounding
// (test/llama/compare.test.ts). What remains are rare positions where a one-ulp difference in an f32
// op (RMSNorm, softmax, RoPE angles) lands an activation on the other side of a q8_0 rounding step.
import type { CheckedModel, CheckedQuant } from "../../compiler/lang/check.ts";
import { findScheme, getScheme, registerScheme } from "../../runtime/quant/index.ts";
import type { QuantScheme } from "../../runtime/quant/scheme.ts";

/** x rounded to f16 (nearest even), in the normal range by splitting, below it on the 2⁻²⁴ grid. */
const toHalf = (v: string, out: string) => `
      let ${out};
      if (Math.abs(${v}) >= 6.103515625e-5) {
        const c = ${v} * 4398046511105;
        ${out} = c - (c - ${v});
      } else {
        ${out} = Math.round(${v} * 16777216) / 16777216;
      }`;

/**
 * A dot snippet that quantizes each block of x to q8_0 (scale `dx`, values `r`) and sums the integer
 * products. It requantizes x for every row, which a test can afford; a kernel would do it once per input.
 */
function q8Dot(blockBytes: number, weightAt: (j: string) => string): string {
  return `{
  let qo = row;
  let qx = xo;
  for (let qb = 0; qb < NB; qb++, qo += ${blockBytes}, qx += 32) {
    const q = qo + 2;
    let amax = 0;
    for (let j = 0; j < 32; j++) {
      const a = Math.abs(x[qx + j]);
      if (a > amax) amax = a;
    }
    const d = Math.fround(amax / 127);
    ${toHalf("d", "dx")}
    const id = amax === 0 ? 0 : Math.fround(127 / amax);
    let s = 0;
    for (let j = 0; j < 32; j++) {
      const v = Math.fround(x[qx + j] * id);
      let r = Math.round(v);
      if (r - v === 0.5 && (r & 1) !== 0) r -= 1;
      s += ${weightAt("j")} * r;
    }
    acc += Math.fround(f16[u8[qo] | (u8[qo + 1] << 8)] * dx) * s;
  }
}`;
}

const f16Dot = `{
  let qo = row;
  for (let j = 0; j < NB; j++, qo += 2) {
    const v = x[xo + j];
    ${toHalf("v", "h")}
    acc += f16[u8[qo] | (u8[qo + 1] << 8)] * h;
  }
}`;

const DOTS: Record<string, string> = {
  q8_0: q8Dot(34, (j) => `i8[q + ${j}]`),
  q4_0: q8Dot(18, (j) => `(${j} < 16 ? (u8[q + ${j}] & 15) - 8 : (u8[q + ${j} - 16] >> 4) - 8)`),
  f16: f16Dot,
};

/** The name of the ggml-arithmetic variant of a stock scheme ("q8_0" → "q8_0_ggml"). */
export const ggmlVariant = (scheme: string): string => (scheme in DOTS ? `${scheme}_ggml` : scheme);

/** Registers q8_0_ggml, q4_0_ggml and f16_ggml once: the stock layouts with ggml's dot arithmetic. */
export function registerGgmlVariants(): void {
  for (const [name, dot] of Object.entries(DOTS)) {
    if (findScheme(`${name}_ggml`)) continue;
    const stock = getScheme(name);
    const variant: QuantScheme = {
      name: `${name}_ggml`,
      blockSize: stock.blockSize,
      blockBytes: stock.blockBytes,
      description: `${stock.description}, dotted the way ggml's CPU backend does`,
      encode: (src, dst) => stock.encode(src, dst),
      decode: (src, dst) => stock.decode(src, dst),
      cpu: { dot },
    };
    registerScheme(variant);
  }
}

/** A quantization that maps every weight's scheme through `map` (used with `ggmlVariant`). */
export function mappedQuant(
  base: CheckedQuant,
  model: CheckedModel,
  map: (s: string) => string,
): CheckedQuant {
  return {
    ...base,
    name: `${base.name}_mapped`,
    model: model.name,
    schemeFor: (k, l) => map(base.schemeFor(k, l)),
  };
}
