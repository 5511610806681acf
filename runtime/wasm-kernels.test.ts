// Both WebAssembly builds of a model run and match the reference executor: the plain-SIMD one with
// relaxed SIMD switched off in V8, the relaxed one (fused multiply-adds) with it switched on.
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";

function run(flag: string, scheme: string): { relaxed: boolean; worst: number } {
  const out = execFileSync(
    process.execPath,
    [flag, "--import", "tsx", "test/wasm-path.ts", "specs/tiny-mixtral.moe", scheme],
    { encoding: "utf8", timeout: 120_000 },
  );
  return JSON.parse(out.trim().split("\n").at(-1)!);
}

describe("the runtime picks relaxed or plain SIMD at load time", () => {
  for (const scheme of ["f32", "q8_0"]) {
    it(`${scheme}: plain SIMD when the engine lacks relaxed SIMD`, () => {
      const r = run("--no-experimental-wasm-relaxed-simd", scheme);
      expect(r.relaxed).toBe(false);
      expect(r.worst).toBeLessThanOrEqual(1e-4);
    });
    it(`${scheme}: relaxed SIMD when the engine has it`, () => {
      const r = run("--experimental-wasm-relaxed-simd", scheme);
      expect(r.relaxed).toBe(true);
      expect(r.worst).toBeLessThanOrEqual(1e-4);
    });
  }
});
