// Weights whose scheme differs from layer to layer (test/fixtures/tiny-mixed.moe: ffn_down q6_k in layers 0
// and 3, q4_k in 1 and 2, as llama.cpp's Q4_K_M does; other weights mixed likewise). One kernel per distinct
// (op, shape, scheme), indexed by the layer in the one loop; decode against the reference executor, the
// batched prefill against stepping (bit for bit), experts through a cache whose slots differ in size by
// layer against resident experts (bit for bit), and the accountant's bytes against the plan's.
import { afterAll, describe, expect, it } from "vitest";
import { compileModel, dumpStages } from "../../compiler/compile.ts";
import { loadSpec } from "../../compiler/lang/frontend.ts";
import { LABEL, measureDevice, minimumSlots } from "../../runtime/memory/device-plan.ts";
import { importModuleSource, ModelInstance, type RuntimeOptions } from "../../runtime/model.ts";
import { randomWeights } from "../../runtime/weights.ts";
import { compileAndLoad, relativeError } from "../../test/harness.ts";

const SPEC = "test/fixtures/tiny-mixed.moe";
const checked = loadSpec(SPEC);
const quant = checked.quants[0]!;
const open: ModelInstance[] = [];
afterAll(() => {
  for (const m of open) m.close();
});

async function setup() {
  const compiled = compileModel(checked, checked.models[0]!, { quant, maxContext: 96 });
  const module = await importModuleSource(compiled.files["model.js"]!);
  const weights = randomWeights(compiled.manifest, { seed: 5, headKey: "lm_head", headScale: 4 });
  const load = (o: RuntimeOptions = {}) => {
    const m = new ModelInstance(module, weights, o);
    open.push(m);
    return m;
  };
  return { compiled, load };
}

describe("per-layer schemes", () => {
  it("the manifest states each layer's scheme, and the loop indexes a table of kernels", async () => {
    const { compiled } = await setup();
    const down = compiled.manifest.weights.find((w) => w.key === "layer.w_down")!;
    expect(down.scheme).toBe("mixed");
    expect(down.schemes).toEqual(["q6_k", "q4_k", "q4_k", "q6_k"]);
    const src = compiled.files["model.ts"]!;
    // One expert kernel per distinct (gate, up, down) schemes; the table names them by layer.
    expect(src).toMatch(
      /const BY_LAYER\d+ = \[moe_ffn_q4_k_q4_k_q6_k_\w+, moe_ffn_q5_k_q4_k_q4_k_\w+, moe_ffn_q5_k_q4_k_q4_k_\w+, moe_ffn_q4_k_q4_k_q6_k_\w+\];/,
    );
    expect(src.match(/^function moe_ffn_q\w+_top2_res\(/gm)).toHaveLength(2);
    // Still one layer loop in forward.
    const forward = src.slice(src.indexOf("export function forward"), src.indexOf("export function prefill"));
    expect(forward.match(/for \(let l = 0; l < 4; l\+\+\)/g)).toHaveLength(1);
  });

  it("--dump-ir shows each scheme with its layers", () => {
    const compiled = compileModel(checked, checked.models[0]!, { quant });
    const ir = dumpStages(compiled.stages, "fuse", 96);
    expect(ir).toContain("down_scheme={q6_k: 0,3 | q4_k: 1-2}");
    expect(ir).toContain("gate_scheme={q4_k: 0,3 | q5_k: 1-2}");
  });

  it("decode matches the reference executor", async () => {
    // An f32 KV cache: the f16 cache's rounding can differ from the reference's by an ulp at a midpoint
    // (compiler/codegen/attend.test.ts bounds that). The mix's products quantize their activations (q8_0
    // blocks, q8_K for the k-quants), so a value the kernels sum in another order than the reference may
    // cross a rounding boundary and land one step (max|x| / 127) away: up to about 1e-2 of the logits on
    // models this small (test/gpu-harness.ts, logitTolerance). Measured 9.8e-4 here; bound 1e-2.
    const { generated, reference, compiled } = await compileAndLoad(SPEC, quant, 3, undefined, 1, "f32");
    let worst = 0;
    for (let pos = 0; pos < 8; pos++) {
      const token = (pos * 37 + 5) % compiled.manifest.vocab;
      worst = Math.max(worst, relativeError(generated.step(token, pos), reference.step(token, pos)));
    }
    expect(worst).toBeLessThanOrEqual(1e-2);
  });

  it("the batched prefill equals stepping, bit for bit", async () => {
    const { load } = await setup();
    const tokens = Array.from({ length: 21 }, (_, i) => (i * 37 + 3) % 256);
    const a = load();
    let last = new Float32Array(0);
    tokens.forEach((t, p) => {
      last = a.step(t, p).slice();
    });
    const b = load();
    expect(b.prefill(tokens).slice()).toEqual(last);
    expect(b.step(1, tokens.length).slice()).toEqual(a.step(1, tokens.length).slice());
  });

  it("experts through a cache with per-layer slot sizes: same logits, allocated = planned", async () => {
    const { compiled, load } = await setup();
    const m = compiled.manifest;
    const least = measureDevice(m, minimumSlots(m));
    const resident = load();
    const cached = load({ deviceBudget: least.used });
    let t = 1;
    for (let pos = 0; pos < 12; pos++) {
      const want = resident.step(t, pos).slice();
      expect(cached.step(t, pos).slice()).toEqual(want);
      t = want.indexOf(Math.max(...want));
    }
    // Slots of layers 0 and 3 (q6_k down) are larger than those of layers 1 and 2 (q4_k down, q5_k gate).
    const slotBytes = cached.rt.placed.caches[0]!.slotBytes;
    expect(new Set(slotBytes).size).toBe(2);
    expect(slotBytes[0]).toBe(slotBytes[3]);
    expect(cached.rt.placed.accountant.byLabel()[LABEL.slots]).toBe(least.byLabel[LABEL.slots]);
    expect(cached.rt.placed.accountant.used).toBe(least.used);
    const stats = cached.memory();
    expect(stats.peak_device_bytes).toBe(least.used);
    expect(stats.expert_misses).toBeGreaterThan(0);
  });
});
