// Runs once per `vitest run`, before any test file: asks dawn.node (the `webgpu` package, which both GPU
// backends use, gpu.js's webgpu mode included) for a WebGPU adapter, and gives the answer to the test files
// (test/machine.ts reads it). The question is asked in a child process: the runtime keeps one dawn.node
// instance per process, and vitest's own process needs none.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import type { TestProject } from "vitest/node";

/** What the probe found: the adapter's name, or why there is none. */
export type WebGpuProbe = { adapter: string } | { missing: string };

declare module "vitest" {
  export interface ProvidedContext {
    webgpu: WebGpuProbe;
  }
}

const PROBE = `
let webgpu;
try {
  webgpu = await import("webgpu");
} catch (e) {
  console.log(JSON.stringify({ missing: "the webgpu package (dawn.node) does not load: " + e.message }));
  process.exit(0);
}
const adapter = await webgpu.create([]).requestAdapter();
const info = adapter?.info;
const name = [info?.vendor, info?.device, info?.description].filter(Boolean).join(" ") || "an adapter";
console.log(JSON.stringify(adapter ? { adapter: name } : { missing: "dawn.node found no WebGPU adapter" }));
process.exit(0);
`;

export function probeWebGpu(): WebGpuProbe {
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", PROBE], {
    cwd: join(import.meta.dirname, ".."),
    encoding: "utf8",
    timeout: 120_000,
  });
  const last = r.stdout?.trim().split("\n").at(-1);
  if (r.status === 0 && last) {
    try {
      return JSON.parse(last) as WebGpuProbe;
    } catch {}
  }
  const why = r.error?.message ?? (r.signal ? `killed by ${r.signal}` : `exit code ${r.status}`);
  const err = r.stderr?.trim().split("\n").at(-1);
  return { missing: `asking dawn.node for an adapter failed (${why})${err ? `: ${err}` : ""}` };
}

export default function setup(project: TestProject): void {
  project.provide("webgpu", probeWebGpu());
}
