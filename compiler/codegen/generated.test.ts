// Every generated kernel against the reference executor: whole models on random weights, token by
// token, so each fused kernel (and the standalone ones, via test/fixtures/unfused.moe) is exercised
// with real KV-cache state. Tolerance: max |generated − reference| ≤ 1e-4 × max(1, max |reference|);
// both decode the same packed weights, so only f32 summation order differs.
import { describe, expect, it } from "vitest";
import { compileAndLoad, relativeError } from "../../test/harness.ts";

const TOLERANCE = 1e-4;
const models = [
  "specs/tiny-mixtral.moe",
  "specs/tiny-shared-expert.moe",
  "specs/tiny-top1.moe",
  "test/fixtures/unfused.moe",
];
const schemes = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"];

describe("generated kernels match the reference executor", () => {
  for (const spec of models) {
    for (const scheme of schemes) {
      it(`${spec} at ${scheme}`, async () => {
        const { generated, reference, compiled } = await compileAndLoad(spec, scheme, 11);
        const vocab = compiled.manifest.vocab;
        let worst = 0;
        for (let pos = 0; pos < 10; pos++) {
          const token = (pos * 37 + 5) % vocab;
          const want = reference.step(token, pos);
          const got = generated.step(token, pos);
          expect(got.length).toBe(want.length);
          worst = Math.max(worst, relativeError(got, want));
        }
        expect(worst).toBeLessThanOrEqual(TOLERANCE);
      });
    }
  }
});
