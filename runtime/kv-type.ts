// The element type of the KV caches: f32, f16 (llama.cpp's default, and moec's) or q8_0 (llama.cpp's
// block_q8_0: 32 int8 values and an f16 scale, 34 bytes). Chosen at compile time (`--kv-type`, a target's
// `kv_type:`), written into the manifest, and sized here for the planner, the accountant and the runtime.
import { f16Table, f32ToF16 } from "./quant/half.ts";

export const KV_TYPES = ["f32", "f16", "q8_0"] as const;
export type KvType = (typeof KV_TYPES)[number];
/** What a compile without `--kv-type` or `kv_type:` stores, as llama.cpp does. */
export const DEFAULT_KV_TYPE: KvType = "f16";

export const KV_Q8_BLOCK = 32;
export const KV_Q8_BLOCK_BYTES = 34;

/** A KV type a backend or a model cannot hold: a user's choice, so the CLI prints it without a stack. */
export class KvTypeError extends Error {
  override readonly name = "KvTypeError";
  readonly exitCode = 1;
}

export function isKvType(s: string): s is KvType {
  return (KV_TYPES as readonly string[]).includes(s);
}

/** Bytes per value stored: 4, 2, or 34/32 for q8_0. */
export function kvBytesPerValue(type: KvType): number {
  return type === "f32" ? 4 : type === "f16" ? 2 : KV_Q8_BLOCK_BYTES / KV_Q8_BLOCK;
}

/** Bytes of one cache row (one position) of `width` values; q8_0 needs whole blocks of 32. */
export function kvRowBytes(width: number, type: KvType): number {
  switch (type) {
    case "f32":
      return width * 4;
    case "f16":
      return width * 2;
    case "q8_0":
      if (width % KV_Q8_BLOCK !== 0)
        throw new RangeError(`a q8_0 KV cache needs rows of whole 32-value blocks, not ${width}`);
      return (width / KV_Q8_BLOCK) * KV_Q8_BLOCK_BYTES;
  }
}

/**
 * Why `type` cannot hold heads of `headDim` (undefined when it can): q8_0 blocks must not straddle two
 * heads, since attention reads one head's slice of a row.
 */
export function kvTypeProblem(type: KvType, headDim: number): string | undefined {
  if (type === "q8_0" && headDim % KV_Q8_BLOCK !== 0)
    return `a q8_0 KV cache needs a head size that is a multiple of 32 (its blocks), not ${headDim}`;
  return undefined;
}

/**
 * `x` as a `type` cache stores and gives it back (in place): f16 rounds to nearest even; q8_0 quantizes
 * each block of 32 as ggml's CPU `quantize_row_q8_0` does (d = max|x| / 127 kept in f16, q = x · 127 /
 * max|x| rounded half to even). The reference executor and the tests model the cache with this.
 */
export function roundKv(x: Float32Array, type: KvType): Float32Array {
  if (type === "f16") for (let i = 0; i < x.length; i++) x[i] = f16Table[f32ToF16(x[i]!)]!;
  else if (type === "q8_0") {
    if (x.length % KV_Q8_BLOCK !== 0)
      throw new RangeError(`q8_0 rows are whole blocks of 32, not ${x.length}`);
    for (let b = 0; b < x.length; b += KV_Q8_BLOCK) {
      let amax = 0;
      for (let j = 0; j < KV_Q8_BLOCK; j++) amax = Math.max(amax, Math.abs(x[b + j]!));
      const d = f16Table[f32ToF16(Math.fround(amax / 127))]!;
      const id = amax ? Math.fround(127 / amax) : 0;
      for (let j = 0; j < KV_Q8_BLOCK; j++) {
        const q = Math.max(-127, Math.min(127, roundEven(Math.fround(x[b + j]! * id))));
        x[b + j] = Math.fround(q * d);
      }
    }
  }
  return x;
}

/** Round half to even, as f32x4.nearest and _mm256_round_ps do. */
function roundEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
