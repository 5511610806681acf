// BF16 (ggml type 30): the top 16 bits of an f32, rounded to nearest even like GGML_FP32_TO_BF16.
import { bf16ToF32, f32ToBf16 } from "../half.ts";
import { assertFinite, assertShapes } from "../numeric.ts";
import type { QuantScheme } from "../scheme.ts";
import { mulAdd } from "../wat.ts";

// A bf16 (8 exponent, 7 mantissa bits) with 2⁻¹⁴ ≤ |w| < 2¹⁶ is exactly a half: one f16 table lookup.
// With 2⁻⁴⁴ ≤ |w| < 2⁻¹⁴ it is a half times 2⁻³⁰ (that power is applied once, to its own partial sum).
// Anything else (zero, tiny, huge, Inf, NaN) is rebuilt from its bits.
const dot = `{
  let qo = row;
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  for (let j = 0; j < NB; j++, qo += 2) {
    const h = u8[qo] | (u8[qo + 1] << 8);
    const e = (h >> 7) & 255;
    if (e > 112 && e < 143) {
      s0 += f16[(h & 0x8000) | ((e - 112) << 10) | ((h & 127) << 3)] * x[xo + j];
    } else if (e > 82 && e < 113) {
      s1 += f16[(h & 0x8000) | ((e - 82) << 10) | ((h & 127) << 3)] * x[xo + j];
    } else {
      const m = h & 127;
      let w = e === 255 ? (m ? NaN : Infinity) : e === 0 ? m * 9.183549615799121e-41 : (m + 128) * Math.pow(2, e - 134);
      if (h & 0x8000) w = -w;
      s2 += w * x[xo + j];
    }
  }
  acc += s0 + s1 * 9.313225746154785e-10 + s2;
}`;

export const bf16: QuantScheme = {
  name: "bf16",
  ggmlType: 30,
  blockSize: 1,
  blockBytes: 2,
  description: "bfloat16: f32's exponent with 7 mantissa bits, round to nearest even (16 bits/weight)",
  encode(src, dst) {
    const n = assertShapes("bf16", 1, 2, src.length, dst.length);
    assertFinite("bf16", src);
    for (let i = 0; i < n; i++) {
      const h = f32ToBf16(src[i]!);
      if ((h & 0x7fff) === 0x7f80) {
        throw new Error(`bf16: value ${src[i]} at element ${i} rounds to infinity in bf16`);
      }
      dst[2 * i] = h & 0xff;
      dst[2 * i + 1] = h >>> 8;
    }
  },
  decode(src, dst) {
    for (let i = 0; i < dst.length; i++) dst[i] = bf16ToF32(src[2 * i]! | (src[2 * i + 1]! << 8));
  },
  cpu: { dot },
  wasm: {
    step: 8,
    bytes: 16,
    // A bfloat16 is the top half of an f32.
    dot: [
      "(local.set $v2 (v128.load align=2 (local.get $w)))",
      ...(["low", "high"] as const).map((h, k) =>
        mulAdd(`(i32x4.shl (i32x4.extend_${h}_i16x8_u (local.get $v2)) (i32.const 16))`, 16 * k),
      ),
    ].join("\n"),
  },
  wgsl: {
    dot: `acc += bitcast<f32>($u16(base) << 16u) * $x(xi);`,
  },
};
