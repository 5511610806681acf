// The packed sub-block scales of the k-quants (ggml-common.h).
//
// q4_k and q5_k: 8 pairs (scale, min) of 6 bits in 12 bytes, ggml's get_scale_min_k4:
//   j < 4:  scale = b[j] & 63,                       min = b[j+4] & 63
//   j ≥ 4:  scale = (b[j+4] & 15) | (b[j-4] >> 6) << 4,  min = (b[j+4] >> 4) | (b[j] >> 6) << 4
// q3_k: 16 signed scales of 6 bits (stored +32) in 12 bytes:
//   low 4 bits in b[j] (j < 8) or b[j-8] >> 4 (j ≥ 8), high 2 bits at b[8 + j%4] >> 2·⌊j/4⌋.

/** The 6-bit scale of sub-block j (0..7) of a q4_k/q5_k block whose 12 scale bytes start at u8[o]. */
export function scaleK4(u8: Uint8Array, o: number, j: number): number {
  return j < 4 ? u8[o + j]! & 63 : (u8[o + j + 4]! & 15) | ((u8[o + j - 4]! >> 6) << 4);
}

/** The 6-bit min of sub-block j (0..7), as scaleK4. */
export function minK4(u8: Uint8Array, o: number, j: number): number {
  return j < 4 ? u8[o + j + 4]! & 63 : (u8[o + j + 4]! >> 4) | ((u8[o + j]! >> 6) << 4);
}

/**
 * Packs scale `ls` and min `lm` (0..63) of sub-block j into the 12 bytes at u8[o], as quantize_row_q4_K_ref
 * does: call for j = 0..7 in order on zeroed bytes.
 */
export function packScaleMinK4(u8: Uint8Array, o: number, j: number, ls: number, lm: number): void {
  if (j < 4) {
    u8[o + j] = ls;
    u8[o + j + 4] = lm;
  } else {
    u8[o + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
    u8[o + j - 4] |= (ls >> 4) << 6;
    u8[o + j] |= (lm >> 4) << 6;
  }
}

/** The signed scale (−32..31) of sub-block j (0..15) of a q3_k block whose 12 scale bytes start at u8[o]. */
export function scaleQ3K(u8: Uint8Array, o: number, j: number): number {
  const low = j < 8 ? u8[o + j]! & 0xf : u8[o + j - 8]! >> 4;
  const high = (u8[o + 8 + (j & 3)]! >> (2 * (j >> 2))) & 3;
  return (low | (high << 4)) - 32;
}

/** Packs the biased scale `l` (0..63) of sub-block j into the 12 bytes at u8[o]; zero them first. */
export function packScaleQ3K(u8: Uint8Array, o: number, j: number, l: number): void {
  if (j < 8) u8[o + j] = l & 0xf;
  else u8[o + j - 8] |= (l & 0xf) << 4;
  u8[o + 8 + (j & 3)] |= (l >> 4) << (2 * (j >> 2));
}
