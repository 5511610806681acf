// The activation plan of real compiled graphs: never two live values in the same bytes, never below
// the live-bytes lower bound, and within 10% of the exhaustive optimum where that is computable.
import { describe, expect, it } from "vitest";
import { compileDefault, specFiles } from "../specs.ts";
import { liveBytesLowerBound, planArena, verifyArena } from "./arena.ts";
import { planArenaExhaustive } from "./arena-exhaustive.ts";

const files = [...specFiles(), "test/fixtures/unfused.moe"];

describe("activation plans of compiled graphs", () => {
  for (const file of files) {
    it(`${file}: no overlap, at or above the lower bound`, () => {
      const { plan } = compileDefault(file);
      expect(verifyArena(plan.buffers, plan.arena)).toBeNull();
      expect(plan.arena.size).toBeGreaterThanOrEqual(liveBytesLowerBound(plan.buffers));
    });
  }

  it("within 10% of the exhaustive optimum on windows of each real schedule", () => {
    let compared = 0;
    let worst = 1;
    for (const file of files) {
      const { plan } = compileDefault(file);
      // Windows of consecutive buffers keep the exhaustive search within its limit.
      const sorted = [...plan.buffers].sort((a, b) => a.start - b.start || a.id - b.id);
      for (let i = 0; i + 6 <= sorted.length; i += 2) {
        const window = sorted.slice(i, i + 6);
        const optimum = planArenaExhaustive(window).size;
        const ours = planArena(window).size;
        worst = Math.max(worst, ours / optimum);
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(10);
    expect(worst).toBeLessThanOrEqual(1.1);
  });
});
