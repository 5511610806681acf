// A WasmKernels module instantiated over a memory as the runtime does it, integer kernels composed
// (runtime/q8-kernels.ts): what the kernel tests call. `q8At` is a free region of the memory with room
// for `vectors` quantized vectors and their addresses (see q8Region).
import { composeQ8Kernels } from "../../runtime/q8-kernels.ts";
import type { WasmKernels } from "./wasm.ts";

export type Kernel = (a: number, b: number, c: number, d: number, e: number, f: number, g: number) => void;

/** Bytes the integer kernels' scratch takes for `vectors` activation vectors. */
export const q8Region = (kernels: WasmKernels, vectors: number) => vectors * (kernels.q8Bytes + 4);

export function instantiate(
  kernels: WasmKernels,
  memory: WebAssembly.Memory,
  relaxed: boolean,
  q8At: number,
  vectors: number,
): Record<string, Kernel> {
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(kernels.binary(relaxed)), {
    env: { memory },
  });
  const arena = new Float32Array(memory.buffer, q8At, q8Region(kernels, vectors) / 4);
  return composeQ8Kernels(
    exports as Record<string, Kernel>,
    exports,
    { q8Scratch: { offset: 0, bytes: kernels.q8Bytes, vectors } },
    arena,
  );
}
