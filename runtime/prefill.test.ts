// The batched prefill (the generated module's `prefill`, through ModelInstance.prefill) against stepping
// the same prompt token by token: the last position's logits, and then the KV caches every position left
// (the next decoded token's logits), must be identical bit for bit. Each matrix-matrix column runs the
// matrix-vector kernel's arithmetic in the same order (compiler/codegen/matmul.test.ts), the MoE adds its
// experts' outputs in pick order, and everything else is the one-token kernel per token, so the
// tolerance is zero. Checked on every tiny spec across schemes (WebAssembly pieces and the TypeScript
// fallback), with 1 and 2 threads, across batch boundaries (prompts longer than a batch), and with an
// expert budget that leaves the experts in a cache fed from host memory.
import { afterAll, describe, expect, it } from "vitest";
import { compileModel } from "../compiler/compile.ts";
import { loadSpec } from "../compiler/lang/frontend.ts";
import { measureDevice, minimumSlots } from "./memory/device-plan.ts";
import { importModuleSource, ModelInstance, type RuntimeOptions } from "./model.ts";
import { findScheme, getScheme, registerScheme } from "./quant/registry.ts";
import { randomWeights } from "./weights.ts";

if (!findScheme("f32_ts")) {
  const { wasm: _, ggmlType: __, ...f32 } = getScheme("f32");
  registerScheme({ ...f32, name: "f32_ts", description: "f32 with TypeScript kernels only (tests)" });
}

const CONTEXT = 160;

const open: ModelInstance[] = [];
afterAll(() => {
  for (const m of open) m.close();
});

async function setup(spec: string, quant: string) {
  const checked = loadSpec(spec);
  const compiled = compileModel(checked, checked.models[0]!, { quant, maxContext: CONTEXT });
  const module = await importModuleSource(compiled.files["model.js"]!);
  const weights = randomWeights(compiled.manifest, { seed: 11 });
  const load = (o: RuntimeOptions = {}) => {
    const m = new ModelInstance(module, weights, o);
    open.push(m);
    return m;
  };
  return { manifest: compiled.manifest, module, load };
}

const prompt = (n: number, vocab: number) => Array.from({ length: n }, (_, i) => (i * 37 + 3) % vocab);

/** Last logits of the prompt stepped token by token, then the next token's. */
function stepped(m: ModelInstance, tokens: number[]) {
  let last: Float32Array = new Float32Array(0);
  tokens.forEach((t, p) => {
    last = m.step(t, p);
  });
  const logits = last.slice();
  return { logits, next: m.step(1, tokens.length).slice() };
}

function batched(m: ModelInstance, tokens: number[]) {
  const logits = m.prefill(tokens).slice();
  return { logits, next: m.step(1, tokens.length).slice() };
}

const cases = [
  {
    spec: "specs/tiny-mixtral.moe",
    quants: ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "f16", "bf16", "f32_ts"],
  },
  { spec: "specs/tiny-top1.moe", quants: ["q8_0", "f32"] },
  { spec: "specs/tiny-shared-expert.moe", quants: ["q4_0", "f32_ts"] },
  { spec: "test/fixtures/unfused.moe", quants: ["q8_0"] },
];

describe("batched prefill gives the logits of stepping token by token, bit for bit", () => {
  for (const { spec, quants } of cases) {
    for (const quant of quants) {
      it(`${spec} at ${quant}, 1 and 2 threads`, async () => {
        const { manifest, module, load } = await setup(spec, quant);
        expect(module.prefill).toBeDefined();
        expect(manifest.prefill!.tokens).toBeGreaterThan(1);
        // The tokens' copies of the arena, then (integer kernels) one quantized vector per token.
        const copies = manifest.prefill!.tokens * manifest.prefill!.strideBytes;
        const q8 = manifest.q8Scratch;
        expect(q8 !== undefined).toBe(quant === "q8_0" || quant === "q4_0");
        if (q8) expect(q8.offset).toBe(copies);
        if (q8) expect(q8.vectors).toBe(manifest.prefill!.tokens);
        expect(manifest.arenaBytes).toBe(
          q8 ? copies + q8.vectors * q8.bytes + Math.ceil((q8.vectors * 4) / 64) * 64 : copies,
        );
        // One token, a partial batch, and more than a batch (the second batch starts at pos0 > 0).
        for (const n of [1, 13, manifest.prefill!.tokens + 7]) {
          const tokens = prompt(n, manifest.vocab);
          const want = stepped(load(), tokens);
          for (const threads of [1, 2]) {
            const got = batched(load({ threads }), tokens);
            expect(got.logits, `${n} tokens, ${threads} threads`).toEqual(want.logits);
            expect(got.next, `${n} tokens, ${threads} threads: the step after`).toEqual(want.next);
          }
        }
      });
    }
  }

  it("with the experts offloaded to a cache of top-k slots per layer", async () => {
    for (const [spec, quant] of [
      ["specs/tiny-mixtral.moe", "q8_0"],
      ["specs/tiny-top1.moe", "q4_0"],
    ] as const) {
      const { manifest, load } = await setup(spec, quant);
      const budget = measureDevice(manifest, minimumSlots(manifest)).used;
      const tokens = prompt(50, manifest.vocab);
      const want = stepped(load(), tokens);
      for (const threads of [1, 2]) {
        const m = load({ deviceBudget: budget, threads });
        expect(m.rt.placed.caches.length).toBeGreaterThan(0);
        const got = batched(m, tokens);
        expect(got.logits).toEqual(want.logits);
        expect(got.next).toEqual(want.next);
        const s = m.memory();
        expect(s.peak_device_bytes).toBeLessThanOrEqual(budget);
        // Each expert is fetched once per layer per batch: at most experts × layers lookups for the prompt.
        const e = manifest.moe![0]!;
        expect(s.expert_hits + s.expert_misses).toBeLessThanOrEqual(e.experts * e.layers + e.topK * e.layers);
      }
    }
  });
});
