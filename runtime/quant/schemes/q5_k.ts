// Q5_K (ggml type 13), block_q5_K: f16 d, f16 dmin, scales[12], qh[32], qs[128] (176 bytes) per 256
// weights. 8 sub-blocks of 32 with 6-bit scales and mins (kquant-scales.ts); w = d·sc·q − dmin·m, q of
// 5 bits: weight 64·k + l (l < 32) is the low nibble of qs[32·k + l] plus bit 2k of qh[l] as its 5th bit
// (sub-block 2k); weight 64·k + 32 + l the high nibble plus bit 2k + 1 (sub-block 2k + 1).
import { readF16, writeF16 } from "../half.ts";
import { makeQkx2Quants } from "../kquant-fit.ts";
import { minK4, packScaleMinK4, scaleK4 } from "../kquant-scales.ts";
import { assertFinite, assertShapes, nearestInt } from "../numeric.ts";
import type { QuantScheme } from "../scheme.ts";
import { bytesAt, field, pairsK4, pairsK4Q8 } from "../wat.ts";

const f = Math.fround;
const QK = 256;
const BYTES = 176;

const dot = `{
  let qo = row;
  let qx = xo;
  for (let qb = 0; qb < NB; qb++, qo += 176, qx += 256) {
    const s = qo + 4;
    const qh = qo + 16;
    let sq = 0;
    let sm = 0;
    for (let k = 0; k < 4; k++) {
      const j = 2 * k;
      let sc0;
      let m0;
      let sc1;
      let m1;
      if (k < 2) {
        sc0 = u8[s + j] & 63;
        m0 = u8[s + j + 4] & 63;
        sc1 = u8[s + j + 1] & 63;
        m1 = u8[s + j + 5] & 63;
      } else {
        sc0 = (u8[s + j + 4] & 15) | ((u8[s + j - 4] >> 6) << 4);
        m0 = (u8[s + j + 4] >> 4) | ((u8[s + j] >> 6) << 4);
        sc1 = (u8[s + j + 5] & 15) | ((u8[s + j - 3] >> 6) << 4);
        m1 = (u8[s + j + 5] >> 4) | ((u8[s + j + 1] >> 6) << 4);
      }
      const q = qo + 48 + 32 * k;
      const xs = qx + 64 * k;
      let a0 = 0;
      let a1 = 0;
      let t0 = 0;
      let t1 = 0;
      for (let l = 0; l < 32; l++) {
        const b = u8[q + l];
        const hb = u8[qh + l] >> j;
        const xa = x[xs + l];
        const xb = x[xs + 32 + l];
        a0 += ((b & 15) | ((hb & 1) << 4)) * xa;
        a1 += ((b >> 4) | ((hb & 2) << 3)) * xb;
        t0 += xa;
        t1 += xb;
      }
      sq += sc0 * a0 + sc1 * a1;
      sm += m0 * t0 + m1 * t1;
    }
    acc += f16[u8[qo] | (u8[qo + 1] << 8)] * sq - f16[u8[qo + 2] | (u8[qo + 3] << 8)] * sm;
  }
}`;

// The WebAssembly pieces' fifth bits: bit 2k + s of qh[l] (qh in $v3, $v4, shifted right by 2 per pair).
const fifth = {
  setup: `(local.set $v3 ${bytesAt(16)})\n(local.set $v4 ${bytesAt(32)})`,
  bits: (s: number, r: number) => field(`(local.get $v${3 + r})`, s, 1, 4),
  next: [3, 4].map((v) => `(local.set $v${v} (i8x16.shr_u (local.get $v${v}) (i32.const 2)))`).join("\n"),
};

const L = new Uint8Array(QK);
const Laux = new Uint8Array(32);
const weights = new Float32Array(32);
const mins = new Float32Array(QK / 32);
const scales = new Float32Array(QK / 32);
const RMIN = f(-0.5);
const RDELTA = f(0.1);

