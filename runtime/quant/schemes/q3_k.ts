// Q3_K (ggml type 11), block_q3_K: hmask[32], qs[64], scales[12], f16 d (110 bytes) per 256 weights.
// 16 sub-blocks of 16 with signed 6-bit scales (kquant-scales.ts); w = d·scale·(q − 4), q of 3 bits:
// for weight 128·h + 32·k + l (l < 32) the low 2 bits are bits 2k..2k+1 of qs[32·h + l] and the high bit
// is bit 4·h + k of hmask[l]; its sub-block is 8·h + 2·k + (l ≥ 16).
import { readF16, writeF16 } from "../half.ts";
import { makeQ3Quants } from "../kquant-fit.ts";
import { packScaleQ3K, scaleQ3K } from "../kquant-scales.ts";
import { assertFinite, assertShapes, nearestInt } from "../numeric.ts";
import type { QuantScheme } from "../scheme.ts";
import { byteAt, bytesAt, field, G, H, i8s, quadsOf16, quadsOf16Q8, wAddr } from "../wat.ts";

const W = "(local.get $w)";

const f = Math.fround;
const QK = 256;
const BYTES = 110;

const dot = `{
  let qo = row;
  let qx = xo;
  for (let qb = 0; qb < NB; qb++, qo += 110, qx += 256) {
    const s = qo + 96;
    let sq = 0;
    for (let h = 0; h < 2; h++) {
      const q = qo + 32 + 32 * h;
      for (let k = 0; k < 4; k++) {
        const sh = 2 * k;
        const bit = 4 * h + k;
        const xs = qx + 128 * h + 32 * k;
        const hs = 4 * h + 2 * (k >> 1);
        const sc0 = (((u8[s + 2 * k] >> (4 * h)) & 15) | (((u8[s + 8 + ((2 * k) & 3)] >> hs) & 3) << 4)) - 32;
        const sc1 = (((u8[s + 2 * k + 1] >> (4 * h)) & 15) | (((u8[s + 9 + ((2 * k) & 3)] >> hs) & 3) << 4)) - 32;
        let a0 = 0;
        let a1 = 0;
        for (let l = 0; l < 16; l++) {
          a0 += ((((u8[q + l] >> sh) & 3) | (((u8[qo + l] >> bit) & 1) << 2)) - 4) * x[xs + l];
          a1 += ((((u8[q + 16 + l] >> sh) & 3) | (((u8[qo + 16 + l] >> bit) & 1) << 2)) - 4) * x[xs + 16 + l];
        }
        sq += sc0 * a0 + sc1 * a1;
      }
    }
    acc += f16[u8[qo + 108] | (u8[qo + 109] << 8)] * sq;
  }
}`;

// The WebAssembly piece's scale of sub-block j = 8h + 2k + g (h, g the loop's, k fixed), as scaleQ3K:
// low 4 bits at bit 4h of byte 2k + g, high 2 bits at bit 4h + 2⌊k/2⌋ of byte 8 + 2(k mod 2) + g.
function wasmScale(k: number): string {
  const bits = (off: number, shift: string, mask: number) =>
    `(i32.and (i32.shr_u ${byteAt(96 + off, false, wAddr([G, 1]))} ${shift}) (i32.const ${mask}))`;
  const h4 = `(i32.shl ${H} (i32.const 2))`;
  const low = bits(2 * k, h4, 15);
  const high = bits(8 + 2 * (k % 2), `(i32.add ${h4} (i32.const ${2 * (k >> 1)}))`, 3);
  return `(i32.sub (i32.or ${low} (i32.shl ${high} (i32.const 4))) (i32.const 32))`;
}

// Per (h, g): qs's 16 bytes in $v2, hmask's shifted right by 4h in $v3; sub-block k's q + 4 (0..7).
/**
 * Statements: `$v11` = the 16 signed 6-bit scales (−32..31) of the block at `$w`, in sub-block order, as an
 * i8x16: lane j's low 4 bits are the low (j < 8) or high (j ≥ 8) nibble of scales[j mod 8], its top 2 bits
 * bits 2·(j div 4)… of scales[8 + j mod 4]. Reads the 12 bytes alone; scratch `$v8`, `$v9`.
 */
