// Q5_1 (ggml type 7), block_q5_1: f16 d, f16 m, qh[4], qs[16] (24 bytes). Bits as q5_0; w = d·q + m.
import { readF16, writeF16 } from "../half.ts";
import { assertFinite, assertShapes } from "../numeric.ts";
import type { QuantScheme } from "../scheme.ts";
import {
  addScaled,
  bitBytes,
  bytesAt,
  dotRuns,
  field,
  halfAt,
  i8s,
  nibbleRows8,
  q8Runs,
  q8ScaleInto,
  q8SumX,
} from "../wat.ts";

const f = Math.fround;
const QK = 32;
const BYTES = 24;

const dot = `{
  let qo = row;
  let qx = xo;
  for (let qb = 0; qb < NB; qb++, qo += 24, qx += 32) {
    const qh = u8[qo + 4] | (u8[qo + 5] << 8) | (u8[qo + 6] << 16) | (u8[qo + 7] << 24);
    const q = qo + 8;
    let s0 = 0;
    let s1 = 0;
    let t0 = 0;
    let t1 = 0;
    for (let j = 0; j < 16; j++) {
      const b = u8[q + j];
      const xa = x[qx + j];
      const xb = x[qx + j + 16];
      s0 += ((b & 15) | (((qh >> j) & 1) << 4)) * xa;
      s1 += ((b >> 4) | (((qh >> (j + 16)) & 1) << 4)) * xb;
      t0 += xa;
      t1 += xb;
    }
    acc += f16[u8[qo] | (u8[qo + 1] << 8)] * (s0 + s1) + f16[u8[qo + 2] | (u8[qo + 3] << 8)] * (t0 + t1);
  }
}`;

// The WebAssembly pieces: qh splatted in $v4, qs in $v2; elements j and j + 16 (runs 0 and 1) as q (0..31).
const Q5_LOAD = [
  "(local.set $v4 (v128.load32_splat offset=4 align=1 (local.get $w)))",
  `(local.set $v2 ${bytesAt(8)})`,
].join("\n");
const Q5_RUNS = ([0, 1] as const).map(
  (h) =>
    `(v128.or ${field("(local.get $v2)", 4 * h, 4, 0)} (v128.and ${i8s(16)} ${bitBytes("(local.get $v4)", h)}))`,
);

export const q5_1: QuantScheme = {
  name: "q5_1",
  ggmlType: 7,
  blockSize: QK,
  blockBytes: BYTES,
  description: "5-bit asymmetric, blocks of 32 with f16 scale and min (6 bits/weight)",
  // quantize_row_q5_1_ref
  encode(src, dst) {
    const nb = assertShapes("q5_1", QK, BYTES, src.length, dst.length);
    assertFinite("q5_1", src);
    for (let i = 0; i < nb; i++) {
      const xo = i * QK;
      const o = i * BYTES;
      let min = Number.POSITIVE_INFINITY;
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < QK; j++) {
        const v = src[xo + j]!;
        if (v < min) min = v;
        if (v > max) max = v;
      }
      const d = f(f(max - min) / 31);
      const id = d ? f(1 / d) : 0;
      writeF16(dst, o, d);
      writeF16(dst, o + 2, min);
      let qh = 0;
      for (let j = 0; j < QK / 2; j++) {
        const x0 = f(f(src[xo + j]! - min) * id);
        const x1 = f(f(src[xo + QK / 2 + j]! - min) * id);
        const q0 = Math.trunc(f(x0 + 0.5)) & 0xff;
        const q1 = Math.trunc(f(x1 + 0.5)) & 0xff;
        dst[o + 8 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
        qh |= ((q0 & 0x10) >> 4) << j;
        qh |= ((q1 & 0x10) >> 4) << (j + QK / 2);
      }
      dst[o + 4] = qh & 0xff;
      dst[o + 5] = (qh >>> 8) & 0xff;
      dst[o + 6] = (qh >>> 16) & 0xff;
      dst[o + 7] = qh >>> 24;
    }
  },
  // dequantize_row_q5_1
  decode(src, dst) {
    const nb = dst.length / QK;
    for (let i = 0; i < nb; i++) {
      const o = i * BYTES;
      const d = readF16(src, o);
      const m = readF16(src, o + 2);
      const qh = src[o + 4]! | (src[o + 5]! << 8) | (src[o + 6]! << 16) | (src[o + 7]! << 24);
      for (let j = 0; j < QK / 2; j++) {
        const b = src[o + 8 + j]!;
        const h0 = ((qh >>> j) << 4) & 0x10;
        const h1 = (qh >>> (j + 12)) & 0x10;
        dst[i * QK + j] = f(((b & 0x0f) | h0) * d) + m;
        dst[i * QK + j + QK / 2] = f(((b >> 4) | h1) * d) + m;
      }
    }
  },
  cpu: { dot },
  wasm: {
    step: 32,
    bytes: 24,
    // d·Σ q·x + m·Σ x, q the nibble with 16 added where its high bit is set.
    dot: [
      Q5_LOAD,
      dotRuns(Q5_RUNS, 0, "$v3", { sumX: "$v5", unsigned: true }),
      addScaled("$v3", halfAt(0)),
      addScaled("$v5", halfAt(2)),
    ].join("\n"),
    // Against q8_0 activations: d·dx·Σ q·qx + m·dx·Σ qx, both sums in integers (llama.cpp's q8_1 carries
    // dx·Σ qx with the block; here the kernel adds the integers up).
    q8: [
      Q5_LOAD,
      q8Runs(Q5_RUNS, "$v3", { unsigned: true }),
      q8SumX("$v5"),
      q8ScaleInto("$v3", halfAt(0)),
      q8ScaleInto("$v5", halfAt(2)),
    ].join("\n"),
    rows8: nibbleRows8({ scale: 0, min: 2, qh: 4, qs: 8, blockBytes: 24, offset: 0 }),
  },
  wgsl: {
    dot: `// block_q5_1: f16 d, f16 m, qh (u32), 16 bytes of nibbles; w = d·q + m.
let qh = $u32(base + 4u);
var s: f32 = 0.0;
var t: f32 = 0.0;
for (var j = 0u; j < 16u; j++) {
  let b = $u8(base + 8u + j);
  let xa = $x(xi + j);
  let xb = $x(xi + j + 16u);
  s += f32((b & 15u) | (((qh >> j) & 1u) << 4u)) * xa + f32((b >> 4u) | (((qh >> (j + 16u)) & 1u) << 4u)) * xb;
  t += xa + xb;
}
acc += $f16(base) * s + $f16(base + 2u) * t;`,
  },
};
