// IEEE half (f16) and bfloat16 conversions, bit-exact to ggml's GGML_FP32_TO_FP16 / GGML_FP16_TO_FP32
// and GGML_FP32_TO_BF16 / GGML_BF16_TO_FP32.

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** The bits of `v` as an IEEE binary32 (after rounding `v` to f32). */
export function f32Bits(v: number): number {
  scratchF32[0] = v;
  return scratchU32[0]!;
}

/** The f32 whose bits are `bits`. */
export function f32FromBits(bits: number): number {
  scratchU32[0] = bits >>> 0;
  return scratchF32[0]!;
}

function halfValue(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (0x400 + mant) * 2 ** (exp - 25);
}

/** f16 bits → value, for all 65536 halves: what ggml's ggml_table_f32_f16 holds. */
export const f16Table: Float32Array = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = halfValue(h);
  return t;
})();

export function f16ToF32(h: number): number {
  return f16Table[h & 0xffff]!;
}

/**
 * f32 → f16 bits, round to nearest even, subnormals kept, overflow to ±Inf, NaN to a quiet NaN
 * (0x7e00 with the sign): the result of ggml's GGML_FP32_TO_FP16 (F16C `vcvtps2ph` with rounding 0,
 * or the portable fp16_ieee_from_fp32_value).
 */
export function f32ToF16(v: number): number {
  const x = f32Bits(v);
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | (mant ? 0x7e00 : 0x7c00);
  const e = exp - 112; // the half's biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: ±0
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry into the exponent gives the next binade or Inf
  return sign | h;
}

/** f32 → bf16 bits like ggml_compute_fp32_to_bf16: round to nearest even, NaN kept (forced quiet). */
export function f32ToBf16(v: number): number {
  const x = f32Bits(v);
  if ((x & 0x7fffffff) >>> 0 > 0x7f800000) return ((x >>> 16) | 64) & 0xffff;
  return ((x + (0x7fff + ((x >>> 16) & 1))) >>> 16) & 0xffff;
}

export function bf16ToF32(h: number): number {
  return f32FromBits((h & 0xffff) << 16);
}

/** The f16 stored little-endian at u8[o]. */
export function readF16(u8: Uint8Array, o: number): number {
  return f16Table[u8[o]! | (u8[o + 1]! << 8)]!;
}

/** Stores `v` rounded to f16 little-endian at u8[o]; returns the stored value as f32 (what decode will see). */
export function writeF16(u8: Uint8Array, o: number, v: number): number {
  const h = f32ToF16(v);
  u8[o] = h & 0xff;
  u8[o + 1] = h >>> 8;
  return f16Table[h]!;
}
