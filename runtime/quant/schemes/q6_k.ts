// Q6_K (ggml type 14), block_q6_K: ql[128], qh[64], int8 scales[16], f16 d (210 bytes) per 256 weights.
// 16 sub-blocks of 16 with int8 scales; w = d·sc·(q − 32), q of 6 bits. In half h (128 weights) with
// ql = ql[64h..], qh = qh[32h..], for l < 32: weight 128h + l is ql[l] & 15 | (qh[l] & 3) << 4,
// weight +32 is ql[l + 32] & 15 | (qh[l] >> 2 & 3) << 4, +64 is ql[l] >> 4 | (qh[l] >> 4 & 3) << 4,
// +96 is ql[l + 32] >> 4 | (qh[l] >> 6) << 4; the sub-block of weight n is ⌊n/16⌋.
import { readF16, writeF16 } from "../half.ts";
import { GROUP_MAX_EPS, makeQxQuants } from "../kquant-fit.ts";
import { assertFinite, assertShapes, nearestInt } from "../numeric.ts";
import type { QuantScheme } from "../scheme.ts";
import { byteAt, bytesAt, field, G, H, i8s, quadsOf16, quadsOf16Q8, wAddr } from "../wat.ts";

const f = Math.fround;
const QK = 256;
const BYTES = 210;

const dot = `{
  let qo = row;
  let qx = xo;
  for (let qb = 0; qb < NB; qb++, qo += 210, qx += 256) {
    let sq = 0;
    for (let h = 0; h < 2; h++) {
      const ql = qo + 64 * h;
      const qh = qo + 128 + 32 * h;
      const sc = qo + 192 + 8 * h;
      const xs = qx + 128 * h;
      for (let g = 0; g < 2; g++) {
        let a1 = 0;
        let a2 = 0;
        let a3 = 0;
        let a4 = 0;
        for (let l = 16 * g; l < 16 * g + 16; l++) {
          const lo = u8[ql + l];
          const hi = u8[ql + 32 + l];
          const hb = u8[qh + l];
          a1 += (((lo & 15) | ((hb & 3) << 4)) - 32) * x[xs + l];
          a2 += (((hi & 15) | ((hb & 12) << 2)) - 32) * x[xs + 32 + l];
          a3 += (((lo >> 4) | (hb & 48)) - 32) * x[xs + 64 + l];
          a4 += (((hi >> 4) | ((hb >> 2) & 48)) - 32) * x[xs + 96 + l];
        }
        sq += i8[sc + g] * a1 + i8[sc + g + 2] * a2 + i8[sc + g + 4] * a3 + i8[sc + g + 6] * a4;
      }
    }
    acc += f16[u8[qo + 208] | (u8[qo + 209] << 8)] * sq;
  }
}`;

// The WebAssembly pieces, per (h, g) of the loop: ql, ql + 32 and qh's 16 bytes in $v2, $v3, $v4; sub-block k's
// 6-bit q (0..63) and its int8 scale.
const Q6_PREPARE = [
  bytesAt(0, wAddr([H, 64], [G, 16])),
  bytesAt(32, wAddr([H, 64], [G, 16])),
  bytesAt(128, wAddr([H, 32], [G, 16])),
]
  .map((b, n) => `(local.set $v${2 + n} ${b})`)
  .join("\n");
const q6 = (k: number) =>
  `(v128.or ${field(`(local.get $v${2 + (k % 2)})`, 4 * (k >> 1), 4, 0)} ${field("(local.get $v4)", 2 * k, 2, 4)})`;
const q6Scale = (k: number) => byteAt(192 + 2 * k, true, wAddr([H, 8], [G, 1]));

const L = new Int8Array(QK);
const scales = new Float32Array(QK / 16);

