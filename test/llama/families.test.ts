// moec against llama.cpp on the MoE families after Mixtral: small random qwen3moe, qwen2moe, olmoe and
// granitemoe files written by moec's GGUF writer, each with a real vocabulary of its family (llama.cpp's
// ggml-vocab-qwen2 for the Qwens, gpt-neox for OLMoE, starcoder for Granite; cut to their first 1024
// tokens, see truncatedVocabulary), in f32 and quantized by moec's llama.cpp Q4_K_M preset. `moec run
// FILE.gguf`'s path (the spec imported from the metadata, compiled, run) gives the same prompt ids, the
// same 24 greedy tokens and the top-5 probabilities within the bounds compare.test.ts uses for Mixtral
// (q4_0's for Q4_K_M: ggml rounds activations to 8 bits before k-quant products, moec's kernels do not).
// The files are shaped for decisive greedy margins as compare.test.ts explains (decisiveShape).
//
// On webgpu (where an adapter exists: Mesa's lavapipe in CI) the same file, compiled for the backend as
// `moec run FILE --backend webgpu` compiles it, with the f32 KV cache llama.cpp keeps here, must give
// llama.cpp's tokens and probabilities within the same bounds, position by position (the llama.cpp run
// of the cpu test is reused, so that case must run first).
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadForRun } from "../../cli/model-source.ts";
import { openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import { findPreset, presetQuantizeOptions } from "../../runtime/checkpoint/presets.ts";
import { quantizeGguf } from "../../runtime/checkpoint/quantize.ts";
import { type RandomMixtralOptions, writeRandomMixtralGguf } from "../../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../../runtime/checkpoint/test-support.ts";
import { GpuModel, type GpuModule } from "../../runtime/gpu/model.ts";
import { needsWebGpu } from "../machine.ts";
import {
  agreement,
  argmax,
  decisiveShape,
  llamaGreedy,
  loadLlamaCpp,
  loadMoec,
  moecGreedy,
  moecGreedyBatched,
  type Trace,
} from "./engines.ts";
import { llamaVocabDir, truncatedVocabulary } from "./vocab-files.ts";

const PROMPT = "The cat and the dog were in the house, 42 of them! Où est le café?";
const GENERATE = 24;
const CONTEXT = 128;
const TOKENS = 1024;

const share = (xs: readonly number[], bound: number) => xs.filter((x) => x <= bound).length / xs.length;
const TIGHT_SHARE = 0.9;
const TOLERANCE = {
  f32: { tight: { p: 1e-5, logp: 1e-4 }, loose: { p: 1e-5, logp: 1e-4 } },
  q4_k_m: { tight: { p: 1e-2, logp: 0.2 }, loose: { p: 0.1, logp: 1.5 } },
};

// Rows of 256 (and heads of 64 or 128), so that Q4_K_M's k-quants fill their blocks.
const BASE = {
  hidden: 256,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 256,
  experts: 8,
  topK: 2,
  context: CONTEXT,
};
const FAMILIES: {
  family: RandomMixtralOptions["family"];
  vocab: string;
  o: Partial<RandomMixtralOptions>;
}[] = [
  { family: "qwen3moe", vocab: "qwen2", o: { headDim: 128, experts: 8, topK: 4, ropeTheta: 1e6, eps: 1e-6 } },
  { family: "qwen2moe", vocab: "qwen2", o: { sharedFfn: 512, ropeTheta: 1e6, eps: 1e-6 } },
  { family: "olmoe", vocab: "gpt-neox", o: { kvHeads: 4, topK: 3, eps: 1e-5 } },
  {
    family: "granitemoe",
    vocab: "starcoder",
    o: { multipliers: { embedding: 2, residual: 0.5, attention: 1 / 16, logits: 2 }, tiedHead: true },
  },
];

/** runBoth (engines.ts), with the prompt tokenized as the vocabulary says (these add no BOS). */
async function both(path: string, vocab: number) {
  const moec = await loadMoec(path, CONTEXT);
  try {
    const llama = await loadLlamaCpp(path, { contextSize: CONTEXT, threads: 2 });
    try {
      const prompt = moec.tokenizer.encode(PROMPT);
      const bos = llama.model.tokens.bos;
      const llamaPrompt = [
        ...(llama.model.tokens.shouldPrependBosToken && bos !== null ? [bos] : []),
        ...llama.model.tokenize(PROMPT),
      ];
      const ours: Trace = moecGreedy(moec.model, prompt, GENERATE);
      const batched = moecGreedyBatched(moec.model, prompt, GENERATE);
      const theirs = await llamaGreedy(llama, prompt, GENERATE, vocab);
      return { prompt, llamaPrompt, ours, batched, theirs };
    } finally {
      await llama.dispose();
    }
  } finally {
    moec.close();
  }
}

/** The webgpu backend's trace on a GGUF file: logits at every prompt position, then greedy steps. */
async function webgpuGreedy(path: string, prompt: readonly number[], n: number): Promise<Trace> {
  const loaded = await loadForRun(undefined, path, { maxContext: CONTEXT, backend: "webgpu", kvType: "f32" });
  try {
    const gpu = await GpuModel.load(loaded.module as unknown as GpuModule, loaded.weights);
    try {
      const logits: Float32Array[] = [];
      for (const [pos, t] of prompt.entries()) logits.push(Float32Array.from(await gpu.step(t, pos)));
      const tokens: number[] = [];
      for (let i = 0; i < n; i++) {
        tokens.push(argmax(logits.at(-1)!));
        if (i + 1 < n) logits.push(Float32Array.from(await gpu.step(tokens.at(-1)!, prompt.length + i)));
      }
      return { tokens, logits };
    } finally {
      gpu.close();
    }
  } finally {
    loaded.close();
  }
}

/** The bounds of compare.test.ts for `type`, on moec's trace against llama.cpp's. */
function expectAgreement(
  type: keyof typeof TOLERANCE,
  label: string,
  prompt: number[],
  ours: Trace,
  theirs: Trace,
) {
  expect(ours.tokens).toEqual(theirs.tokens);
  const m = agreement(prompt.length, GENERATE, ours, theirs);
  expect(m.logit.length).toBe(prompt.length + GENERATE - 1);
  const { tight, loose } = TOLERANCE[type];
  if (process.env.MOEC_LLAMA_REPORT)
    console.log(
      `${label} ${type}: max |Δp|, |Δ ln p|, min margin, max |Δlogit|:`,
      Math.max(...m.dp),
      Math.max(...m.dlogp),
      m.minMargin,
      Math.max(...m.logit),
    );
  expect(share(m.dp, tight.p)).toBeGreaterThanOrEqual(TIGHT_SHARE);
  expect(share(m.dlogp, tight.logp)).toBeGreaterThanOrEqual(TIGHT_SHARE);
  expect(Math.max(...m.dp)).toBeLessThanOrEqual(loose.p);
  expect(Math.max(...m.dlogp)).toBeLessThanOrEqual(loose.logp);
}

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());
const vocabDir = llamaVocabDir();

