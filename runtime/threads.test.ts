// Threads split each WebAssembly product by rows, and every row is computed by the same code whichever
// thread runs it: the logits must be identical bit for bit to the single-threaded run, for any count.
import { describe, expect, it } from "vitest";
import { compileAndLoad } from "../test/harness.ts";
import { ModelInstance } from "./model.ts";
import { GENERATION, PENDING, rowGranule, shareStart } from "./threads.ts";
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

describe("the pool's wake-ups", () => {
  it("a late wake-up runs nothing: a call is run once per generation, and the next call still completes", async () => {
    // The main thread bumps the generation, then notifies. If it is descheduled in between, the worker may
    // see the new generation while spinning, run the call, go to sleep, and only then get the notify. A
    // worker that ran whatever it woke to ran that call twice: pending went to -1 and the next call waited
    // for it forever (seen in the serve load test). Here the late notify is sent by hand.
    const { generated: one, compiled } = await compileAndLoad("specs/tiny-mixtral.moe", "q4_0", 5);
    const two = new ModelInstance(one.module, randomWeights(compiled.manifest, { seed: 5 }), { threads: 2 });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    try {
      const c = two.rt.pool!.c;
      for (let pos = 0; pos < 3; pos++) {
        const want = one.step(pos + 1, pos).slice();
        expect(two.step(pos + 1, pos)).toEqual(want);
        // The worker spins for well under a millisecond, then sleeps in Atomics.wait.
        await sleep(20);
        const generation = Atomics.load(c, GENERATION);
        Atomics.notify(c, GENERATION);
        await sleep(20);
        expect(Atomics.load(c, GENERATION)).toBe(generation);
        expect(Atomics.load(c, PENDING), "no share is counted twice").toBe(0);
      }
    } finally {
      two.close();
    }
  });
});

describe("how a call's rows are shared", () => {
  const shares = (rows: number, threads: number, granule: number) =>
    Array.from({ length: threads + 1 }, (_, i) => shareStart(rows, i, threads, granule));

  it("kernels over interleaved rows take whole groups of 8; the others any rows, attention's 2 KV heads 1 each", () => {
    expect(rowGranule("mvq_q4_0x8_640")).toBe(8);
    expect(rowGranule("mmq_q4_0x8_640")).toBe(8);
    expect(rowGranule("mvq_q4_0_640")).toBe(1);
    expect(rowGranule("mva_f16_64_256_h2_g4")).toBe(1);
    expect(shares(2, 2, 1)).toEqual([0, 1, 2]);
    expect(shares(1792, 2, 8)).toEqual([0, 896, 1792]);
    expect(shares(24, 2, 8)).toEqual([0, 8, 24]);
    expect(shares(131, 3, 1)).toEqual([0, 43, 87, 131]);
  });
});
