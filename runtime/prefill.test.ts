// The batched prefill (the generated module's `prefill`, through ModelInstance.prefill) against stepping
// the same prompt token by token: the last position's logits, and then the KV caches every position left
// (the next decoded token's logits). With the f32 matrix-matrix kernels the two are identical bit for bit:
// each column runs the matrix-vector kernel's arithmetic in the same order (compiler/codegen/matmul.test.ts),
// the MoE adds its experts' outputs in pick order, and everything else is the one-token kernel per token.
// Schemes with an integer piece (q8_0, q4_0) quantize each activation vector to q8 blocks the same way in
// both, so they too are identical bit for bit. Also:
// the batched logits do not depend on the thread count, nor on whether the experts are resident or come
// through a cache: bit for bit. Checked on every tiny spec across schemes (WebAssembly pieces and the
// TypeScript fallback), with 1 and 2 threads, across batch boundaries, and with an expert budget that
// leaves the experts in a cache of top-k slots per layer.
import { afterAll, describe, expect, it } from "vitest";
import { compileModel } from "../compiler/compile.ts";
import { loadSpec } from "../compiler/lang/frontend.ts";
import { measureDevice, minimumSlots } from "./memory/device-plan.ts";
import { importModuleSource, ModelInstance, type RuntimeOptions } from "./model.ts";
import { q8RegionBytes } from "./q8-kernels.ts";
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
  // Top-1 with int8 activations: a token whose router sits near a tie may pick the other expert, which
  // moves its logits by far more than the rounding (17% here at q8_0); the int8 path is checked on it
  // against itself (threads, offloaded experts) below.
  { spec: "specs/tiny-top1.moe", quants: ["q5_1", "f32"] },
  { spec: "specs/tiny-shared-expert.moe", quants: ["q4_0", "f32_ts"] },
  { spec: "test/fixtures/unfused.moe", quants: ["q8_0"] },
];

/** The int8 path's bound on |batched − stepped| relative to the largest logit (at least 1). */
function expectSame(got: ReturnType<typeof batched>, want: ReturnType<typeof stepped>, what: string) {
  expect(got.logits, what).toEqual(want.logits);
  expect(got.next, `${what}: the step after`).toEqual(want.next);
}

describe("batched prefill against stepping token by token", () => {
  for (const { spec, quants } of cases) {
    for (const quant of quants) {
      it(`${spec} at ${quant}: bit for bit, with 1 and 2 threads`, async () => {
        const { manifest, module, load } = await setup(spec, quant);
        expect(module.prefill).toBeDefined();
        expect(manifest.prefill!.tokens).toBeGreaterThan(1);
        // The tokens' copies of the arena, then (integer kernels) the matrix-vector kernels' q8 region, then
        // the scratch one call uses for all the batch's tokens (attention's transposed keys and widened values).
        const copies = manifest.prefill!.tokens * manifest.prefill!.strideBytes;
        const q8 = manifest.q8Scratch;
        expect(q8 !== undefined).toBe(getScheme(quant).wasm?.q8 !== undefined);
        if (q8) expect(q8.offset).toBe(copies);
        const shared = manifest.sharedScratch!;
        expect(shared.offset).toBe(q8 ? copies + q8RegionBytes(q8.bytes) : copies);
        expect(shared.bytes).toBeGreaterThan(0);
        expect(manifest.arenaBytes).toBe(shared.offset + shared.bytes);
        // One token, a partial batch, and more than a batch (the second batch starts at pos0 > 0).
        for (const n of [1, 13, manifest.prefill!.tokens + 7]) {
          const tokens = prompt(n, manifest.vocab);
          const want = stepped(load(), tokens);
          const one = batched(load(), tokens);
          expectSame(one, want, `${n} tokens`);
          const two = batched(load({ threads: 2 }), tokens);
          expect(two.logits, `${n} tokens, 2 threads`).toEqual(one.logits);
          expect(two.next, `${n} tokens, 2 threads: the step after`).toEqual(one.next);
        }
      });
    }
  }

  it("with the experts offloaded to a cache of top-k slots per layer: the resident logits exactly", async () => {
    for (const [spec, quant] of [
      ["specs/tiny-mixtral.moe", "q8_0"],
      ["specs/tiny-top1.moe", "q4_0"],
      ["specs/tiny-mixtral.moe", "q5_0"],
    ] as const) {
      const { manifest, load } = await setup(spec, quant);
      const budget = measureDevice(manifest, minimumSlots(manifest)).used;
      const tokens = prompt(50, manifest.vocab);
      const resident = batched(load(), tokens);
      for (const threads of [1, 2]) {
        const m = load({ deviceBudget: budget, threads });
        expect(m.rt.placed.caches.length).toBeGreaterThan(0);
        const got = batched(m, tokens);
        expect(got.logits).toEqual(resident.logits);
        expect(got.next).toEqual(resident.next);
        const s = m.memory();
        expect(s.peak_device_bytes).toBeLessThanOrEqual(budget);
        // Each expert is fetched once per layer per batch: at most experts × layers lookups for the
        // prompt, and top-k per layer for the step after.
        const e = manifest.moe![0]!;
        expect(s.expert_hits + s.expert_misses).toBeLessThanOrEqual(e.experts * e.layers + e.topK * e.layers);
      }
    }
  });
});
