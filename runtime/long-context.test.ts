// Contexts people use, on a tiny model so that the suite stays quick: a 32k-position context compiled with
// the default f16 KV cache, an 8k-token prompt through `generate` (what `moec run` calls: the batched
// prefill) against feeding it one token at a time, and decoding at position 30k against the reference. The
// memory a context costs is the KV cache alone: the arena (activations, kernel scratch, the prefill's
// per-token copies) is the same at 256 positions as at 32k.
import { describe, expect, it } from "vitest";
import { compileAndLoad, relativeError } from "../test/harness.ts";
import { windowSpec } from "../test/window-spec.ts";
import { generate } from "./generate.ts";
import { kvRowBytes } from "./kv-type.ts";
import { ModelInstance } from "./model.ts";
import { argmax, Sampler } from "./sampler.ts";
import { randomWeights } from "./weights.ts";

const CONTEXT = 32768;
const PROMPT = 8192;
const DEEP = 30000;

/**
 * Relative logit bounds. Prefill against stepping: the same attention arithmetic per token (tiles start at
 * the same keys), the products batched (matrix-matrix kernels) or not, which sum in another order: measured
 * 0 (f32 weights). Against the reference, the f16 cache's rounding as attend.test bounds it (2e-3); the
 * reference rounds K and V to f16 too, so what is left is f32 against f64 over 30k keys and a rounding flip
 * or two (measured 3.6e-7 at 30k).
 */
const STEPPED = 1e-5;
const REFERENCE = 2e-3;

describe("long contexts (tiny model, f16 KV cache)", () => {
  it("the arena does not grow with the context; the KV cache is exactly its rows", async () => {
    const small = await compileAndLoad(windowSpec(0, 256), "f32", 3, 256);
    const big = await compileAndLoad(windowSpec(0, CONTEXT), "f32", 3, CONTEXT);
    expect(big.compiled.manifest.arenaBytes).toBe(small.compiled.manifest.arenaBytes);
    // 2 layers × K and V × 2 KV heads of 32, f16.
    expect(big.compiled.manifest.kvType).toBe("f16");
    const bytes = big.generated.rt.kv.flat().reduce((n, c) => n + c.byteLength, 0);
    expect(bytes).toBe(2 * 2 * CONTEXT * kvRowBytes(64, "f16"));
    small.generated.close();
    big.generated.close();
  }, 120_000);

  it(`an ${PROMPT}-token prompt through generate (the batched prefill) gives stepping's logits and tokens; decode at position ${DEEP} as the reference`, async () => {
    const p = await compileAndLoad(windowSpec(0, CONTEXT), "f32", 3, CONTEXT);
    const prompt = Array.from({ length: PROMPT }, (_, i) => (i * 37 + 5) % 64);
    const run = generate(p.generated, prompt, { maxTokens: 4, sampler: new Sampler(64, { temperature: 0 }) });
    expect(run.tokens).toHaveLength(4);
    // Stepping the same prompt through a second instance of the same module and weights.
    const stepper = new ModelInstance(p.generated.module, randomWeights(p.compiled.manifest, { seed: 3 }));
    let logits: Float32Array = new Float32Array(0);
    for (let i = 0; i < PROMPT; i++) logits = stepper.step(prompt[i]!, i);
    const prefilled = p.generated.prefill(prompt, 0).slice();
    const stepped = relativeError(prefilled, logits);
    expect(stepped).toBeLessThan(STEPPED);
    const tokens: number[] = [];
    for (let i = 0; i < 4; i++) {
      const t = argmax(logits);
      tokens.push(t);
      logits = stepper.step(t, PROMPT + i);
    }
    expect(tokens).toEqual(run.tokens);
    stepper.close();
    // Deep decode: a short prompt, then positions from DEEP on (the keys between are the fresh cache's
    // zeros in both, which attention still reads: 30k keys per head).
    const q = await compileAndLoad(windowSpec(0, CONTEXT), "f32", 3, CONTEXT);
    for (let i = 0; i < 8; i++) {
      q.generated.step(prompt[i]!, i);
      q.reference.step(prompt[i]!, i);
    }
    let worst = 0;
    for (let pos = DEEP; pos < DEEP + 3; pos++) {
      const t = (pos * 11) % 64;
      worst = Math.max(worst, relativeError(q.generated.step(t, pos), q.reference.step(t, pos)));
    }
    if (process.env.MOEC_ATTEND_REPORT) console.log({ stepped, worst });
    expect(worst).toBeLessThan(REFERENCE);
    p.generated.close();
    q.generated.close();
  }, 300_000);
});
