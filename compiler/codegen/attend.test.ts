// The CPU attention (templates/attend.hbs, attention.wat.hbs) against the reference executor for every KV
// cache type, with and without a sliding window, over more keys than one tile (ATTEND_TILE) and through
// the batched prefill (blocks of queries against tiles of keys) as well as one token at a time. The
// reference stores K and V rounded as the cache does (runtime/kv-type.ts roundKv), so what is left is the
// kernels' f32 arithmetic against the reference's f64. And the prefill against the same prompt stepped
// token by token: bit for bit, for every cache type and window (a score's arithmetic does not depend on
// how many tokens share a tile).
import { describe, expect, it } from "vitest";
import { KV_TYPES } from "../../runtime/kv-type.ts";
import { importModuleSource, ModelInstance } from "../../runtime/model.ts";
import { randomWeights } from "../../runtime/weights.ts";
import { compileAndLoad, relativeError } from "../../test/harness.ts";
import { windowSpec } from "../../test/window-spec.ts";
import { ATTEND_TILE } from "./kernels.ts";

const CONTEXT = ATTEND_TILE + 64;

/**
 * Largest relative logit error against the reference. f32: the kernels' f32 sums (q·k, Σ e·v, by tiles) against
 * the reference's f64 (measured 1.2e-6). A narrower cache adds rounding flips: the kernels' K and V come out
 * of f32 products that differ from the reference's in the last bit, and an element within that of a rounding
 * midpoint is stored one step away, an f16 ulp (2^-11 relative) or a q8_0 step (1/127 of its block's max);
 * with a q8_0 cache the queries' q8_0 blocks (which the reference takes too) can flip the same way:
 * measured 2.0e-4 (f16, window 40) and 6.2e-5 (q8_0). Bounds: 10× the f32 measure, and for the narrow types
 * what a handful of such flips can do.
 */
const BOUND = { f32: 2e-5, f16: 2e-3, q8_0: 1e-2 } as const;

describe("cpu attention", () => {
  it("refuses positions past the compiled context, with the numbers", async () => {
    const p = await compileAndLoad(windowSpec(0, CONTEXT), "f32", 3, 64, 1, "f16");
    expect(() => p.generated.prefill([1, 2, 3, 4], 62)).toThrow(
      "positions 62 to 65 are outside the context of 64",
    );
    expect(() => p.generated.step(1, 64)).toThrow("position 64 is outside the context of 64");
  });

  for (const window of [0, 40]) {
    for (const kvType of KV_TYPES) {
      it(`${kvType} cache${window ? `, window ${window}` : ""}: prefill past a tile (as stepping, bit for bit), then decode, as the reference`, async () => {
        const p = await compileAndLoad(windowSpec(window, CONTEXT), "f32", 3, CONTEXT, 1, kvType);
        expect(p.compiled.manifest.kvType).toBe(kvType);
        const prompt = Array.from({ length: ATTEND_TILE + 20 }, (_, i) => (i * 37 + 5) % 64);
        let want: Float32Array = new Float32Array(0);
        for (let i = 0; i < prompt.length; i++) want = p.reference.step(prompt[i]!, i);
        const got = Float32Array.from(p.generated.prefill(prompt));
        const module = await importModuleSource(p.compiled.files["model.js"]!);
        const one = new ModelInstance(module, randomWeights(p.compiled.manifest, { seed: 3 }), {
          threads: 1,
        });
        let stepped: Float32Array = new Float32Array(0);
        for (let i = 0; i < prompt.length; i++) stepped = one.step(prompt[i]!, i);
        expect(stepped, "stepped token by token").toEqual(got);
        one.close();
        let worst = relativeError(got, want);
        for (let pos = prompt.length; pos < prompt.length + 4; pos++) {
          const t = (pos * 11) % 64;
          worst = Math.max(worst, relativeError(p.generated.step(t, pos), p.reference.step(t, pos)));
        }
        if (process.env.MOEC_ATTEND_REPORT) console.log(kvType, window, worst);
        expect(worst).toBeLessThan(BOUND[kvType]);
      }, 60_000);
    }
  }
});
