// The MoE families after Mixtral, as written in specs/: their parameter counts are the published ones
// (within 2%), and each plans at Q4_K_M on a 24 GiB card and in 8 GiB.
import { describe, expect, it } from "vitest";
import { inspect } from "./inspect.ts";
import { loadSpec } from "./lang/frontend.ts";
import { devicePlanner } from "./plan/device.ts";
import { pickQuant } from "./select.ts";

const GiB = 2 ** 30;

// [spec, total, active]; Granite counts its 800M active without the (tied) embedding table.
const published: [string, number, number, "with" | "without"][] = [
  ["specs/qwen3-30b-a3b.moe", 30.5e9, 3.3e9, "with"],
  ["specs/qwen1.5-moe-a2.7b.moe", 14.3e9, 2.7e9, "with"],
  ["specs/olmoe-1b-7b.moe", 6.9e9, 1.3e9, "with"],
  ["specs/granite-3.0-3b-a800m.moe", 3.3e9, 0.8e9, "without"],
];

describe("published sizes", () => {
  for (const [file, total, active, embeddings] of published) {
    it(`${file}: ${total / 1e9}B total, ${active / 1e9}B active`, () => {
      const spec = loadSpec(file);
      const p = inspect(spec.models[0]!, spec.quants).params;
      expect(Math.abs(p.total / total - 1)).toBeLessThan(0.02);
      const a = embeddings === "with" ? p.active : p.active - p.breakdown.embeddings.active;
      expect(Math.abs(a / active - 1)).toBeLessThan(0.02);
      // Every weight has a role: the q/k norms are norms, the biases attention, nothing falls to ffn
      // but the shared expert and its gate.
      expect(p.breakdown.attention.total).toBeGreaterThan(0);
      expect(p.breakdown.experts.active).toBeLessThan(p.breakdown.experts.total);
    });
  }
});

describe("plans at q4_k_m", () => {
  for (const [file] of published) {
    it(`${file} in 24 GiB and 8 GiB`, () => {
      const spec = loadSpec(file);
      const model = spec.models[0]!;
      const planner = devicePlanner(model, pickQuant(spec, model, "q4_k_m"));
      for (const budget of [24 * GiB, 8 * GiB]) {
        const plan = planner.plan({ budgetBytes: budget, context: 4096 });
        expect(plan.fits, `${file} in ${budget / GiB} GiB`).toBe(true);
        expect(plan.device_bytes).toBeLessThanOrEqual(budget);
        expect(plan.experts.cache_slots_per_layer).toBeGreaterThanOrEqual(plan.experts.top_k);
      }
    });
  }
});
