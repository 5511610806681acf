// Q5_0 (ggml type 6), block_q5_0: f16 d, qh[4], qs[16] (22 bytes). Element j < 16: low nibble of qs[j]
// with bit j of qh (a little-endian u32) on top; element j + 16: high nibble with bit j + 16. w = d·(q − 16).
import { readF16, writeF16 } from "../half.ts";
import { assertFinite, assertShapes } from "../numeric.ts";
import type { QuantScheme } from "../scheme.ts";
import {
  bitBytes,
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
const BYTES = 22;

const dot = `{
  let qo = row;
  let qx = xo;
  for (let qb = 0; qb < NB; qb++, qo += 22, qx += 32) {
    const qh = u8[qo + 2] | (u8[qo + 3] << 8) | (u8[qo + 4] << 16) | (u8[qo + 5] << 24);
    const q = qo + 6;
    let s0 = 0;
    let s1 = 0;
    for (let j = 0; j < 16; j++) {
      const b = u8[q + j];
      s0 += (((b & 15) | (((qh >> j) & 1) << 4)) - 16) * x[qx + j];
      s1 += (((b >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16) * x[qx + j + 16];
    }
    acc += f16[u8[qo] | (u8[qo + 1] << 8)] * (s0 + s1);
  }
}`;

// The WebAssembly pieces: qh splatted in $v4, qs in $v2; elements j and j + 16 (runs 0 and 1) as q − 16.
const Q5_LOAD = [
  "(local.set $v4 (v128.load32_splat offset=2 align=1 (local.get $w)))",
  `(local.set $v2 ${bytesAt(6)})`,
].join("\n");
const Q5_RUNS = ([0, 1] as const).map(
  (h) =>
    `(i8x16.sub ${field("(local.get $v2)", 4 * h, 4, 0)} (v128.andnot ${i8s(16)} ${bitBytes("(local.get $v4)", h)}))`,
);
/** The stored q (0..31), before q5_0's − 16. */
const Q5_STORED = ([0, 1] as const).map(
  (h) =>
    `(v128.or ${field("(local.get $v2)", 4 * h, 4, 0)} (v128.and ${i8s(16)} ${bitBytes("(local.get $v4)", h)}))`,
);

export const q5_0: QuantScheme = {
  name: "q5_0",
  ggmlType: 6,
  blockSize: QK,
  blockBytes: BYTES,
  description: "5-bit symmetric, blocks of 32 with an f16 scale (5.5 bits/weight)",
  // quantize_row_q5_0_ref
  encode(src, dst) {
    const nb = assertShapes("q5_0", QK, BYTES, src.length, dst.length);
    assertFinite("q5_0", src);
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
      const d = f(max / -16);
      const id = d ? f(1 / d) : 0;
      writeF16(dst, o, d);
      let qh = 0;
      for (let j = 0; j < QK / 2; j++) {
        const x0 = f(src[xo + j]! * id);
        const x1 = f(src[xo + QK / 2 + j]! * id);
        const q0 = Math.min(31, Math.trunc(f(x0 + 16.5)));
        const q1 = Math.min(31, Math.trunc(f(x1 + 16.5)));
        dst[o + 6 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
        qh |= ((q0 & 0x10) >> 4) << j;
        qh |= ((q1 & 0x10) >> 4) << (j + QK / 2);
      }
      dst[o + 2] = qh & 0xff;
      dst[o + 3] = (qh >>> 8) & 0xff;
      dst[o + 4] = (qh >>> 16) & 0xff;
      dst[o + 5] = qh >>> 24;
    }
  },
  // dequantize_row_q5_0
  decode(src, dst) {
    const nb = dst.length / QK;
    for (let i = 0; i < nb; i++) {
      const o = i * BYTES;
      const d = readF16(src, o);
      const qh = src[o + 2]! | (src[o + 3]! << 8) | (src[o + 4]! << 16) | (src[o + 5]! << 24);
      for (let j = 0; j < QK / 2; j++) {
        const b = src[o + 6 + j]!;
        const h0 = ((qh >>> j) << 4) & 0x10;
        const h1 = (qh >>> (j + 12)) & 0x10;
        dst[i * QK + j] = ((b & 0x0f) - 16 + h0) * d;
        dst[i * QK + j + QK / 2] = ((b >> 4) - 16 + h1) * d;
      }
    }
  },
  cpu: { dot },
  wasm: {
    step: 32,
    bytes: 22,
    // q − 16 = nibble − 16 where the high bit is clear, the nibble itself where it is set.
    dot: [Q5_LOAD, dotRuns(Q5_RUNS, 0, "$v3"), scaleInto(0)].join("\n"),
    // The same q − 16 against q8_0 activations, in integers.
    // Against q8_0 activations in integers: Σ q·qx over the stored q (0..31), less 16 · Σ qx.
    q8: [
      Q5_LOAD,
      q8Runs(Q5_STORED, "$v3", { unsigned: true }),
      q8Offset("$v3", 16),
      q8ScaleInto("$v3", halfAt(0)),
    ].join("\n"),
    rows8: nibbleRows8({ scale: 0, qh: 2, qs: 6, blockBytes: BYTES, offset: 16 }),
  },
  wgsl: {
    dot: `// block_q5_0: f16 d, qh (u32, unaligned), 16 bytes of nibbles; the 5th bit of element j is bit j of qh.
let qh = $u32(base + 2u);
var s: f32 = 0.0;
for (var j = 0u; j < 16u; j++) {
  let b = $u8(base + 6u + j);
  s += (f32((b & 15u) | (((qh >> j) & 1u) << 4u)) - 16.0) * $x(xi + j);
  s += (f32((b >> 4u) | (((qh >> (j + 16u)) & 1u) << 4u)) - 16.0) * $x(xi + j + 16u);
}
acc += $f16(base) * s;`,
  },
};
