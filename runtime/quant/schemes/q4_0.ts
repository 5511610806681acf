// Q4_0 (ggml type 2), block_q4_0: f16 d, qs[16] (18 bytes). Element j < 16 is the low nibble of qs[j],
// element j + 16 its high nibble; w = d·(q − 8).
import { readF16, writeF16 } from "../half.ts";
import { assertFinite, assertShapes } from "../numeric.ts";
import type { QuantScheme } from "../scheme.ts";
import {
  bytesAt,
  dotRuns,
  field,
  halfAt,
  i8s,
  nibbleRows8,
  q8Offset,
  q8Runs,
  q8ScaleInto,
  scaleInto,
} from "../wat.ts";

const f = Math.fround;
const QK = 32;
const BYTES = 18;

const dot = `{
  let qo = row;
  let qx = xo;
  for (let qb = 0; qb < NB; qb++, qo += 18, qx += 32) {
    const q = qo + 2;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    for (let j = 0; j < 16; j += 2) {
      const b0 = u8[q + j];
      const b1 = u8[q + j + 1];
      s0 += ((b0 & 15) - 8) * x[qx + j];
      s1 += ((b1 & 15) - 8) * x[qx + j + 1];
      s2 += ((b0 >> 4) - 8) * x[qx + j + 16];
      s3 += ((b1 >> 4) - 8) * x[qx + j + 17];
    }
    acc += f16[u8[qo] | (u8[qo + 1] << 8)] * (s0 + s1 + s2 + s3);
  }
}`;

export const q4_0: QuantScheme = {
  name: "q4_0",
  ggmlType: 2,
  blockSize: QK,
  blockBytes: BYTES,
  description: "4-bit symmetric, blocks of 32 with an f16 scale (4.5 bits/weight)",
  // quantize_row_q4_0_ref
  encode(src, dst) {
    const nb = assertShapes("q4_0", QK, BYTES, src.length, dst.length);
    assertFinite("q4_0", src);
    for (let i = 0; i < nb; i++) {
      const xo = i * QK;
      const o = i * BYTES;
      let amax = 0;
      let max = 0;
      for (let j = 0; j < QK; j++) {
        const v = src[xo + j]!;
        if (amax < Math.abs(v)) {
          amax = Math.abs(v);
          max = v;
        }
      }
      const d = f(max / -8);
      const id = d ? f(1 / d) : 0;
      writeF16(dst, o, d);
      for (let j = 0; j < QK / 2; j++) {
        const x0 = f(src[xo + j]! * id);
        const x1 = f(src[xo + QK / 2 + j]! * id);
        const q0 = Math.min(15, Math.trunc(f(x0 + 8.5)));
        const q1 = Math.min(15, Math.trunc(f(x1 + 8.5)));
        dst[o + 2 + j] = q0 | (q1 << 4);
      }
    }
  },
  // dequantize_row_q4_0
  decode(src, dst) {
    const nb = dst.length / QK;
    for (let i = 0; i < nb; i++) {
      const o = i * BYTES;
      const d = readF16(src, o);
      for (let j = 0; j < QK / 2; j++) {
        const b = src[o + 2 + j]!;
        dst[i * QK + j] = ((b & 0x0f) - 8) * d;
        dst[i * QK + j + QK / 2] = ((b >> 4) - 8) * d;
      }
    }
  },
  cpu: { dot },
  wasm: {
    step: 32,
    bytes: 18,
    // Byte j holds element j (low nibble) and element j + 16 (high nibble), each stored as q + 8.
    dot: [
      `(local.set $v2 ${bytesAt(2)})`,
      dotRuns(
        [0, 4].map((from) => `(i8x16.sub ${field("(local.get $v2)", from, 4, 0)} ${i8s(8)})`),
        0,
        "$v3",
      ),
      scaleInto(0),
    ].join("\n"),
    // Against q8_0 activations in integers: Σ q·qx over the stored q (0..15), less 8 · Σ qx. Unsigned
    // weights are what relaxed SIMD's 8-bit products take (compiler/codegen/relax.ts).
    q8: [
      `(local.set $v2 ${bytesAt(2)})`,
      q8Runs(
        [0, 4].map((from) => field("(local.get $v2)", from, 4, 0)),
        "$v3",
        { unsigned: true },
      ),
      q8Offset("$v3", 8),
      q8ScaleInto("$v3", halfAt(0)),
    ].join("\n"),
    rows8: nibbleRows8({ scale: 0, qs: 2, blockBytes: BYTES, offset: 8 }),
  },
  wgsl: {
    q8: true,
    // Against the block's activations quantized to q8_0, as the `q8` piece: integer products, then d_w·d_x.
    dot: `// block_q4_0: f16 d, 16 bytes; byte j holds element j (low nibble) and j + 16 (high), each q + 8.
// Σ (q − 8)·x = Σ q·x − 8·Σ x: the nibbles of a word are four bytes in 0..15, so dot4I8Packed takes them.
var s: i32 = 0;
for (var k = 0u; k < 16u; k += 4u) {
  let w = $u32(base + 2u + k);
  s += dot4I8Packed(w & 0x0f0f0f0fu, $xq4(xi + k)) + dot4I8Packed((w >> 4u) & 0x0f0f0f0fu, $xq4(xi + 16u + k));
}
acc += f32(s - 8 * $xs(xi)) * ($f16(base) * $xd(xi));`,
  },
};
