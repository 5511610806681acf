// Q2_K (ggml type 10), block_q2_K: scales[16], qs[64], f16 d, f16 dmin (84 bytes) per 256 weights.
// 16 sub-blocks of 16: scales[j] holds a 4-bit scale (low nibble) and a 4-bit min (high nibble);
// w = d·(sc & 15)·q − dmin·(sc >> 4), q of 2 bits. Weight 128·h + 32·k + l (l < 32) is bits 2k..2k+1
// of qs[32·h + l]; its sub-block is 8·h + 2·k + (l ≥ 16).
import { readF16, writeF16 } from "../half.ts";
import { makeQkx2Quants } from "../kquant-fit.ts";
import { assertFinite, assertShapes, nearestInt } from "../numeric.ts";
import type { QuantScheme } from "../scheme.ts";
import { byteAt, bytesAt, field, G, H, quadsOf16, quadsOf16Q8, wAddr } from "../wat.ts";

const f = Math.fround;
const QK = 256;
const BYTES = 84;

const dot = `{
  let qo = row;
  let qx = xo;
  for (let qb = 0; qb < NB; qb++, qo += 84, qx += 256) {
    let sq = 0;
    let sm = 0;
    for (let h = 0; h < 2; h++) {
      const q = qo + 16 + 32 * h;
      for (let k = 0; k < 4; k++) {
        const sh = 2 * k;
        const xs = qx + 128 * h + 32 * k;
        const sc0 = u8[qo + 8 * h + 2 * k];
        const sc1 = u8[qo + 8 * h + 2 * k + 1];
        let a0 = 0;
        let a1 = 0;
        let t0 = 0;
        let t1 = 0;
        for (let l = 0; l < 16; l++) {
          const xa = x[xs + l];
          const xb = x[xs + 16 + l];
          a0 += ((u8[q + l] >> sh) & 3) * xa;
          a1 += ((u8[q + 16 + l] >> sh) & 3) * xb;
          t0 += xa;
          t1 += xb;
        }
        sq += (sc0 & 15) * a0 + (sc1 & 15) * a1;
        sm += (sc0 >> 4) * t0 + (sc1 >> 4) * t1;
      }
    }
    acc += f16[u8[qo + 80] | (u8[qo + 81] << 8)] * sq - f16[u8[qo + 82] | (u8[qo + 83] << 8)] * sm;
  }
}`;

// Per (h, g): qs's 16 bytes in $v2; sub-block k's 2-bit q, and its scale and min (byte 8h + 2k + g's nibbles).
const Q2_PREPARE = `(local.set $v2 ${bytesAt(16, wAddr([H, 32], [G, 16]))})`;
const q2 = (k: number) => field("(local.get $v2)", 2 * k, 2, 0);
const q2Byte = (k: number) => byteAt(2 * k, false, wAddr([H, 8], [G, 1]));
const q2Scale = (k: number) => `(i32.and ${q2Byte(k)} (i32.const 15))`;
const q2Min = (k: number) => `(i32.shr_u ${q2Byte(k)} (i32.const 4))`;

const L = new Uint8Array(QK);
const Laux = new Uint8Array(16);
const weights = new Float32Array(16);
const mins = new Float32Array(QK / 16);
const scales = new Float32Array(QK / 16);
const Q4SCALE = 15;
const RMIN = f(-0.5);
const RDELTA = f(0.1);

