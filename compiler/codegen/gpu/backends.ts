// The GPU backends' kernel sets by name: compile.ts asks here for the backend a compile targets. Each
// GPU backend adds its factory (webgpu: compiler/codegen/wgsl/kernels.ts).
import type { GpuKernelSet } from "./program.ts";

const sets = new Map<string, () => GpuKernelSet>();

export function registerGpuKernels(backend: string, make: () => GpuKernelSet): void {
  sets.set(backend, make);
}

/** A fresh kernel set for `backend`, or undefined when it has no GPU code generator. */
export function gpuKernelSet(backend: string): GpuKernelSet | undefined {
  return sets.get(backend)?.();
}
