// The MoE families after Mixtral from Hugging Face folders: a small random qwen3moe, qwen2moe, olmoe and
// granitemoe GGUF file written out as the folder transformers would save (hf-from-gguf.ts: config.json of
// Qwen3MoeForCausalLM, Qwen2MoeForCausalLM, OlmoeForCausalLM or GraniteMoeForCausalLM, safetensors under
// the Hugging Face names; one tensor per expert for the Qwens and OLMoE, Granite's gate and up fused in
// input_linear). `moec run FOLDER`'s path (the spec imported from config.json, compiled, the weights read
// from the safetensors) must give the GGUF run's greedy tokens and logits to f32 rounding, and llama.cpp's
// tokens on the GGUF file. The folders hold the same f32 numbers; the GGUF run and llama.cpp are compared
// at length in families.test.ts.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadForRun } from "../../cli/model-source.ts";
import { type RandomMixtralOptions, writeRandomMixtralGguf } from "../../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../../runtime/checkpoint/test-support.ts";
import { ModelInstance } from "../../runtime/model.ts";
import { writeHfFromGguf } from "../hf-from-gguf.ts";
import { llamaGreedy, loadLlamaCpp, loadMoec, maxAbsDiff, moecGreedy } from "./engines.ts";

const CONTEXT = 64;
const GENERATE = 12;
const VOCAB = 320;
const PROMPT = [1, 300, 17, 42, 299, 5, 128, 77];

const BASE = { hidden: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 32, experts: 6, topK: 2, context: CONTEXT };
const FAMILIES: { family: RandomMixtralOptions["family"]; o: Partial<RandomMixtralOptions> }[] = [
  { family: "qwen3moe", o: { headDim: 32, topK: 3, ropeTheta: 1e6, eps: 1e-6 } },
  { family: "qwen2moe", o: { sharedFfn: 64, ropeTheta: 1e6, eps: 1e-6 } },
  { family: "olmoe", o: { kvHeads: 4, eps: 1e-5 } },
  {
    family: "granitemoe",
    o: { multipliers: { embedding: 2, residual: 0.5, attention: 1 / 8, logits: 2 }, tiedHead: true },
  },
];

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

describe.each(FAMILIES)("$family from a Hugging Face folder", ({ family, o }) => {
  const gguf = join(dir, `${family}.gguf`);
  const folder = join(dir, `${family}-hf`);

  it("gives the GGUF file's greedy tokens and logits, and llama.cpp's tokens", async () => {
    writeRandomMixtralGguf(gguf, {
      ...BASE,
      ...o,
      family,
      type: "f32",
      vocab: VOCAB,
      headScale: 4,
      seed: 11,
      name: `${family} hf`,
    });
    writeHfFromGguf(gguf, folder);
    const config = JSON.parse(readFileSync(join(folder, "config.json"), "utf8"));
    const modelType: Record<string, string> = { qwen3moe: "qwen3_moe", qwen2moe: "qwen2_moe" };
    expect(config.model_type).toBe(modelType[family!] ?? family);

    const fromGguf = await loadMoec(gguf, CONTEXT);
    const ours = (() => {
      try {
        return moecGreedy(fromGguf.model, PROMPT, GENERATE);
      } finally {
        fromGguf.close();
      }
    })();
    const loaded = await loadForRun(undefined, folder, { maxContext: CONTEXT, kvType: "f32" });
    let hf: ReturnType<typeof moecGreedy>;
    try {
      const model = new ModelInstance(loaded.module, loaded.weights, { threads: 1 });
      try {
        hf = moecGreedy(model, PROMPT, GENERATE);
      } finally {
        model.close();
      }
    } finally {
      loaded.close();
    }
    const llama = await loadLlamaCpp(gguf, { contextSize: CONTEXT, threads: 1 });
    let theirs: ReturnType<typeof moecGreedy>;
    try {
      theirs = await llamaGreedy(llama, PROMPT, GENERATE, VOCAB);
    } finally {
      await llama.dispose();
    }

    expect(hf.tokens).toEqual(ours.tokens);
    expect(hf.tokens).toEqual(theirs.tokens);
    expect(hf.logits.length).toBe(ours.logits.length);
    for (let p = 0; p < hf.logits.length; p++) {
      expect(maxAbsDiff(hf.logits[p]!, ours.logits[p]!)).toBeLessThan(1e-4);
    }
  }, 120_000);
});

it("`moec run FOLDER` on a Granite MoE folder prints what `moec run FILE.gguf` prints", () => {
  const run = (path: string) =>
    spawnSync(
      process.execPath,
      ["bin/moec.js", "run", path, "-p", "the cat", "-n", "8", "--temperature", "0", "--threads", "1"],
      { encoding: "utf8", timeout: 120_000 },
    );
  const fromFolder = run(join(dir, "granitemoe-hf"));
  const fromFile = run(join(dir, "granitemoe.gguf"));
  expect(fromFolder.stderr).not.toMatch(/error/i);
  expect(fromFolder.status).toBe(0);
  expect(fromFile.status).toBe(0);
  expect(fromFolder.stdout.startsWith("the cat")).toBe(true);
  expect(fromFolder.stdout).toBe(fromFile.stdout);
}, 120_000);