const SCALES = (() => {
  const lanes = (n: number) =>
    `(v128.const i8x16 ${Array.from({ length: 16 }, (_, j) => (j < n ? 255 : 0)).join(" ")})`;
  const v = "(local.get $v11)";
  const a = "(local.get $v9)";
  const b = "(local.get $v8)";
  const low = `(v128.bitselect (v128.and ${a} ${i8s(15)}) (i8x16.shr_u ${a} (i32.const 4)) ${lanes(8)})`;
  const shifted = (n: number) => `(i8x16.shr_u ${b} (i32.const ${n}))`;
  let high = `(v128.bitselect ${b} ${shifted(2)} ${lanes(4)})`;
  high = `(v128.bitselect ${high} ${shifted(4)} ${lanes(8)})`;
  high = `(v128.and (v128.bitselect ${high} ${shifted(6)} ${lanes(12)}) ${i8s(3)})`;
  return [
    `(local.set $v11 (v128.load32_lane offset=104 2 ${W} (v128.load64_zero offset=96 align=1 ${W})))`,
    `(local.set $v9 (i8x16.shuffle 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 ${v} ${v}))`,
    `(local.set $v8 (i8x16.shuffle 8 9 10 11 8 9 10 11 8 9 10 11 8 9 10 11 ${v} ${v}))`,
    `(local.set $v11 (i8x16.sub (v128.or ${low} (i8x16.shl ${high} (i32.const 4))) ${i8s(32)}))`,
  ].join("\n");
})();

const Q3_PREPARE = [
  `(local.set $v2 ${bytesAt(32, wAddr([H, 32], [G, 16]))})`,
  `(local.set $v3 (i8x16.shr_u ${bytesAt(0, wAddr([G, 16]))} (i32.shl ${H} (i32.const 2))))`,
].join("\n");
const q3 = (k: number) =>
  `(v128.or ${field("(local.get $v2)", 2 * k, 2, 0)} ${field("(local.get $v3)", k, 1, 2)})`;

const L = new Int8Array(QK);
const scales = new Float32Array(QK / 16);

