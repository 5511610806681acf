// `moec run --backend gpujs` end to end through the CLI: the CPU backend's greedy tokens on a random
// Mixtral-shaped GGUF (gpu.js's webgpu mode on lavapipe, and its webasm mode), and without an adapter a
// one-line error naming the backend that offers `--backend cpu`, exit code 3, no stack trace.
import { spawnSync } from "node:child_process";
import { afterAll, expect, it } from "vitest";
import { writeRandomMixtralGguf } from "../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../runtime/checkpoint/test-support.ts";
import { needsWebGpu } from "../test/machine.ts";

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

function moec(env: Record<string, string>, ...args: string[]) {
  const r = spawnSync(process.execPath, ["bin/moec.js", ...args], {
    encoding: "utf8",
    timeout: 120_000,
    env: { ...process.env, ...env },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

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
  type: "q4_0",
  seed: 5,
});
const args = [
  "run",
  "--weights",
  path,
  "-p",
  "a",
  "-n",
  "6",
  "--temperature",
  "0",
  "--json",
  "--context",
  "32",
];
const tokens = (out: string) => (JSON.parse(out) as { tokens: number[] }).tokens;

let cpu: ReturnType<typeof moec> | undefined;

for (const mode of ["webgpu", "webasm"]) {
  it(`gives the CPU backend's greedy tokens in ${mode} mode`, {
    ...needsWebGpu(mode === "webgpu"),
    timeout: 240_000,
  }, () => {
    cpu ??= moec({}, ...args, "--backend", "cpu");
    expect(cpu.code, cpu.err).toBe(0);
    const gpu = moec({ MOEC_GPUJS_MODE: mode }, ...args, "--backend", "gpujs");
    expect(gpu.code, gpu.err).toBe(0);
    expect(tokens(gpu.out), mode).toEqual(tokens(cpu.out));
  });
}

it("without an adapter: names the backend, offers --backend cpu, exits 3 without a stack trace", () => {
  const r = moec({ VK_ICD_FILENAMES: `${dir}/no-such-icd.json` }, ...args, "--backend", "gpujs");
  expect(r.code).toBe(3);
  expect(r.err).toMatch(/gpujs backend: gpu\.js's webgpu mode: no WebGPU adapter/);
  expect(r.err).toMatch(/--backend cpu/);
  expect(r.err).not.toMatch(/^\s+at .*\.(ts|js):\d+/m);
}, 120_000);
