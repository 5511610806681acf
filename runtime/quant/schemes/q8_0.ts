// Q8_0 (ggml type 8), block_q8_0: f16 d, int8 qs[32] (34 bytes). w = d·q.
import { readF16, writeF16 } from "../half.ts";
import { assertFinite, assertShapes, roundf } from "../numeric.ts";
import type { QuantScheme } from "../scheme.ts";
import { byteRows8, bytesAt, dotRuns, halfAt, q8Runs, q8ScaleInto, scaleInto } from "../wat.ts";

const f = Math.fround;
const QK = 32;
const BYTES = 34;

const dot = `{
  let qo = row;
  let qx = xo;
  for (let qb = 0; qb < NB; qb++, qo += 34, qx += 32) {
    const q = qo + 2;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    for (let j = 0; j < 32; j += 4) {
      s0 += i8[q + j] * x[qx + j];
      s1 += i8[q + j + 1] * x[qx + j + 1];
      s2 += i8[q + j + 2] * x[qx + j + 2];
      s3 += i8[q + j + 3] * x[qx + j + 3];
    }
    acc += f16[u8[qo] | (u8[qo + 1] << 8)] * (s0 + s1 + s2 + s3);
  }
}`;

export const q8_0: QuantScheme = {
  name: "q8_0",
  ggmlType: 8,
  blockSize: QK,
  blockBytes: BYTES,
  description: "8-bit symmetric, blocks of 32 with an f16 scale (8.5 bits/weight)",
  // quantize_row_q8_0_ref
  encode(src, dst) {
    const nb = assertShapes("q8_0", QK, BYTES, src.length, dst.length);
    assertFinite("q8_0", src);
    for (let i = 0; i < nb; i++) {
      const xo = i * QK;
      const o = i * BYTES;
      let amax = 0;
      for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(src[xo + j]!));
      const d = f(amax / 127);
      const id = d ? f(1 / d) : 0;
      writeF16(dst, o, d);
      for (let j = 0; j < QK; j++) dst[o + 2 + j] = roundf(f(src[xo + j]! * id)) & 0xff;
    }
  },
  // dequantize_row_q8_0
  decode(src, dst) {
    const nb = dst.length / QK;
    const i8 = new Int8Array(src.buffer, src.byteOffset, src.byteLength);
    for (let i = 0; i < nb; i++) {
      const o = i * BYTES;
      const d = readF16(src, o);
      for (let j = 0; j < QK; j++) dst[i * QK + j] = i8[o + 2 + j]! * d;
    }
  },
  cpu: { dot },
  wasm: {
    step: 32,
    bytes: 34,
    // Two runs of 16 int8 weights after the scale, summed per block, then scaled once.
    dot: [dotRuns([bytesAt(2), bytesAt(18)], 0, "$v3"), scaleInto(0)].join("\n"),
    // The same runs against q8_0 activations: int8 × int8, summed exactly in i32.
    q8: [q8Runs([bytesAt(2), bytesAt(18)], "$v3"), q8ScaleInto("$v3", halfAt(0))].join("\n"),
    rows8: byteRows8({ scale: 0, qs: 2, blockBytes: 34 }),
  },
  wgsl: {
    q8: true,
    // Against the block's activations quantized to q8_0, as the `q8` piece: integer products, then d_w·d_x.
    dot: `// block_q8_0: f16 d, 32 signed bytes, four to a word against four activations.
var s: i32 = 0;
for (var k = 0u; k < 32u; k += 4u) {
  s += dot4I8Packed($u32(base + 2u + k), $xq4(xi + k));
}
acc += f32(s) * ($f16(base) * $xd(xi));`,
  },
};
