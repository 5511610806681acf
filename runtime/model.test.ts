// ModelInstance's sequences: each has its own KV caches in the heap, planned with the rest, and
// switching between them (useSequence) gives every sequence exactly the logits it gets alone, on an MoE
// with the experts in a cache and on its batched prefill.
import { afterAll, describe, expect, it } from "vitest";
import { compileModel } from "../compiler/compile.ts";
import { loadSpec } from "../compiler/lang/frontend.ts";
import { withSequences } from "./manifest.ts";
import { measureDevice, minimumSlots } from "./memory/device-plan.ts";
import { importModuleSource, ModelInstance } from "./model.ts";
import { randomWeights } from "./weights.ts";

const open: ModelInstance[] = [];
afterAll(() => {
  for (const m of open) m.close();
});

async function setup(quant = "f32") {
  const checked = loadSpec("specs/tiny-mixtral.moe");
  const compiled = compileModel(checked, checked.models[0]!, { quant, maxContext: 64 });
  const module = await importModuleSource(compiled.files["model.js"]!);
  const weights = randomWeights(compiled.manifest, { seed: 5 });
  return { module, weights, manifest: compiled.manifest };
}

const argmax = (x: Float32Array) => x.indexOf(Math.max(...x));

/** Greedy decoding of `prompt` on sequence `seq`, one step per call. The logits are a view into the arena,
 * which every sequence shares, so the token is taken at once, before another sequence runs. */
function decoder(m: ModelInstance, seq: number, prompt: number[]) {
  m.useSequence(seq);
  let token = argmax(m.prefill(prompt, 0));
  let pos = prompt.length;
  const out = [token];
  return () => {
    m.useSequence(seq);
    token = argmax(m.step(token, pos++));
    out.push(token);
    return out;
  };
}

describe("ModelInstance sequences", () => {
  it("interleaved sequences decode exactly as each alone", async () => {
    const { module, weights, manifest } = await setup();
    // Experts through a cache of top-k slots: the cache is shared, the KV caches are not.
    const budget = measureDevice(withSequences(manifest, 3), minimumSlots(manifest)).used;
    const both = new ModelInstance(module, weights, { sequences: 3, deviceBudget: budget });
    open.push(both);
    expect(both.sequences).toBe(3);
    const prompts = [[1, 2, 3, 4, 5], [9, 8], [7]];
    const alone = prompts.map((p) => {
      const one = new ModelInstance(module, weights, { deviceBudget: budget });
      open.push(one);
      const next = decoder(one, 0, p);
      let out: number[] = [];
      for (let i = 0; i < 6; i++) out = next();
      return out;
    });
    const nexts = prompts.map((p, s) => decoder(both, s, p));
    let outs: number[][] = [];
    for (let i = 0; i < 6; i++) outs = nexts.map((n) => n());
    expect(outs).toEqual(alone);
    expect(() => both.useSequence(3)).toThrow(/sequence 3 does not exist \(the model has 3\)/);
  });

  // Batched decoding: one generated `decode` call steps every sequence, reading each weight and chosen
  // expert once; each token must get exactly the logits its sequence gets stepped alone.
  for (const [quant, threads] of [
    ["f32", 1],
    ["q8_0", 2],
    ["q4_k", 1],
  ] as const) {
    it(`stepBatch gives each sequence its logits alone (${quant}, ${threads} thread${threads > 1 ? "s" : ""})`, async () => {
      const { module, weights, manifest } = await setup(quant);
      expect(module.decode).toBeDefined();
      const budget = measureDevice(withSequences(manifest, 4), minimumSlots(manifest)).used;
      const options = { deviceBudget: budget, threads };
      const prompts = [[1, 2, 3, 4, 5], [9, 8], [7], [3, 1, 4, 1, 5, 9, 2, 6]];
      const alone = prompts.map((p) => {
        const one = new ModelInstance(module, weights, options);
        open.push(one);
        let token = argmax(one.prefill(p, 0));
        const logits: Float32Array[] = [];
        for (let i = 0; i < 5; i++) {
          logits.push(one.step(token, p.length + i).slice());
          token = argmax(logits.at(-1)!);
        }
        return logits;
      });
      const all = new ModelInstance(module, weights, { ...options, sequences: 4 });
      open.push(all);
      const tokens = prompts.map((p, s) => {
        all.useSequence(s);
        return argmax(all.prefill(p, 0));
      });
      // Sequence 2 sits out the second step: a batch is whichever sequences are decoding.
      for (let i = 0; i < 5; i++) {
        const seqs = i === 1 ? [3, 0, 1] : [3, 0, 1, 2];
        const step = i > 1 && seqs.includes(2) ? (s: number) => (s === 2 ? i - 1 : i) : () => i;
        const out = all.stepBatch(
          seqs.map((s) => tokens[s]!),
          seqs.map((s) => prompts[s]!.length + step(s)),
          seqs,
        );
        seqs.forEach((s, k) => {
          expect(out[k], `sequence ${s}, step ${step(s)}`).toEqual(alone[s]![step(s)]);
          tokens[s] = argmax(out[k]!);
        });
      }
      expect(() => all.stepBatch([1, 2], [0, 0], [1, 1])).toThrow(/each sequence at most once/);
      expect(() => all.stepBatch([1], [64], [0])).toThrow(/position 64 is outside the context of 64/);
    });
  }

  it("every sequence's KV caches are planned: N sequences need N times the KV bytes", async () => {
    const { manifest } = await setup();
    const slots = minimumSlots(manifest);
    const one = measureDevice(manifest, slots).byLabel.kv!;
    expect(measureDevice(withSequences(manifest, 4), slots).byLabel.kv).toBe(4 * one);
    expect(() => withSequences(manifest, 0)).toThrow(/expected a whole number ≥ 1, found 0/);
  });
});