export const q2_k: QuantScheme = {
  name: "q2_k",
  ggmlType: 10,
  blockSize: QK,
  blockBytes: BYTES,
  description:
    "2-bit k-quant: 256-weight super-blocks, 16 sub-blocks with 4-bit scales and mins (2.625 bits/weight)",
  // quantize_row_q2_K_ref
  encode(src, dst) {
    const nb = assertShapes("q2_k", QK, BYTES, src.length, dst.length);
    assertFinite("q2_k", src);
    for (let i = 0; i < nb; i++) {
      const xo = i * QK;
      const o = i * BYTES;
      let maxScale = 0;
      let maxMin = 0;
      for (let j = 0; j < QK / 16; j++) {
        for (let l = 0; l < 16; l++) weights[l] = Math.abs(src[xo + 16 * j + l]!);
        scales[j] = makeQkx2Quants(
          16,
          3,
          src,
          xo + 16 * j,
          weights,
          L,
          16 * j,
          mins,
          j,
          Laux,
          RMIN,
          RDELTA,
          15,
          true,
        );
        if (scales[j]! > maxScale) maxScale = scales[j]!;
        if (mins[j]! > maxMin) maxMin = mins[j]!;
      }
      if (maxScale > 0) {
        const iscale = f(Q4SCALE / maxScale);
        for (let j = 0; j < QK / 16; j++) dst[o + j] = nearestInt(f(iscale * scales[j]!));
        writeF16(dst, o + 80, f(maxScale / Q4SCALE));
      } else {
        dst.fill(0, o, o + 16);
        writeF16(dst, o + 80, 0);
      }
      if (maxMin > 0) {
        const iscale = f(Q4SCALE / maxMin);
        for (let j = 0; j < QK / 16; j++) dst[o + j] |= nearestInt(f(iscale * mins[j]!)) << 4;
        writeF16(dst, o + 82, f(maxMin / Q4SCALE));
      } else {
        writeF16(dst, o + 82, 0);
      }
      const dAll = readF16(dst, o + 80);
      const dMin = readF16(dst, o + 82);
      for (let j = 0; j < QK / 16; j++) {
        const d = f(dAll * (dst[o + j]! & 0xf));
        if (!d) continue;
        const dm = f(dMin * (dst[o + j]! >> 4));
        for (let ii = 0; ii < 16; ii++) {
          const l = nearestInt(f(f(src[xo + 16 * j + ii]! + dm) / d));
          L[16 * j + ii] = Math.max(0, Math.min(3, l));
        }
      }
      for (let h = 0; h < 2; h++) {
        for (let l = 0; l < 32; l++) {
          const j = 128 * h + l;
          dst[o + 16 + 32 * h + l] = L[j]! | (L[j + 32]! << 2) | (L[j + 64]! << 4) | (L[j + 96]! << 6);
        }
      }
    }
  },
  // dequantize_row_q2_K
  decode(src, dst) {
    const nb = dst.length / QK;
    let y = 0;
    for (let i = 0; i < nb; i++) {
      const o = i * BYTES;
      const d = readF16(src, o + 80);
      const min = readF16(src, o + 82);
      let is = 0;
      for (let h = 0; h < 2; h++) {
        const q = o + 16 + 32 * h;
        for (let k = 0; k < 4; k++) {
          const shift = 2 * k;
          for (let half = 0; half < 2; half++) {
            const sc = src[o + is++]!;
            const dl = f(d * (sc & 0xf));
            const ml = f(min * (sc >> 4));
            for (let l = 0; l < 16; l++) dst[y++] = f(dl * ((src[q + 16 * half + l]! >> shift) & 3)) - ml;
          }
        }
      }
    }
  },
  cpu: { dot },
  wasm: {
    step: 256,
    bytes: 84,
    // Two bits per weight; the scale and min of sub-block j are the nibbles of byte j.
    dot: quadsOf16({
      d: 80,
      dmin: 82,
      prepare: Q2_PREPARE,
      sub: (k) => ({ runs: [q2(k)], unsigned: true, scale: q2Scale(k), min: q2Min(k) }),
    }),
    // Against int8 activations; the mins once per block, through the sums.
    q8: quadsOf16Q8({
      d: 80,
      prepare: Q2_PREPARE,
      sub: (k) => ({ run: q2(k), scale: q2Scale(k) }),
      mins: {
        dmin: 82,
        factors: ["low", "high"].map(
          (hl) => `(i16x8.extend_${hl}_i8x16_u (i8x16.shr_u ${bytesAt(0)} (i32.const 4)))`,
        ) as [string, string],
      },
    }),
  },
  wgsl: {
    dot: `// block_q2_K: scales[16], qs[64], f16 d, f16 dmin; weight 128h + 32k + 16half + l is bits 2k.. of
// qs[32h + 16half + l], sub-block 8h + 2k + half: w = d·(sc & 15)·q − dmin·(sc >> 4).
let d = $f16(base + 80u);
let dm = $f16(base + 82u);
for (var h = 0u; h < 2u; h++) {
  for (var k = 0u; k < 4u; k++) {
    for (var half = 0u; half < 2u; half++) {
      let sc = $u8(base + 8u * h + 2u * k + half);
      var s: f32 = 0.0;
      var t: f32 = 0.0;
      for (var l = 0u; l < 16u; l++) {
        let q = ($u8(base + 16u + 32u * h + 16u * half + l) >> (2u * k)) & 3u;
        let xv = $x(xi + 128u * h + 32u * k + 16u * half + l);
        s += f32(q) * xv;
        t += xv;
      }
      acc += d * f32(sc & 15u) * s - dm * f32(sc >> 4u) * t;
    }
  }
}`,
  },
};
