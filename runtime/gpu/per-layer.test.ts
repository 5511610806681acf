// Weights whose scheme differs by layer (test/fixtures/tiny-mixed.moe) on the GPU backends: the program
// keeps one layer loop, and a node whose scheme differs by layer is a `layers` step (one case per distinct
// form, a table by layer). webgpu decode and its batched prefill, experts offloaded to a cache whose slots
// differ in size by layer, and gpujs, against the CPU's logits and greedy tokens on the same weights.
import { afterAll, describe, expect, it } from "vitest";
import { loadSpec } from "../../compiler/lang/frontend.ts";
import {
  argmax,
  compileGpuAndCpu,
  expectSameOrNearTie,
  type GpuPair,
  greedyBoth,
  logitTolerance,
  relativeDiff,
} from "../../test/gpu-harness.ts";
import { needsWebGpu } from "../../test/machine.ts";
import { measureDevice, minimumSlots } from "../memory/device-plan.ts";
import type { MemoryOptions } from "../memory/place.ts";
import { setGpuJsMode } from "./gpujs.ts";
import type { GpuStep } from "./program.ts";

const SPEC = "test/fixtures/tiny-mixed.moe";
const quant = loadSpec(SPEC).quants[0]!;
// The mix includes q4_0 (integer products on q8 activations): the q8 tolerance (see logitTolerance).
const TOLERANCE = logitTolerance("q4_0");
const PROMPT = [1, 17, 42, 99, 3, 250, 7, 64, 128, 5, 33];

const opened: GpuPair[] = [];
afterAll(() => {
  for (const p of opened) {
    p.gpu.close();
    p.cpu.close();
  }
});

async function open(backend: string, memory?: MemoryOptions) {
  const p = await compileGpuAndCpu(SPEC, quant, backend, { maxContext: 48, memory, seed: 5 });
  opened.push(p);
  return p;
}

function layerSteps(steps: GpuStep[]): { table: number[]; cases: number }[] {
  return steps.flatMap((s) =>
    s.op === "loop"
      ? layerSteps(s.body)
      : s.op === "layers"
        ? [{ table: s.table, cases: s.cases.length }]
        : [],
  );
}

describe("per-layer schemes on webgpu", needsWebGpu(), () => {
  // One resident instance serves the first two tests: its pipelines are made once, at load.
  let resident: Promise<GpuPair> | undefined;
  const base = () => (resident ??= open("webgpu"));

  it("one loop; the nodes whose scheme differs by layer choose their case by a table", async () => {
    const p = await base();
    const steps = p.gpu.module.program.steps;
    expect(steps.filter((s) => s.op === "loop")).toHaveLength(1);
    const chosen = layerSteps(steps);
    // wk, wv, wq, wo, router (q8 activations or not) and the experts differ by layer in the fixture.
    expect(chosen.length).toBeGreaterThanOrEqual(5);
    // The experts: (q4_k, q4_k, q6_k) in layers 0 and 3, (q5_k, q4_k, q4_k) in 1 and 2.
    expect(chosen).toContainEqual({ table: [0, 1, 1, 0], cases: 2 });
  }, 600_000);

  it("decode and the batched prefill give the CPU's logits and greedy tokens", async () => {
    const q = await base();
    // Step 5 is a near-tie (the CPU's two best 6e-4 of the largest logit apart, the logits 1e-2 apart):
    // either pick is right there.
    const r = await greedyBoth(q, PROMPT, 8);
    expectSameOrNearTie(r, TOLERANCE);
    expect(r.worst).toBeLessThan(TOLERANCE);
    // The prompt again from position 0, in one batch, against the CPU's prefill.
    expect(q.gpu.prefillBatch).toBeGreaterThan(1);
    const cpu = Float32Array.from(q.cpu.prefill(PROMPT));
    const gpu = Float32Array.from(await q.gpu.prefill(PROMPT, 0));
    expect(relativeDiff(gpu, cpu)).toBeLessThan(TOLERANCE);
    expect(argmax(gpu)).toBe(argmax(cpu));
  }, 600_000);

  it("experts offloaded to a cache whose slots differ by layer", async () => {
    const m = (await base()).gpu.manifest;
    const budget = measureDevice(m, minimumSlots(m)).used;
    const p = await open("webgpu", { deviceBudget: budget });
    const slots = p.gpu.placed.caches[0]!.slotBytes;
    expect(new Set(slots).size).toBe(2);
    const r = await greedyBoth(p, PROMPT, 8);
    expectSameOrNearTie(r, TOLERANCE);
    expect(r.worst).toBeLessThan(TOLERANCE);
    expect(p.gpu.memory().peak_device_bytes).toBeLessThanOrEqual(budget);
    expect(p.gpu.memory().expert_misses).toBeGreaterThan(0);
  }, 600_000);
});

describe("per-layer schemes on gpujs", () => {
  for (const mode of ["webasm", "webgpu"] as const) {
    it(`${mode}: the CPU's greedy tokens`, {
      ...needsWebGpu(mode === "webgpu"),
      timeout: 600_000,
    }, async () => {
      setGpuJsMode(mode);
      const p = await open("gpujs");
      expect(layerSteps(p.gpu.module.program.steps).length).toBeGreaterThanOrEqual(5);
      const { cpuTokens, gpuTokens, worst } = await greedyBoth(p, PROMPT.slice(0, 4), 6);
      expect(gpuTokens).toEqual(cpuTokens);
      expect(worst).toBeLessThan(TOLERANCE);
    });
  }
});
