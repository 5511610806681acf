// The runtime follows the plan: under a device budget that holds only part of the experts, every tiny
// model generates exactly what it generates fully resident (logits bit for bit: the same kernels read the
// same bytes, only from cache slots), the peak stays within the budget, the expert cache shows its misses
// and loads, and the accountant's bytes per category are the planner's, to the byte.
import { afterAll, describe, expect, it } from "vitest";
import { compileModel } from "../../compiler/compile.ts";
import { loadSpec } from "../../compiler/lang/frontend.ts";
import { devicePlanner } from "../../compiler/plan/device.ts";
import { importModuleSource, ModelInstance, type RuntimeOptions } from "../model.ts";
import { findScheme, getScheme, registerScheme } from "../quant/registry.ts";
import { randomWeights } from "../weights.ts";
import { LABEL, measureDevice, minimumSlots } from "./device-plan.ts";
import { hitRate } from "./memory-stats.ts";

// f32 without its WebAssembly piece: the expert kernel's TypeScript branch, reading experts at the
// addresses the runtime gives.
if (!findScheme("f32_ts")) {
  const { wasm: _, ggmlType: __, ...f32 } = getScheme("f32");
  registerScheme({ ...f32, name: "f32_ts", description: "f32 with TypeScript kernels only (tests)" });
}

const CONTEXT = 64;
const TOKENS = 40;

const cases = [
  // top-2 of 4 experts, WebAssembly kernels; 40% of the weights is less than the top-2 minimum
  { spec: "specs/tiny-mixtral.moe", quant: "q8_0", head: "lm_head" },
  // top-1 of 8: 40% of the weights leaves 2 experts per layer on the device
  { spec: "specs/tiny-top1.moe", quant: "q4_0", head: "lm_head" },
  // top-4 of 8 beside a shared expert, every kernel in TypeScript
  { spec: "specs/tiny-shared-expert.moe", quant: "f32_ts", head: undefined },
];

const open: ModelInstance[] = [];
afterAll(() => {
  for (const m of open) m.close();
});

async function setup(spec: string, quant: string, head: string | undefined) {
  const checked = loadSpec(spec);
  const model = checked.models[0]!;
  const compiled = compileModel(checked, model, { quant, maxContext: CONTEXT });
  const module = await importModuleSource(compiled.files["model.js"]!);
  const weights = randomWeights(compiled.manifest, { seed: 21, headKey: head, headScale: 4 });
  const load = (o: RuntimeOptions = {}) => {
    const m = new ModelInstance(module, weights, o);
    open.push(m);
    return m;
  };
  return { model, manifest: compiled.manifest, load };
}

/** Greedy decoding from token 1; the tokens and every step's logits. */
function greedy(m: ModelInstance, n = TOKENS): { tokens: number[]; logits: Float32Array[] } {
  const tokens: number[] = [];
  const logits: Float32Array[] = [];
  let t = 1;
  for (let pos = 0; pos < n; pos++) {
    const l = m.step(t, pos);
    logits.push(l.slice());
    let best = 0;
    for (let i = 1; i < l.length; i++) if (l[i]! > l[best]!) best = i;
    tokens.push(best);
    t = best;
  }
  return { tokens, logits };
}

describe("a device budget holding part of the experts", () => {
  for (const c of cases) {
    it(`${c.spec} at ${c.quant}: same logits as fully resident, within budget, as planned`, async () => {
      const { model, manifest, load } = await setup(c.spec, c.quant, c.head);
      const full = load();
      const by = full.rt.placed.accountant.byLabel();
      const weightBytes = by[LABEL.weights]! + by[LABEL.norms]! + by[LABEL.experts]!;
      const rest = full.rt.placed.accountant.used - weightBytes;
      const minimum = measureDevice(manifest, minimumSlots(manifest)).used;
      const budget = Math.max(rest + Math.round(0.4 * weightBytes), minimum);

      const part = load({ deviceBudget: budget });
      const acct = part.rt.placed.accountant;
      const moe = manifest.moe![0]!;
      expect(part.rt.placed.residency.slots[0]).toBeLessThan(moe.experts);
      expect(part.rt.placed.residency.slots[0]).toBeGreaterThanOrEqual(moe.topK);

      // The accountant's figures are the planner's, category by category.
      const planner = devicePlanner(model, c.quant);
      const plan = planner.plan({ budgetBytes: budget, context: CONTEXT });
      expect(acct.byLabel()).toEqual(plan.allocations);
      expect(acct.used).toBe(plan.device_bytes);
      expect(part.rt.heap.bytes).toBe(plan.device_bytes);
      const fullPlan = planner.plan({ budgetBytes: 2 ** 32, context: CONTEXT });
      expect(full.rt.placed.accountant.byLabel()).toEqual(fullPlan.allocations);
      expect(fullPlan.experts.cache_slots_per_layer).toBe(moe.experts);

      const want = greedy(full);
      const got = greedy(part);
      expect(got.tokens).toEqual(want.tokens);
      expect(got.logits).toEqual(want.logits);

      const s = part.memory();
      expect(s.peak_device_bytes).toBeLessThanOrEqual(budget);
      expect(s.peak_device_bytes).toBe(acct.used);
      expect(s.budget_bytes).toBe(budget);
      expect(s.expert_misses).toBeGreaterThan(0);
      expect(s.bytes_loaded).toBeGreaterThan(0);
      expect(s.expert_hits + s.expert_misses).toBe(TOKENS * moe.layers * moe.topK);
      expect(s.host_expert_bytes).toBe(plan.host_expert_bytes);
      expect(full.memory()).toMatchObject({ expert_misses: 0, bytes_loaded: 0 });
    });
  }

  it("with 2 threads and with LFU: the same tokens", async () => {
    const { manifest, load } = await setup("specs/tiny-mixtral.moe", "q8_0", "lm_head");
    const budget = measureDevice(manifest, minimumSlots(manifest)).used;
    const want = greedy(load()).tokens;
    const two = load({ deviceBudget: budget, threads: 2 });
    expect(two.rt.pool).toBeDefined();
    expect(greedy(two).tokens).toEqual(want);
    expect(two.memory().expert_misses).toBeGreaterThan(0);
    const lfu = load({ deviceBudget: budget, policy: "lfu" });
    expect(lfu.rt.placed.caches[0]!.policyName).toBe("lfu");
    expect(greedy(lfu).tokens).toEqual(want);
  });

  it("prefetch changes which experts are loaded when, never the tokens", async () => {
    const { manifest, load } = await setup("specs/tiny-mixtral.moe", "q8_0", "lm_head");
    const budget = measureDevice(manifest, minimumSlots(manifest)).used;
    const on = load({ deviceBudget: budget });
    const off = load({ deviceBudget: budget, prefetch: false });
    expect(greedy(on).tokens).toEqual(greedy(off).tokens);
    expect(on.memory().prefetch_loads).toBeGreaterThan(0);
    expect(on.memory().prefetch_hits).toBeGreaterThan(0);
    expect(off.memory().prefetch_loads).toBe(0);
    expect(hitRate(on.memory())).toBeDefined();
  });

  it("a budget below the minimum is refused with the numbers", async () => {
    const { manifest, load } = await setup("specs/tiny-mixtral.moe", "q8_0", "lm_head");
    const minimum = measureDevice(manifest, minimumSlots(manifest)).used;
    expect(() => load({ deviceBudget: minimum - 1 })).toThrow(
      new RegExp(`needs at least .*\\(${minimum} bytes\\).*2 expert slots per layer.*1 bytes short`),
    );
  });
});
