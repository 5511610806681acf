// F16 (ggml type 1): little-endian IEEE binary16, rounded to nearest even like GGML_FP32_TO_FP16.
import { f16Table, f32ToF16 } from "../half.ts";
import { assertFinite, assertShapes } from "../numeric.ts";
import type { QuantScheme } from "../scheme.ts";
import { mulAdd } from "../wat.ts";

const dot = `{
  let qo = row;
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let j = 0;
  for (; j + 4 <= NB; j += 4, qo += 8) {
    s0 += f16[u8[qo] | (u8[qo + 1] << 8)] * x[xo + j];
    s1 += f16[u8[qo + 2] | (u8[qo + 3] << 8)] * x[xo + j + 1];
    s2 += f16[u8[qo + 4] | (u8[qo + 5] << 8)] * x[xo + j + 2];
    s3 += f16[u8[qo + 6] | (u8[qo + 7] << 8)] * x[xo + j + 3];
  }
  for (; j < NB; j++, qo += 2) s0 += f16[u8[qo] | (u8[qo + 1] << 8)] * x[xo + j];
  acc += s0 + s1 + s2 + s3;
}`;

export const f16: QuantScheme = {
  name: "f16",
  ggmlType: 1,
  blockSize: 1,
  blockBytes: 2,
  description: "16-bit IEEE half float, round to nearest even (16 bits/weight)",
  encode(src, dst) {
    const n = assertShapes("f16", 1, 2, src.length, dst.length);
    assertFinite("f16", src);
    for (let i = 0; i < n; i++) {
      const h = f32ToF16(src[i]!);
      if ((h & 0x7fff) === 0x7c00) {
        throw new Error(`f16: value ${src[i]} at element ${i} is outside the f16 range (±65504)`);
      }
      dst[2 * i] = h & 0xff;
      dst[2 * i + 1] = h >>> 8;
    }
  },
  decode(src, dst) {
    for (let i = 0; i < dst.length; i++) dst[i] = f16Table[src[2 * i]! | (src[2 * i + 1]! << 8)]!;
  },
  cpu: { dot },
  wasm: {
    step: 8,
    bytes: 16,
    // Exact for every finite half: its bits shifted into an f32's place, then scaled by 2^112 (the
    // difference of the exponent biases), which also renormalizes subnormals.
    dot: [
      "(local.set $v2 (v128.load align=2 (local.get $w)))",
      ...(["low", "high"] as const).map((h, k) =>
        mulAdd(
          `(v128.or (f32x4.mul (i32x4.shl (v128.and (local.tee $v0 (i32x4.extend_${h}_i16x8_u (local.get $v2))) (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff)) (i32.const 13)) (v128.const f32x4 0x1p112 0x1p112 0x1p112 0x1p112)) (i32x4.shl (v128.and (local.get $v0) (v128.const i32x4 0x8000 0x8000 0x8000 0x8000)) (i32.const 16)))`,
          16 * k,
        ),
      ),
    ].join("\n"),
  },
  wgsl: {
    dot: `acc += $f16(base) * $x(xi);`,
  },
};
