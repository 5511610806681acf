// gpu.js binds every array as f32, so the gpujs backend carries packed weight bytes three to an f32 word:
// word w = b[3w] + 256·b[3w+1] + 65536·b[3w+2], an integer below 2^24 and so exact in f32. Kernels read
// byte b of a weight back with the `@u8` macro (compiler/codegen/gpujs/kernels.ts). Offsets inside a
// kernel are computed in f32, exact up to 2^24: one packed buffer holds at most 16 MiB of bytes.

/** The most bytes one packed buffer may hold: byte offsets must stay exact integers in f32. */
export const MAX_PACKED_BYTES = 1 << 24;

/** Words needed for `bytes` bytes. */
export function packedWords(bytes: number): number {
  return Math.ceil(bytes / 3);
}

/** Packs `src` into `dst` from word `at` on (src starts at a byte offset that is a multiple of 3). */
export function packBytes(
  src: Uint8Array,
  dst: Float32Array = new Float32Array(packedWords(src.length)),
  at = 0,
): Float32Array {
  const n = src.length;
  let w = at;
  let i = 0;
  for (; i + 2 < n; i += 3) dst[w++] = src[i]! + src[i + 1]! * 256 + src[i + 2]! * 65536;
  if (i < n) dst[w] = src[i]! + (i + 1 < n ? src[i + 1]! * 256 : 0);
  return dst;
}

/** The bytes back (for tests). */
export function unpackBytes(src: Float32Array, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) {
    const w = src[Math.floor(i / 3)]!;
    out[i] = Math.floor(w / 256 ** (i % 3)) % 256;
  }
  return out;
}