export const q6_k: QuantScheme = {
  name: "q6_k",
  ggmlType: 14,
  blockSize: QK,
  blockBytes: BYTES,
  description: "6-bit k-quant: 256-weight super-blocks, 16 sub-blocks with int8 scales (6.5625 bits/weight)",
  // quantize_row_q6_K_ref
  encode(src, dst) {
    const nb = assertShapes("q6_k", QK, BYTES, src.length, dst.length);
    assertFinite("q6_k", src);
    for (let i = 0; i < nb; i++) {
      const xo = i * QK;
      const o = i * BYTES;
      let maxScale = 0;
      let maxAbsScale = 0;
      for (let ib = 0; ib < QK / 16; ib++) {
        const scale = makeQxQuants(16, 32, src, xo + 16 * ib, L, 16 * ib);
        scales[ib] = scale;
        if (Math.abs(scale) > maxAbsScale) {
          maxAbsScale = Math.abs(scale);
          maxScale = scale;
        }
      }
      dst.fill(0, o, o + BYTES);
      if (maxAbsScale < GROUP_MAX_EPS) continue;
      const iscale = f(-128 / maxScale);
      const dAll = writeF16(dst, o + 208, f(1 / iscale));
      for (let ib = 0; ib < QK / 16; ib++)
        dst[o + 192 + ib] = Math.min(127, nearestInt(f(iscale * scales[ib]!)));
      for (let j = 0; j < QK / 16; j++) {
        const d = f(dAll * ((dst[o + 192 + j]! << 24) >> 24));
        if (!d) continue;
        for (let ii = 0; ii < 16; ii++) {
          const l = nearestInt(f(src[xo + 16 * j + ii]! / d));
          L[16 * j + ii] = Math.max(-32, Math.min(31, l)) + 32;
        }
      }
      for (let h = 0; h < 2; h++) {
        const ql = o + 64 * h;
        const qh = o + 128 + 32 * h;
        const n = 128 * h;
        for (let l = 0; l < 32; l++) {
          const q1 = L[n + l]!;
          const q2 = L[n + l + 32]!;
          const q3 = L[n + l + 64]!;
          const q4 = L[n + l + 96]!;
          dst[ql + l] = (q1 & 0xf) | ((q3 & 0xf) << 4);
          dst[ql + l + 32] = (q2 & 0xf) | ((q4 & 0xf) << 4);
          dst[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
        }
      }
    }
  },
  // dequantize_row_q6_K
  decode(src, dst) {
    const nb = dst.length / QK;
    for (let i = 0; i < nb; i++) {
      const o = i * BYTES;
      const d = readF16(src, o + 208);
      for (let h = 0; h < 2; h++) {
        const ql = o + 64 * h;
        const qh = o + 128 + 32 * h;
        const sc = o + 192 + 8 * h;
        const y = i * QK + 128 * h;
        for (let l = 0; l < 32; l++) {
          const is = l >> 4;
          const lo = src[ql + l]!;
          const hi = src[ql + l + 32]!;
          const hb = src[qh + l]!;
          const q1 = ((lo & 0xf) | ((hb & 3) << 4)) - 32;
          const q2 = ((hi & 0xf) | (((hb >> 2) & 3) << 4)) - 32;
          const q3 = ((lo >> 4) | (((hb >> 4) & 3) << 4)) - 32;
          const q4 = ((hi >> 4) | (((hb >> 6) & 3) << 4)) - 32;
          dst[y + l] = f(d * ((src[sc + is]! << 24) >> 24)) * q1;
          dst[y + l + 32] = f(d * ((src[sc + is + 2]! << 24) >> 24)) * q2;
          dst[y + l + 64] = f(d * ((src[sc + is + 4]! << 24) >> 24)) * q3;
          dst[y + l + 96] = f(d * ((src[sc + is + 6]! << 24) >> 24)) * q4;
        }
      }
    }
  },
  cpu: { dot },
  wasm: {
    step: 256,
    bytes: 210,
    // Per (h, g): 16 bytes of ql, of ql + 32 and of qh hold the four sub-blocks; each minus 32, scaled by its int8.
    dot: quadsOf16({
      d: 208,
      prepare: Q6_PREPARE,
      sub: (k) => ({ runs: [`(i8x16.sub ${q6(k)} ${i8s(32)})`], scale: q6Scale(k), signedScale: true }),
    }),
    // The same 6-bit q against int8 activations; the 32 comes off once per block, through the sums.
    q8: quadsOf16Q8({
      d: 208,
      prepare: Q6_PREPARE,
      sub: (k) => ({ run: q6(k), scale: q6Scale(k) }),
      offset: {
        times: 32,
        factors: ["low", "high"].map((hl) => `(i16x8.extend_${hl}_i8x16_s ${bytesAt(192)})`) as [
          string,
          string,
        ],
      },
    }),
  },
  wgsl: {
    dot: `// block_q6_K: ql[128], qh[64], int8 scales[16], f16 d; w = d·sc·(q − 32), q of 6 bits.
let d = $f16(base + 208u);
for (var h = 0u; h < 2u; h++) {
  let ql = base + 64u * h;
  let qh = base + 128u + 32u * h;
  let sc = base + 192u + 8u * h;
  let y = xi + 128u * h;
  for (var l = 0u; l < 32u; l++) {
    let is = l >> 4u;
    let lo = $u8(ql + l);
    let hi = $u8(ql + l + 32u);
    let hb = $u8(qh + l);
    let q1 = i32((lo & 15u) | ((hb & 3u) << 4u)) - 32;
    let q2 = i32((hi & 15u) | (((hb >> 2u) & 3u) << 4u)) - 32;
    let q3 = i32((lo >> 4u) | (((hb >> 4u) & 3u) << 4u)) - 32;
    let q4 = i32((hi >> 4u) | ((hb >> 6u) << 4u)) - 32;
    acc += d * (f32($i8(sc + is) * q1) * $x(y + l) + f32($i8(sc + is + 2u) * q2) * $x(y + l + 32u)
      + f32($i8(sc + is + 4u) * q3) * $x(y + l + 64u) + f32($i8(sc + is + 6u) * q4) * $x(y + l + 96u));
  }
}`,
  },
};
