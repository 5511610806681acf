// Threads split each WebAssembly product by rows, and every row is computed by the same code whichever
// thread runs it: the logits must be identical bit for bit to the single-threaded run, for any count.
import { describe, expect, it } from "vitest";
import { compileAndLoad } from "../test/harness.ts";
import { ModelInstance } from "./model.ts";
import { randomWeights } from "./weights.ts";

const cases = [
  ["specs/tiny-mixtral.moe", "q8_0"],
  ["specs/tiny-shared-expert.moe", "q4_0"],
  ["specs/tiny-top1.moe", "f32"],
] as const;

describe("worker threads", () => {
  for (const [spec, scheme] of cases) {
    it(`${spec} at ${scheme}: 2 and 3 threads give the 1-thread logits exactly`, async () => {
      const { generated: one, compiled } = await compileAndLoad(spec, scheme, 5);
      const weights = randomWeights(compiled.manifest, { seed: 5 });
      const many = [2, 3].map((threads) => new ModelInstance(one.module, weights, { threads }));
      try {
        expect(many.every((m) => m.rt.pool !== undefined)).toBe(true);
        for (let pos = 0; pos < 8; pos++) {
          const token = (pos * 41 + 3) % compiled.manifest.vocab;
          const want = one.step(token, pos).slice();
          for (const m of many) expect(m.step(token, pos)).toEqual(want);
        }
      } finally {
        for (const m of many) m.close();
      }
    });
  }
});
