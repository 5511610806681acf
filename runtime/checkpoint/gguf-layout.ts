// GGUF layout rules shared by the reader and the writer: constants, alignment, and the byte size
// a tensor's dims and type imply (block sizes always come from the quantization scheme registry).
import type { QuantScheme } from "../quant/scheme.ts";

/** "GGUF" as the first four bytes of the file. */
export const GGUF_MAGIC = 0x46554747;
export const GGUF_WRITE_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
export const GGUF_ALIGNMENT_KEY = "general.alignment";
/** ggml's GGML_MAX_DIMS. */
export const GGUF_MAX_DIMS = 4;

export function alignUp(n: number, alignment: number): number {
  const r = n % alignment;
  return r === 0 ? n : n + (alignment - r);
}

export function isValidAlignment(a: number): boolean {
  return Number.isInteger(a) && a > 0 && a <= 2 ** 31 && (a & (a - 1)) === 0;
}

export type TensorSize = { ok: true; elements: number; nbytes: number } | { ok: false; problem: string };

/**
 * Elements and bytes of a tensor with these dims (ggml order, dims[0] is the row length).
 * Fails when a dim is not a positive safe integer, the element count or byte size does not fit
 * below 2^53, or a row does not fill whole blocks of the scheme.
 */
export function tensorSize(dims: readonly (number | bigint)[], scheme: QuantScheme): TensorSize {
  if (dims.length === 0 || dims.length > GGUF_MAX_DIMS) {
    return { ok: false, problem: `has ${dims.length} dims (must be 1 to ${GGUF_MAX_DIMS})` };
  }
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  let elements = 1n;
  for (let i = 0; i < dims.length; i++) {
    const d = dims[i]!;
    if (typeof d === "number" && !Number.isSafeInteger(d)) {
      return { ok: false, problem: `dim ${i} is ${d}, not a whole number` };
    }
    const b = BigInt(d);
    if (b <= 0n) return { ok: false, problem: `dim ${i} is ${b} (dims must be at least 1)` };
    elements *= b;
    if (elements > max) {
      return { ok: false, problem: `dims [${dims.join(", ")}] hold more than 2^53 elements` };
    }
  }
  const row = BigInt(dims[0]!);
  const bs = BigInt(scheme.blockSize);
  if (row % bs !== 0n) {
    return {
      ok: false,
      problem: `row length ${row} is not a multiple of the ${scheme.name} block size ${scheme.blockSize}`,
    };
  }
  const nbytes = (elements / bs) * BigInt(scheme.blockBytes);
  if (nbytes > max) return { ok: false, problem: `takes ${nbytes} bytes, more than 2^53` };
  return { ok: true, elements: Number(elements), nbytes: Number(nbytes) };
}
