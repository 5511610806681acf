// Q4_1 (ggml type 3), block_q4_1: f16 d, f16 m, qs[16] (20 bytes). Nibbles as q4_0; w = d·q + m.
import { readF16, writeF16 } from "../half.ts";
import { assertFinite, assertShapes } from "../numeric.ts";
import type { QuantScheme } from "../scheme.ts";
import {
  addScaled,
  bytesAt,
  dotRuns,
  field,
  halfAt,
  nibbleRows8,
  q8Runs,
  q8ScaleInto,
  q8SumX,
} from "../wat.ts";

const f = Math.fround;
const QK = 32;
const BYTES = 20;

const dot = `{
  let qo = row;
  let qx = xo;
  for (let qb = 0; qb < NB; qb++, qo += 20, qx += 32) {
    const q = qo + 4;
    let s0 = 0;
    let s1 = 0;
    let t0 = 0;
    let t1 = 0;
    for (let j = 0; j < 16; j++) {
      const b = u8[q + j];
      const xa = x[qx + j];
      const xb = x[qx + j + 16];
      s0 += (b & 15) * xa;
      s1 += (b >> 4) * xb;
      t0 += xa;
      t1 += xb;
    }
    acc += f16[u8[qo] | (u8[qo + 1] << 8)] * (s0 + s1) + f16[u8[qo + 2] | (u8[qo + 3] << 8)] * (t0 + t1);
  }
}`;

export const q4_1: QuantScheme = {
  name: "q4_1",
  ggmlType: 3,
  blockSize: QK,
  blockBytes: BYTES,
  description: "4-bit asymmetric, blocks of 32 with f16 scale and min (5 bits/weight)",
  // quantize_row_q4_1_ref
  encode(src, dst) {
    const nb = assertShapes("q4_1", QK, BYTES, src.length, dst.length);
    assertFinite("q4_1", src);
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
      const d = f(f(max - min) / 15);
      const id = d ? f(1 / d) : 0;
      writeF16(dst, o, d);
      writeF16(dst, o + 2, min);
      for (let j = 0; j < QK / 2; j++) {
        const x0 = f(f(src[xo + j]! - min) * id);
        const x1 = f(f(src[xo + QK / 2 + j]! - min) * id);
        const q0 = Math.min(15, Math.trunc(f(x0 + 0.5)));
        const q1 = Math.min(15, Math.trunc(f(x1 + 0.5)));
        dst[o + 4 + j] = q0 | (q1 << 4);
      }
    }
  },
  // dequantize_row_q4_1
  decode(src, dst) {
    const nb = dst.length / QK;
    for (let i = 0; i < nb; i++) {
      const o = i * BYTES;
      const d = readF16(src, o);
      const m = readF16(src, o + 2);
      for (let j = 0; j < QK / 2; j++) {
        const b = src[o + 4 + j]!;
        dst[i * QK + j] = f((b & 0x0f) * d) + m;
        dst[i * QK + j + QK / 2] = f((b >> 4) * d) + m;
      }
    }
  },
  cpu: { dot },
  wasm: {
    step: 32,
    bytes: 20,
    // d·Σ q·x + m·Σ x: byte j holds q of element j (low nibble) and of element j + 16 (high nibble).
    dot: [
      `(local.set $v2 ${bytesAt(4)})`,
      dotRuns(
        [0, 4].map((from) => field("(local.get $v2)", from, 4, 0)),
        0,
        "$v3",
        { sumX: "$v4", unsigned: true },
      ),
      addScaled("$v3", halfAt(0)),
      addScaled("$v4", halfAt(2)),
    ].join("\n"),
    // Against q8_0 activations: d·dx·Σ q·qx + m·dx·Σ qx, both sums in integers.
    q8: [
      `(local.set $v2 ${bytesAt(4)})`,
      q8Runs(
        [0, 4].map((from) => field("(local.get $v2)", from, 4, 0)),
        "$v3",
        { unsigned: true },
      ),
      q8SumX("$v4"),
      q8ScaleInto("$v3", halfAt(0)),
      q8ScaleInto("$v4", halfAt(2)),
    ].join("\n"),
    rows8: nibbleRows8({ scale: 0, min: 2, qs: 4, blockBytes: 20, offset: 0 }),
  },
  wgsl: {
    dot: `// block_q4_1: f16 d, f16 m, 16 bytes of nibbles as q4_0; w = d·q + m.
var s: f32 = 0.0;
var t: f32 = 0.0;
for (var j = 0u; j < 16u; j++) {
  let q = $u8(base + 4u + j);
  let xa = $x(xi + j);
  let xb = $x(xi + j + 16u);
  s += f32(q & 15u) * xa + f32(q >> 4u) * xb;
  t += xa + xb;
}
acc += $f16(base) * s + $f16(base + 2u) * t;`,
  },
};
