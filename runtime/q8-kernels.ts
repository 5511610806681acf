// The integer kernels of the schemes with a `q8` piece (q8_0, q4_0) read activations quantized to q8_0
// (runtime/quant/q8-activations.ts). The generated code calls `mv_S_C` and `mm_S_C` as it does for every
// scheme; here they are composed from the module's `q8x_C` (quantize one vector of C values) and
// `mvq_S_C` / `mmq_S_C` (the products over quantized vectors): each vector is quantized once, on the
// calling thread, into the arena's q8 region, and only then are the rows split over the threads.
import type { Manifest } from "./manifest.ts";

/** The seven-argument kernels the generated code calls (see WasmKernel in model.ts). */
type Kernel = (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => void;
type Quantize = (x: number, q: number) => void;

/** Adds `mv_*` / `mm_*` for every `mvq_*` / `mmq_*` in `kernels` (already split over threads, or not). */
export function composeQ8Kernels(
  kernels: Record<string, Kernel>,
  exports: Record<string, unknown>,
  manifest: Pick<Manifest, "q8Scratch">,
  arena: Float32Array,
): Record<string, Kernel> {
  const scratch = manifest.q8Scratch;
  const names = Object.keys(kernels).filter((n) => /^m[vm]q_/.test(n));
  if (!names.length) return kernels;
  if (!scratch) throw new Error("the model's integer kernels have no q8 scratch in its manifest");
  const q0 = arena.byteOffset + scratch.offset;
  // After the quantized vectors: their addresses, the list an `mmq_` kernel reads.
  const list = q0 + scratch.vectors * scratch.bytes;
  const u32 = new Uint32Array(arena.buffer);
  const out = { ...kernels };
  for (const name of names) {
    const cols = name.slice(name.lastIndexOf("_") + 1);
    const quantize = exports[`q8x_${cols}`] as Quantize;
    const product = kernels[name]!;
    const plain = name.replace("q_", "_");
    if (name.startsWith("mvq_")) {
      out[plain] = (w, x, y, r0, r1, alpha, acc) => {
        quantize(x, q0);
        product(w, q0, y, r0, r1, alpha, acc);
      };
    } else {
      out[plain] = (w, xl, yl, r0, r1, n, acc) => {
        if (n > scratch.vectors) throw new RangeError(`${plain}: ${n} vectors, room for ${scratch.vectors}`);
        for (let j = 0; j < n; j++) {
          const q = q0 + j * scratch.bytes;
          quantize(u32[(xl >>> 2) + j]!, q);
          u32[(list >>> 2) + j] = q;
        }
        product(w, list, yl, r0, r1, n, acc);
      };
    }
  }
  return out;
}