export const q3_k: QuantScheme = {
  name: "q3_k",
  ggmlType: 11,
  blockSize: QK,
  blockBytes: BYTES,
  description: "3-bit k-quant: 256-weight super-blocks, 16 sub-blocks with 6-bit scales (3.4375 bits/weight)",
  // quantize_row_q3_K_ref
  encode(src, dst) {
    const nb = assertShapes("q3_k", QK, BYTES, src.length, dst.length);
    assertFinite("q3_k", src);
    for (let i = 0; i < nb; i++) {
      const xo = i * QK;
      const o = i * BYTES;
      let maxScale = 0;
      let amax = 0;
      for (let j = 0; j < QK / 16; j++) {
        scales[j] = makeQ3Quants(16, 4, src, xo + 16 * j, L, 16 * j);
        const scale = Math.abs(scales[j]!);
        if (scale > amax) {
          amax = scale;
          maxScale = scales[j]!;
        }
      }
      dst.fill(0, o, o + BYTES);
      if (maxScale) {
        const iscale = f(-32 / maxScale);
        for (let j = 0; j < QK / 16; j++) {
          const l = (nearestInt(f(iscale * scales[j]!)) << 24) >> 24; // (int8_t)
          packScaleQ3K(dst, o + 96, j, Math.max(-32, Math.min(31, l)) + 32);
        }
        writeF16(dst, o + 108, f(1 / iscale));
      } else {
        writeF16(dst, o + 108, 0);
      }
      const dAll = readF16(dst, o + 108);
      for (let j = 0; j < QK / 16; j++) {
        const d = f(dAll * scaleQ3K(dst, o + 96, j));
        if (!d) continue;
        for (let ii = 0; ii < 16; ii++) {
          const l = nearestInt(f(src[xo + 16 * j + ii]! / d));
          L[16 * j + ii] = Math.max(-4, Math.min(3, l)) + 4;
        }
      }
      // the high bit of weight j goes to bit ⌊j/32⌋ of hmask[j % 32]
      for (let j = 0; j < QK; j++) {
        if (L[j]! > 3) {
          dst[o + (j & 31)] |= 1 << (j >> 5);
          L[j] = L[j]! - 4;
        }
      }
      for (let h = 0; h < 2; h++) {
        for (let l = 0; l < 32; l++) {
          const j = 128 * h + l;
          dst[o + 32 + 32 * h + l] = L[j]! | (L[j + 32]! << 2) | (L[j + 64]! << 4) | (L[j + 96]! << 6);
        }
      }
    }
  },
  // dequantize_row_q3_K
  decode(src, dst) {
    const nb = dst.length / QK;
    let y = 0;
    for (let i = 0; i < nb; i++) {
      const o = i * BYTES;
      const dAll = readF16(src, o + 108);
      let is = 0;
      let m = 1;
      for (let h = 0; h < 2; h++) {
        const q = o + 32 + 32 * h;
        for (let k = 0; k < 4; k++) {
          const shift = 2 * k;
          for (let half = 0; half < 2; half++) {
            const dl = f(dAll * scaleQ3K(src, o + 96, is++));
            for (let l = 16 * half; l < 16 * half + 16; l++) {
              dst[y++] = dl * (((src[q + l]! >> shift) & 3) - (src[o + l]! & m ? 0 : 4));
            }
          }
          m <<= 1;
        }
      }
    }
  },
  cpu: { dot },
  wasm: {
    step: 256,
    bytes: 110,
    // q − 4: two bits of qs under the hmask bit 4h + k (hmask shifted right by 4h once per (h, g)).
    dot: quadsOf16({
      d: 108,
      prepare: Q3_PREPARE,
      sub: (k) => ({ runs: [`(i8x16.sub ${q3(k)} ${i8s(4)})`], scale: wasmScale(k), signedScale: true }),
    }),
    // q as the unsigned 0..7 against int8 activations; the 4 comes off through the sums.
    q8: quadsOf16Q8({
      d: 108,
      prepare: Q3_PREPARE,
      sub: (k) => ({ run: q3(k), scale: wasmScale(k) }),
      // The 4 off through the sums once per block, all 16 scales at once (decoded into $v11 first), not a
      // scalar product per sub-block, which a matrix-matrix kernel would repeat for every column.
      offset: {
        times: 4,
        setup: SCALES,
        factors: ["low", "high"].map((hl) => `(i16x8.extend_${hl}_i8x16_s (local.get $v11))`) as [
          string,
          string,
        ],
      },
    }),
  },
  wgsl: {
    helpers: `/** The signed 6-bit scale of sub-block j of a q3_K block whose 12 scale bytes start at byte o. */
fn $scale(o: u32, j: u32) -> i32 {
  var low: u32;
  if (j < 8u) {
    low = $u8(o + j) & 15u;
  } else {
    low = $u8(o + j - 8u) >> 4u;
  }
  let high = ($u8(o + 8u + (j & 3u)) >> (2u * (j >> 2u))) & 3u;
  return i32(low | (high << 4u)) - 32;
}`,
    dot: `// block_q3_K: hmask[32], qs[64], scales[12], f16 d; w = d·scale·(q − 4), the high bit from hmask.
let d = $f16(base + 108u);
for (var h = 0u; h < 2u; h++) {
  for (var k = 0u; k < 4u; k++) {
    let m = 1u << (4u * h + k);
    for (var half = 0u; half < 2u; half++) {
      let dl = d * f32($scale(base + 96u, 8u * h + 2u * k + half));
      var s: f32 = 0.0;
      for (var l = 16u * half; l < 16u * half + 16u; l++) {
        let q = i32(($u8(base + 32u + 32u * h + l) >> (2u * k)) & 3u) - select(4, 0, ($u8(base + l) & m) != 0u);
        s += f32(q) * $x(xi + 128u * h + 32u * k + l);
      }
      acc += dl * s;
    }
  }
}`,
  },
};
