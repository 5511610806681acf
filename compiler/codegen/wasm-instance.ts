// A WasmKernels module instantiated over a memory as the runtime does it, integer kernels composed
// (runtime/q8-kernels.ts): what the kernel tests call. `q8At` is a free region of the memory of
// q8Region(kernels) bytes.
import "../../runtime/relaxed-simd.ts";
import { composeQ8Kernels, q8RegionBytes } from "../../runtime/q8-kernels.ts";
import type { WasmKernels } from "./wasm.ts";

export type Kernel = (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => void;

/** Bytes the integer kernels' region takes. */
export const q8Region = (kernels: WasmKernels) => q8RegionBytes(kernels.q8Bytes);

export function instantiate(
  kernels: WasmKernels,
  memory: WebAssembly.Memory,
  relaxed: boolean,
  q8At: number,
): Record<string, Kernel> {
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(kernels.binary(relaxed)), {
    env: { memory },
  });
  const arena = new Float32Array(memory.buffer, q8At, q8Region(kernels) / 4);
  return composeQ8Kernels(
    exports as Record<string, Kernel>,
    exports,
    { q8Scratch: { offset: 0, bytes: kernels.q8Bytes } },
    arena,
  );
}
