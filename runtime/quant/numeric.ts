// Numeric helpers shared by the quantizers: ggml's rounding functions, with f32 semantics.

const scratchF32 = new Float32Array(1);
const scratchI32 = new Int32Array(scratchF32.buffer);

/**
 * ggml's nearest_int: adds 1.5·2²³ in f32 and reads the low mantissa bits back, which rounds half to
 * even for |v| ≤ 4194303. Outside that range the C code (its assert compiled out) returns whatever the
 * bits give; so does this.
 */
export function nearestInt(v: number): number {
  const s = Math.fround(v + 12582912);
  if (v <= 4194303 && v >= -4194303) return s - 12582912;
  scratchF32[0] = s;
  return (scratchI32[0]! & 0x007fffff) - 0x00400000;
}

/** C's roundf: half away from zero. */
export function roundf(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/** Throws when src holds NaN or ±Infinity: no block format can carry them meaningfully. */
export function assertFinite(scheme: string, src: Float32Array): void {
  for (let i = 0; i < src.length; i++) {
    const v = src[i]!;
    if (v - v !== 0) {
      throw new Error(`${scheme}: cannot encode non-finite value ${v} at element ${i}`);
    }
  }
}

/** Throws unless src.length is a whole number of blocks and dst has room for them. */
export function assertShapes(
  scheme: string,
  blockSize: number,
  blockBytes: number,
  srcLength: number,
  dstLength: number,
): number {
  if (srcLength % blockSize !== 0) {
    throw new Error(`${scheme}: ${srcLength} elements is not a whole number of ${blockSize}-element blocks`);
  }
  const nb = srcLength / blockSize;
  if (dstLength < nb * blockBytes) {
    throw new Error(`${scheme}: ${nb} blocks need ${nb * blockBytes} bytes, the buffer has ${dstLength}`);
  }
  return nb;
}
