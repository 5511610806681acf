// Without a WebGPU adapter, the gpujs backend in webgpu mode says so (naming the backend and the mode,
// and offering the CPU backend) instead of falling back to another mode by itself. A file of its own:
// gpu.js keeps one WebGPU device per process.
import { expect, it } from "vitest";
import { GpuError } from "./backend.ts";
import { GpuJsBackend } from "./gpujs.ts";

it("no adapter: a clear error, no silent fallback", async () => {
  Object.defineProperty(globalThis, "navigator", {
    value: { gpu: { requestAdapter: async () => null } },
    configurable: true,
    writable: true,
  });
  const err = await GpuJsBackend.create("webgpu").catch((e) => e);
  expect(err).toBeInstanceOf(GpuError);
  expect(err.message).toMatch(/^gpujs backend: gpu\.js's webgpu mode: no WebGPU adapter/);
  expect(err.message).toMatch(/--backend cpu/);
});
