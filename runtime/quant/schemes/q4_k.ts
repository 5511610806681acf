// Q4_K (ggml type 12), block_q4_K: f16 d, f16 dmin, scales[12], qs[128] (144 bytes) per 256 weights.
// 8 sub-blocks of 32 with 6-bit scales and mins (kquant-scales.ts); w = d·sc·q − dmin·m, q of 4 bits:
// weight 64·k + l (l < 32) is the low nibble of qs[32·k + l] (sub-block 2k), weight 64·k + 32 + l its
// high nibble (sub-block 2k + 1).
import { readF16, writeF16 } from "../half.ts";
import { makeQkx2Quants } from "../kquant-fit.ts";
import { minK4, packScaleMinK4, scaleK4 } from "../kquant-scales.ts";
import { assertFinite, assertShapes, nearestInt } from "../numeric.ts";
import type { QuantScheme } from "../scheme.ts";
import { pairsK4, pairsK4Q8 } from "../wat.ts";

const f = Math.fround;
const QK = 256;
const BYTES = 144;

const dot = `{
  let qo = row;
  let qx = xo;
  for (let qb = 0; qb < NB; qb++, qo += 144, qx += 256) {
    const s = qo + 4;
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
      const q = qo + 16 + 32 * k;
      const xs = qx + 64 * k;
      let a0 = 0;
      let a1 = 0;
      let t0 = 0;
      let t1 = 0;
      for (let l = 0; l < 32; l++) {
        const b = u8[q + l];
        const xa = x[xs + l];
        const xb = x[xs + 32 + l];
        a0 += (b & 15) * xa;
        a1 += (b >> 4) * xb;
        t0 += xa;
        t1 += xb;
      }
      sq += sc0 * a0 + sc1 * a1;
      sm += m0 * t0 + m1 * t1;
    }
    acc += f16[u8[qo] | (u8[qo + 1] << 8)] * sq - f16[u8[qo + 2] | (u8[qo + 3] << 8)] * sm;
  }
}`;

const L = new Uint8Array(QK);
const Laux = new Uint8Array(32);
const weights = new Float32Array(32);
const mins = new Float32Array(QK / 32);
const scales = new Float32Array(QK / 32);
const RDELTA = f(0.1);

export const q4_k: QuantScheme = {
  name: "q4_k",
  ggmlType: 12,
  blockSize: QK,
  blockBytes: BYTES,
  description:
    "4-bit k-quant: 256-weight super-blocks, 8 sub-blocks with 6-bit scales and mins (4.5 bits/weight)",
  // quantize_row_q4_K_ref
  encode(src, dst) {
    const nb = assertShapes("q4_k", QK, BYTES, src.length, dst.length);
    assertFinite("q4_k", src);
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
          15,
          src,
          xo + 32 * j,
          weights,
          L,
          32 * j,
          mins,
          j,
          Laux,
          -1,
          RDELTA,
          20,
          false,
        );
        if (scales[j]! > maxScale) maxScale = scales[j]!;
        if (mins[j]! > maxMin) maxMin = mins[j]!;
      }
      const invScale = maxScale > 0 ? f(63 / maxScale) : 0;
      const invMin = maxMin > 0 ? f(63 / maxMin) : 0;
      dst.fill(0, o + 4, o + 16);
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
          L[32 * j + ii] = Math.max(0, Math.min(15, l));
        }
      }
      for (let k = 0; k < 4; k++) {
        for (let l = 0; l < 32; l++) dst[o + 16 + 32 * k + l] = L[64 * k + l]! | (L[64 * k + 32 + l]! << 4);
      }
    }
  },
  // dequantize_row_q4_K
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
        const q = o + 16 + 32 * k;
        for (let l = 0; l < 32; l++) dst[y++] = f(d1 * (src[q + l]! & 0xf)) - m1;
        for (let l = 0; l < 32; l++) dst[y++] = f(d2 * (src[q + l]! >> 4)) - m2;
      }
    }
  },
  cpu: { dot },
  wasm: { step: 256, bytes: 144, dot: pairsK4({ qs: 16 }), q8: pairsK4Q8({ qs: 16 }) },
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
    dot: `// block_q4_K: f16 d, f16 dmin, scales[12], qs[128]; w = d·sc·q − dmin·m per sub-block of 32.
let d = $f16(base);
let dm = $f16(base + 2u);
for (var k = 0u; k < 4u; k++) {
  var s1: f32 = 0.0;
  var t1: f32 = 0.0;
  var s2: f32 = 0.0;
  var t2: f32 = 0.0;
  for (var l = 0u; l < 32u; l++) {
    let q = $u8(base + 16u + 32u * k + l);
    let xa = $x(xi + 64u * k + l);
    let xb = $x(xi + 64u * k + 32u + l);
    s1 += f32(q & 15u) * xa;
    t1 += xa;
    s2 += f32(q >> 4u) * xb;
    t2 += xb;
  }
  acc += d * f32($sc(base + 4u, 2u * k)) * s1 - dm * f32($mn(base + 4u, 2u * k)) * t1;
  acc += d * f32($sc(base + 4u, 2u * k + 1u)) * s2 - dm * f32($mn(base + 4u, 2u * k + 1u)) * t2;
}`,
  },
};
