// The webgpu backend against the CPU backend, on lavapipe in CI (a real Vulkan device, no GPU): greedy
// tokens on every tiny spec and every scheme, logits within a stated tolerance, with a device budget that
// forces expert offload, with weights split under a lowered binding limit, the bytes uploaded per decoded
// token, and the errors a GPU backend gives instead of falling back.
//
// Logits against the CPU's: within logitTolerance (test/gpu-harness.ts), which says why.
import { afterAll, describe, expect, it } from "vitest";
import nf4 from "../../examples/custom-quant/nf4.ts";
import { compileGpuAndCpu, type GpuPair, greedyBoth, logitTolerance } from "../../test/gpu-harness.ts";
import { measureDevice, minimumSlots } from "../memory/device-plan.ts";
import { findScheme, registerScheme, schemes } from "../quant/registry.ts";
import { GpuError } from "./backend.ts";
import { createBackend } from "./model.ts";

const PROMPT = [1, 5, 9];
const NEW = 6;

if (!findScheme("nf4")) registerScheme(nf4);

const open: GpuPair[] = [];
afterAll(() => {
  for (const p of open) p.gpu.close();
});

async function agree(spec: string, quant: string, o: Parameters<typeof compileGpuAndCpu>[3] = {}) {
  const p = await compileGpuAndCpu(spec, quant, "webgpu", { maxContext: 32, ...o });
  open.push(p);
  const r = await greedyBoth(p, PROMPT, NEW);
  expect(r.gpuTokens, `${spec} ${quant}`).toEqual(r.cpuTokens);
  expect(r.worst, `${spec} ${quant}`).toBeLessThan(logitTolerance(quant));
  return { p, r };
}

describe("webgpu backend", () => {
  for (const spec of ["specs/tiny-mixtral.moe", "specs/tiny-shared-expert.moe", "specs/tiny-top1.moe"]) {
    it(`${spec}: the CPU's greedy tokens`, async () => {
      await agree(spec, "f32");
      await agree(spec, "q8_0");
    }, 120_000);
  }

  it("every scheme (and the nf4 plugin) gives the CPU's greedy tokens", async () => {
    const names = schemes().map((s) => s.name);
    expect(names).toContain("nf4");
    for (const q of names) {
      const { p } = await agree("test/fixtures/tiny-256.moe", q);
      p.gpu.close();
      open.splice(open.indexOf(p), 1);
    }
  }, 600_000);

  it("under a device budget that offloads experts: the same tokens, misses uploaded and nothing else", async () => {
    const probe = await compileGpuAndCpu("specs/tiny-mixtral.moe", "q8_0", "webgpu", { maxContext: 32 });
    const m = probe.gpu.manifest;
    probe.gpu.close();
    const budget = measureDevice(m, minimumSlots(m)).used;
    const { p } = await agree("specs/tiny-mixtral.moe", "q8_0", { memory: { deviceBudget: budget } });
    const stats = p.gpu.memory();
    expect(p.gpu.placed.caches.length).toBeGreaterThan(0);
    expect(stats.expert_misses).toBeGreaterThan(0);
    expect(stats.peak_device_bytes).toBeLessThanOrEqual(budget);
    // Per decoded token: the frame (token and position, 8 bytes) plus the experts that missed, no more.
    let before = p.gpu.uploadedBytes;
    let loaded = stats.bytes_loaded;
    for (let pos = PROMPT.length + NEW; pos < PROMPT.length + NEW + 4; pos++) {
      await p.gpu.step(3, pos);
      const now = p.gpu.memory().bytes_loaded;
      expect(p.gpu.uploadedBytes - before).toBeLessThanOrEqual(8 + (now - loaded));
      before = p.gpu.uploadedBytes;
      loaded = now;
    }
  }, 120_000);

  it("fully resident: a decoded token uploads only its 8-byte frame", async () => {
    const { p } = await agree("specs/tiny-mixtral.moe", "q4_0");
    const before = p.gpu.uploadedBytes;
    await p.gpu.step(7, PROMPT.length + NEW);
    expect(p.gpu.uploadedBytes - before).toBe(8);
    expect(p.gpu.memory().bytes_loaded).toBe(0);
  }, 120_000);

  it("weights over the binding limit are split into row ranges, with the same tokens", async () => {
    // f32 [256, 64] tables are 64 KiB: two buffers each under a 32 KiB limit; one expert matrix is 24 KiB.
    process.env.MOEC_WEBGPU_MAX_BINDING = "32768";
    try {
      const { p } = await agree("specs/tiny-mixtral.moe", "f32");
      expect(p.gpu.placed.weights.get("lm_head")![0]!.buffers.length).toBe(2);
      expect(p.gpu.placed.weights.get("tok_embed")![0]!.buffers.length).toBe(2);
    } finally {
      delete process.env.MOEC_WEBGPU_MAX_BINDING;
    }
  }, 120_000);

  it("a buffer that cannot be split under the limit: a GpuError naming the weight and the limit", async () => {
    process.env.MOEC_WEBGPU_MAX_BINDING = "4096";
    try {
      await expect(
        compileGpuAndCpu("specs/tiny-mixtral.moe", "f32", "webgpu", { maxContext: 32 }),
      ).rejects.toThrow(
        /^webgpu backend: layer\.w_gate layer 0 expert 0 needs a buffer of 24576 bytes, over the adapter's storage binding limit \(maxStorageBufferBindingSize\) of 4096 bytes/,
      );
    } finally {
      delete process.env.MOEC_WEBGPU_MAX_BINDING;
    }
  }, 60_000);

  it("a kernel that does not compile: a GpuError naming the backend and the kernel", async () => {
    const b = await createBackend("webgpu");
    try {
      const e = await b.pipeline("broken_kernel", "fn main( {", {}, ["write"]).catch((x: Error) => x);
      expect(e).toBeInstanceOf(GpuError);
      expect((e as GpuError).message).toMatch(
        /^webgpu backend: kernel broken_kernel does not compile at line 1/,
      );
    } finally {
      b.destroy();
    }
  }, 60_000);

  it("a scheme without a WGSL piece: an error naming the scheme and the backend", async () => {
    const name = "nowgsl_test";
    if (!findScheme(name)) registerScheme({ ...nf4, name, wgsl: undefined });
    await expect(
      compileGpuAndCpu("specs/tiny-mixtral.moe", name, "webgpu", { maxContext: 32 }),
    ).rejects.toThrow(/scheme `nowgsl_test` has no WGSL piece, so the webgpu backend cannot run it/);
  });
});
