// The webgpu backend against the CPU backend, on lavapipe in CI (a real Vulkan device, no GPU): greedy
// tokens on every tiny spec and every scheme, logits within a stated tolerance, with a device budget that
// forces expert offload, with weights split under a lowered binding limit, the bytes uploaded per decoded
// token, and the errors a GPU backend gives instead of falling back.
//
// Logits against the CPU's: within logitTolerance (test/gpu-harness.ts), which says why.
import { afterAll, describe, expect, it } from "vitest";
import nf4 from "../../examples/custom-quant/nf4.ts";
import { compileGpuAndCpu, type GpuPair, greedyBoth, logitTolerance } from "../../test/gpu-harness.ts";
import { needsWebGpu } from "../../test/machine.ts";
import { measureDevice, minimumSlots } from "../memory/device-plan.ts";
import { findScheme, registerScheme, schemes } from "../quant/registry.ts";
import { GpuError } from "./backend.ts";
import { createBackend } from "./model.ts";
import type { ExpertBuffers } from "./place.ts";

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

describe("webgpu backend", needsWebGpu(), () => {
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

  it("a limit under one row of a matrix: a GpuError naming the weight, the row and the limit", async () => {
    // f32 rows of 64 are 256 bytes: no split into whole rows fits 200 bytes per buffer.
    process.env.MOEC_WEBGPU_MAX_BINDING = "200";
    try {
      await expect(
        compileGpuAndCpu("specs/tiny-mixtral.moe", "f32", "webgpu", { maxContext: 32 }),
      ).rejects.toThrow(
        /^webgpu backend: layer\.w_gate: one row is 256 bytes, over the adapter's storage binding limit of 200 bytes/,
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

  it("expert matrices over the binding limit are split by rows: resident and cache slots, the CPU's tokens", async () => {
    // f32 at 8 KiB per buffer: an expert's gate/up (96 rows of 256 bytes) in 3 buffers, its down (64 rows
    // of 384 bytes) in 4; q8_0 at 4608 bytes: gate/up (96 rows of 68 bytes) in 2, down (64 of 102) in 2.
    // The arena (4224 bytes) still fits in one.
    const cases: [string, number, number, number][] = [
      ["f32", 8192, 3, 4],
      ["q8_0", 4608, 2, 2],
    ];
    for (const [quant, limit, gateChunks, downChunks] of cases) {
      process.env.MOEC_WEBGPU_MAX_BINDING = String(limit);
      try {
        const { p } = await agree("specs/tiny-mixtral.moe", quant);
        const gate = p.gpu.placed.weights.get("layer.w_gate")![0]!;
        expect(gate.experts!.map((e) => e.buffers.length)).toEqual([
          gateChunks,
          gateChunks,
          gateChunks,
          gateChunks,
        ]);
        expect(p.gpu.placed.weights.get("layer.w_down")![1]!.experts![3]!.buffers.length).toBe(downChunks);
        for (const b of gate.buffers) expect(b.bytes).toBeLessThanOrEqual(limit);

        // The accountant holds what the plan measures, split or not.
        const m = p.gpu.manifest;
        expect(p.gpu.placed.memory.acct.used).toBe(measureDevice(m, [m.moe![0]!.experts]).used);

        // The same under a budget that leaves each layer top-k cache slots: each slot's matrices in chunks.
        const budget = measureDevice(m, minimumSlots(m)).used;
        const off = await agree("specs/tiny-mixtral.moe", quant, { memory: { deviceBudget: budget } });
        const stats = off.p.gpu.memory();
        expect(off.p.gpu.placed.caches.length).toBeGreaterThan(0);
        expect(off.p.gpu.placed.weights.has("layer.w_gate")).toBe(false);
        expect(off.p.gpu.placed.expertRows[0]).toEqual(p.gpu.placed.expertRows[0]);
        expect(stats.expert_misses).toBeGreaterThan(0);
        // Accounting as unsplit: the plan's peak under the budget, and every missed byte uploaded once.
        expect(stats.peak_device_bytes).toBeLessThanOrEqual(budget);
        expect(off.p.gpu.placed.memory.acct.used).toBe(budget);
        expect(off.p.gpu.placed.memory.uploadedBy.experts).toBe(stats.bytes_loaded);
        const slot: ExpertBuffers[] = [];
        off.p.gpu.placed.experts(0, 1, [2, 3], slot);
        expect(slot.map((e) => [e.gate.buffers.length, e.up.buffers.length, e.down.buffers.length])).toEqual([
          [gateChunks, gateChunks, downChunks],
          [gateChunks, gateChunks, downChunks],
        ]);
      } finally {
        delete process.env.MOEC_WEBGPU_MAX_BINDING;
      }
    }
  }, 240_000);
});

// Refused while compiling, before any device is asked for.
it("a scheme without a WGSL piece: an error naming the scheme and the backend", async () => {
  const name = "nowgsl_test";
  if (!findScheme(name)) registerScheme({ ...nf4, name, wgsl: undefined });
  await expect(
    compileGpuAndCpu("specs/tiny-mixtral.moe", name, "webgpu", { maxContext: 32 }),
  ).rejects.toThrow(/scheme `nowgsl_test` has no WGSL piece, so the webgpu backend cannot run it/);
});
