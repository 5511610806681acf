// `moec run --backend webgpu` on a random Mixtral-shaped GGUF, on lavapipe in CI: the CPU backend's greedy
// tokens, with and without a device budget that offloads experts, and no adapter as a clear error with
// the CPU backend suggested (never a silent fall back, never a stack trace).
import { spawnSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { writeRandomMixtralGguf } from "../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../runtime/checkpoint/test-support.ts";
import { measureDevice, minimumSlots } from "../runtime/memory/device-plan.ts";
import { needsWebGpu } from "../test/machine.ts";
import { loadForRun } from "./model-source.ts";

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());
const path = `${dir}/tiny.gguf`;
writeRandomMixtralGguf(path, {
  hidden: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 96,
  experts: 4,
  topK: 2,
  vocab: 300,
  type: "q8_0",
  seed: 3,
  headScale: 4,
});

function run(env: Record<string, string>, ...extra: string[]) {
  const args = ["bin/moec.js", "run", "--weights", path, "-p", "the cat", "-n", "10", "--temperature", "0"];
  const r = spawnSync(process.execPath, [...args, "--context", "64", "--json", ...extra], {
    encoding: "utf8",
    timeout: 300_000,
    env: { ...process.env, ...env },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe("moec run --backend webgpu", () => {
  it("generates the CPU backend's tokens, fully resident and with experts offloaded", {
    ...needsWebGpu(),
    timeout: 600_000,
  }, async () => {
    const cpu = run({}, "--backend", "cpu");
    expect(cpu.code, cpu.err).toBe(0);
    const gpu = run({}, "--backend", "webgpu");
    expect(gpu.code, gpu.err).toBe(0);
    expect(JSON.parse(gpu.out).tokens).toEqual(JSON.parse(cpu.out).tokens);

    const loaded = await loadForRun(undefined, path, { maxContext: 64, backend: "webgpu" });
    const m = loaded.module.manifest;
    loaded.close();
    const budget = measureDevice(m, minimumSlots(m)).used;
    const offloaded = run({}, "--backend", "webgpu", "--vram", String(budget));
    expect(offloaded.code, offloaded.err).toBe(0);
    const out = JSON.parse(offloaded.out);
    expect(out.tokens).toEqual(JSON.parse(cpu.out).tokens);
    expect(out.memory.expert_misses).toBeGreaterThan(0);
    expect(out.memory.peak_device_bytes).toBeLessThanOrEqual(budget);
  });

  it("no adapter: says so, names the backend, suggests --backend cpu, exits non-zero", () => {
    const r = run({ VK_ICD_FILENAMES: "/nonexistent/icd.json" }, "--backend", "webgpu");
    expect(r.code).toBe(3);
    expect(r.err).toMatch(/error: webgpu backend: no adapter: .*run with --backend cpu instead/);
    expect(r.err).not.toMatch(/internal error|\n\s+at .*\.ts:/);
    expect(r.out).toBe("");
  }, 120_000);
});
