// The matrix-vector kernels of the schemes with an integer `q8` piece read activations quantized to q8
// blocks (runtime/quant/q8-activations.ts). The generated code calls `mv_S_C` as it does for every scheme;
// here it is composed from the module's quantizer and the product over the quantized vector: `qx_C` and
// `mvq_S_C` for q8_0 blocks, `qxk_C` and `mvqk_S_C` for q8_K. x is quantized once, on the calling thread,
// into the arena's q8 region, and only then are the rows split over the threads. (The prefill's `mmq_`
// and `mmqk_` kernels are called with vectors the generated code quantized itself.)
import type { Manifest } from "./manifest.ts";

/** The seven-argument kernels the generated code calls (see WasmKernel in model.ts). */
type Kernel = (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => void;
type Quantize = (xl: number, ql: number, n: number) => void;

/** Bytes of the arena's q8 region: one quantized vector of `bytes`, then the two-entry list `qx_` reads. */
export const q8RegionBytes = (bytes: number) => bytes + 64;

/** Each product's prefix and its quantizer's. */
const PAIRS = [
  ["mvq_", "qx_"],
  ["mvqk_", "qxk_"],
] as const;

/** Adds `mv_*` for every `mvq_*` and `mvqk_*` in `kernels` (already split over threads, or not). */
export function composeQ8Kernels(
  kernels: Record<string, Kernel>,
  exports: Record<string, unknown>,
  manifest: Pick<Manifest, "q8Scratch">,
  arena: Float32Array,
): Record<string, Kernel> {
  const names = Object.keys(kernels).filter((n) => PAIRS.some(([p]) => n.startsWith(p)));
  if (!names.length) return kernels;
  const scratch = manifest.q8Scratch;
  if (!scratch) throw new Error("the model's integer kernels have no q8 region in its manifest");
  const q = arena.byteOffset + scratch.offset;
  const list = q + scratch.bytes; // [x, q]: qx_ takes lists of vectors
  const u32 = new Uint32Array(arena.buffer, list, 2);
  u32[1] = q;
  const out = { ...kernels };
  for (const name of names) {
    const [prefix, qx] = PAIRS.find(([p]) => name.startsWith(p))!;
    const quantize = exports[`${qx}${name.slice(name.lastIndexOf("_") + 1)}`] as Quantize;
    const product = kernels[name]!;
    out[`mv_${name.slice(prefix.length)}`] = (w, x, y, r0, r1, alpha, acc) => {
      u32[0] = x;
      quantize(list, list + 4, 1);
      product(w, q, y, r0, r1, alpha, acc);
    };
  }
  return out;
}