describe.each(FAMILIES)("moec vs llama.cpp, $family", ({ family, vocab, o }) => {
  const tokenizer = truncatedVocabulary(join(vocabDir, `ggml-vocab-${vocab}.gguf`), TOKENS);
  const count = (tokenizer.find(([k]) => k === "tokenizer.ggml.tokens")![1].value as unknown[]).length;
  const f32 = join(dir, `${family}-f32.gguf`);
  const llamaRuns = new Map<string, { path: string; prompt: number[]; theirs: Trace }>();
  for (const type of ["f32", "q4_k_m"] as const) {
    it(`${type}: the same prompt ids, ${GENERATE} greedy tokens and top-5 probabilities`, async () => {
      let path = f32;
      if (type === "f32") {
        writeRandomMixtralGguf(f32, {
          ...BASE,
          ...o,
          family,
          type: "f32",
          vocab: count,
          tokenizer,
          headScale: 4,
          seed: 5,
          name: `${family} comparison`,
        });
      } else {
        // Shaped for decisive margins, then quantized as llama-quantize's Q4_K_M chooses types.
        const src = join(dir, `${family}-src.gguf`);
        writeRandomMixtralGguf(src, {
          ...BASE,
          ...o,
          family,
          type: "f32",
          vocab: count,
          tokenizer,
          ...decisiveShape(BASE.hidden),
          // The successor margins live in output.weight: Granite's head is untied here (llama.cpp reads
          // either; the f32 file checks the tied head).
          tiedHead: false,
          seed: 6,
          name: `${family} comparison`,
        });
        path = join(dir, `${family}-q4_k_m.gguf`);
        const file = openGguf(src);
        try {
          quantizeGguf(src, path, presetQuantizeOptions(file, findPreset("Q4_K_M")!));
        } finally {
          file.close();
        }
      }
      const { prompt, llamaPrompt, ours, batched, theirs } = await both(path, count);
      expect(prompt).toEqual(llamaPrompt);
      expect(batched.tokens).toEqual(theirs.tokens);
      expectAgreement(type, family!, prompt, ours, theirs);
      llamaRuns.set(type, { path, prompt, theirs });
    }, 120_000);

    it(`webgpu, ${type}: llama.cpp's greedy tokens and top-5 probabilities`, {
      ...needsWebGpu(),
      timeout: 240_000,
    }, async () => {
      const run = llamaRuns.get(type);
      expect(run, "the cpu case ran first").toBeDefined();
      const { path, prompt, theirs } = run!;
      expectAgreement(type, `${family} webgpu`, prompt, await webgpuGreedy(path, prompt, GENERATE), theirs);
    });
  }
});
