// A lost device mid-run: the next token fails with a message naming the gpujs backend and offering the
// CPU backend. A file of its own: gpu.js keeps one WebGPU device per process, and this test loses it.
import { expect, it } from "vitest";
import { compileGpuAndCpu } from "../../test/gpu-harness.ts";
import { needsWebGpu } from "../../test/machine.ts";
import { GpuError } from "./backend.ts";
import { setGpuJsMode } from "./gpujs.ts";

it("a lost device: a clear error on the next token", { ...needsWebGpu(), timeout: 60_000 }, async () => {
  setGpuJsMode("webgpu");
  const p = await compileGpuAndCpu("specs/tiny-mixtral.moe", "q8_0", "gpujs", { maxContext: 16 });
  await p.gpu.step(1, 0);
  const { WebGPUContext } = (await import("gpu.js")) as unknown as {
    WebGPUContext: { acquire(): Promise<{ device: { destroy(): void; lost: Promise<unknown> } }> };
  };
  const ctx = await WebGPUContext.acquire();
  ctx.device.destroy();
  await ctx.device.lost;
  const err = await p.gpu.step(2, 1).catch((e) => e);
  expect(err).toBeInstanceOf(GpuError);
  expect(err.message).toMatch(/^gpujs backend: .*(lost|device)/);
  expect(err.message).toMatch(/--backend cpu/);
});