export const q5_k: QuantScheme = {
  name: "q5_k",
  ggmlType: 13,
  blockSize: QK,
  blockBytes: BYTES,
  description:
    "5-bit k-quant: 256-weight super-blocks, 8 sub-blocks with 6-bit scales and mins (5.5 bits/weight)",
  // quantize_row_q5_K_ref
  encode(src, dst) {
    const nb = assertShapes("q5_k", QK, BYTES, src.length, dst.length);
    assertFinite("q5_k", src);
    for (let i = 0; i < nb; i++) {
      const xo = i * QK;
      const o = i * BYTES;
      let maxScale = 0;
      let maxMin = 0;
      for (let j = 0; j < QK / 32; j++) {
        let sumX2 = 0;
        for (let l = 0; l < 32; l++) sumX2 = f(sumX2 + f(src[xo + 32 * j + l]! * src[xo + 32 * j + l]!));
        const avX = f(Math.sqrt(f(sumX2 / 32)));
        for (let l = 0; l < 32; l++) weights[l] = avX + Math.abs(src[xo + 32 * j + l]!);
        scales[j] = makeQkx2Quants(
          32,
          31,
          src,
          xo + 32 * j,
          weights,
          L,
          32 * j,
          mins,
          j,
          Laux,
          RMIN,
          RDELTA,
          15,
          false,
        );
        if (scales[j]! > maxScale) maxScale = scales[j]!;
        if (mins[j]! > maxMin) maxMin = mins[j]!;
      }
      const invScale = maxScale > 0 ? f(63 / maxScale) : 0;
      const invMin = maxMin > 0 ? f(63 / maxMin) : 0;
      dst.fill(0, o + 4, o + 48);
      for (let j = 0; j < QK / 32; j++) {
        const ls = Math.min(63, nearestInt(f(invScale * scales[j]!)) & 0xff);
        const lm = Math.min(63, nearestInt(f(invMin * mins[j]!)) & 0xff);
        packScaleMinK4(dst, o + 4, j, ls, lm);
      }
      const dAll = writeF16(dst, o, f(maxScale / 63));
      const dMin = writeF16(dst, o + 2, f(maxMin / 63));
      for (let j = 0; j < QK / 32; j++) {
        const d = f(dAll * scaleK4(dst, o + 4, j));
        if (!d) continue;
        const dm = f(dMin * minK4(dst, o + 4, j));
        for (let ii = 0; ii < 32; ii++) {
          const l = nearestInt(f(f(src[xo + 32 * j + ii]! + dm) / d));
          L[32 * j + ii] = Math.max(0, Math.min(31, l));
        }
      }
      for (let k = 0; k < 4; k++) {
        for (let l = 0; l < 32; l++) {
          let l1 = L[64 * k + l]!;
          let l2 = L[64 * k + 32 + l]!;
          if (l1 > 15) {
            l1 -= 16;
            dst[o + 16 + l] |= 1 << (2 * k);
          }
          if (l2 > 15) {
            l2 -= 16;
            dst[o + 16 + l] |= 2 << (2 * k);
          }
          dst[o + 48 + 32 * k + l] = l1 | (l2 << 4);
        }
      }
    }
  },
  // dequantize_row_q5_K
  decode(src, dst) {
    const nb = dst.length / QK;
    let y = 0;
    for (let i = 0; i < nb; i++) {
      const o = i * BYTES;
      const d = readF16(src, o);
      const min = readF16(src, o + 2);
      for (let k = 0; k < 4; k++) {
        const d1 = f(d * scaleK4(src, o + 4, 2 * k));
        const m1 = f(min * minK4(src, o + 4, 2 * k));
        const d2 = f(d * scaleK4(src, o + 4, 2 * k + 1));
        const m2 = f(min * minK4(src, o + 4, 2 * k + 1));
        const u1 = 1 << (2 * k);
        const u2 = 2 << (2 * k);
        const q = o + 48 + 32 * k;
        for (let l = 0; l < 32; l++)
          dst[y++] = f(d1 * ((src[q + l]! & 0xf) + (src[o + 16 + l]! & u1 ? 16 : 0))) - m1;
        for (let l = 0; l < 32; l++)
          dst[y++] = f(d2 * ((src[q + l]! >> 4) + (src[o + 16 + l]! & u2 ? 16 : 0))) - m2;
      }
    }
  },
  cpu: { dot },
  wasm: {
    step: 256,
    bytes: 176,
    // As q4_k, with bit 2k + s of qh[l] as the fifth bit of weight l of sub-block 2k + s: qh (in $v3, $v4)
    // shifts right by 2 after each pair.
    dot: pairsK4({ qs: 48, fifth }),
    q8: pairsK4Q8({ qs: 48, fifth }),
  },
  wgsl: {
    helpers: `/** The 6-bit scale and min of sub-block j of a q4_K/q5_K block whose 12 scale bytes start at byte o. */
fn $sc(o: u32, j: u32) -> u32 {
  if (j < 4u) {
    return $u8(o + j) & 63u;
  }
  return ($u8(o + j + 4u) & 15u) | (($u8(o + j - 4u) >> 6u) << 4u);
}
fn $mn(o: u32, j: u32) -> u32 {
  if (j < 4u) {
    return $u8(o + j + 4u) & 63u;
  }
  return ($u8(o + j + 4u) >> 4u) | (($u8(o + j) >> 6u) << 4u);
}`,
    dot: `// block_q5_K: f16 d, f16 dmin, scales[12], qh[32], qs[128]; the 5th bit of sub-block 2k (2k + 1) is
// bit 2k (2k + 1) of qh[l]; w = d·sc·q − dmin·m.
let d = $f16(base);
let dm = $f16(base + 2u);
for (var k = 0u; k < 4u; k++) {
  let u1 = 1u << (2u * k);
  let u2 = 2u << (2u * k);
  var s1: f32 = 0.0;
  var t1: f32 = 0.0;
  var s2: f32 = 0.0;
  var t2: f32 = 0.0;
  for (var l = 0u; l < 32u; l++) {
    let q = $u8(base + 48u + 32u * k + l);
    let hb = $u8(base + 16u + l);
    let xa = $x(xi + 64u * k + l);
    let xb = $x(xi + 64u * k + 32u + l);
    s1 += f32((q & 15u) + select(0u, 16u, (hb & u1) != 0u)) * xa;
    t1 += xa;
    s2 += f32((q >> 4u) + select(0u, 16u, (hb & u2) != 0u)) * xb;
    t2 += xb;
  }
  acc += d * f32($sc(base + 4u, 2u * k)) * s1 - dm * f32($mn(base + 4u, 2u * k)) * t1;
  acc += d * f32($sc(base + 4u, 2u * k + 1u)) * s2 - dm * f32($mn(base + 4u, 2u * k + 1u)) * t2;
}`,
  },
};
