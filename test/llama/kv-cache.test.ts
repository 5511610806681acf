// moec's narrow KV caches against llama.cpp's (node-llama-cpp's CPU build, 2 threads) and against moec's own
// f32 cache, on f32 weights so that the cache is the only rounding in play: stories260K (models/, heads of 8:
// f16 only, q8_0 blocks of 32 do not fit a head), a random Mixtral-shaped file with heads of 32, and one with
// Mixtral 8x7B's attention sizes (hidden 4096, 32 heads of 128, 8 KV heads) in one layer. Each run:
// the prompt, then 32 greedy tokens with the logits of every step.
//
// Why the bounds. Both engines round K and V to the cache type the same way (f16 to nearest even; q8_0 as
// ggml's quantize_row_q8_0), from f32 values that agree to f32 rounding, so what differs is the attention
// arithmetic: llama.cpp multiplies by an f16 K in f16 (its vec_dot_type), so it also rounds q, and the
// softmax weights before V, to f16 (a relative 2^-11 each), and with q8_0 (flash attention, which a
// quantized V needs) it rounds q to q8_0 blocks (1/254 of a block's largest element) for q·k, which moec
// does too (integer products, the blocks' d in f32 where llama.cpp keeps f16); otherwise moec keeps q and the
// weights in f32. Against moec's f32 cache, the difference is the cache's own rounding of K and V (and with
// q8_0, of q).
// The bounds are 4-10x the largest |Δlogit| measured here, noted by each case (MOEC_LLAMA_REPORT=1 prints them).
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeRandomMixtralGguf } from "../../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../../runtime/checkpoint/test-support.ts";
import { type KvType, KvTypeError } from "../../runtime/kv-type.ts";
import {
  agreement,
  decisiveShape,
  llamaGreedy,
  loadLlamaCpp,
  loadMoec,
  maxAbsDiff,
  moecGreedy,
  moecGreedyBatched,
  type Trace,
} from "./engines.ts";

const STORIES = new URL("../../models/stories260K.gguf", import.meta.url).pathname;
const GENERATE = 32;
const CONTEXT = 128;
const THREADS = 2;

interface Case {
  name: string;
  file: () => string;
  vocab: number;
  type: Exclude<KvType, "f32">;
  /** Largest |Δlogit| allowed against llama.cpp with the same cache type, and against moec's f32 cache. */
  llama: number;
  f32: number;
}

const { dir, cleanup } = scratchDir();
const report: string[] = [];
afterAll(() => {
  cleanup();
  if (process.env.MOEC_LLAMA_REPORT) console.log(report.join("\n"));
});

const randomFile = () => {
  const path = `${dir}/kv-random.gguf`;
  writeRandomMixtralGguf(path, {
    hidden: 128,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    ffn: 192,
    experts: 4,
    topK: 2,
    vocab: 400,
    ropeTheta: 1e4,
    eps: 1e-5,
    type: "f32",
    seed: 17,
    context: CONTEXT,
    ...decisiveShape(128, 2, 10),
  });
  return path;
};

/** Mixtral 8x7B's attention at its real sizes (hidden 4096, 32 heads of 128, 8 KV heads: groups of 4), one
 * layer and small experts and vocabulary, so the file stays near 200 MB of f32. */
const mixtralSizedFile = () => {
  const path = `${dir}/kv-mixtral-sized.gguf`;
  if (!existsSync(path))
    writeRandomMixtralGguf(path, {
      hidden: 4096,
      layers: 1,
      heads: 32,
      kvHeads: 8,
      ffn: 256,
      experts: 2,
      topK: 2,
      vocab: 400,
      ropeTheta: 1e6,
      eps: 1e-5,
      type: "f32",
      seed: 23,
      context: CONTEXT,
      ...decisiveShape(4096, 2, 10),
    });
  return path;
};

const CASES: Case[] = [
  // Measured |Δlogit| max: 1.9e-2 against llama.cpp, 2.5e-2 against f32 (stories' logits reach ±15).
  { name: "stories260K, f16 cache", file: () => STORIES, vocab: 512, type: "f16", llama: 0.1, f32: 0.1 },
  // Measured 5.5e-4 and 6.5e-4.
  {
    name: "random Mixtral (heads of 32), f16 cache",
    file: randomFile,
    vocab: 400,
    type: "f16",
    llama: 5e-3,
    f32: 5e-3,
  },
  // Measured 1.9e-3 and 2.1e-2: a q8_0 step is 1/127 of a block's largest K or V (or q, against f32).
  {
    name: "random Mixtral (heads of 32), q8_0 cache",
    file: randomFile,
    vocab: 400,
    type: "q8_0",
    llama: 5e-2,
    f32: 0.1,
  },
  // Measured 4.3e-4 and 3.7e-4: heads of 128 in groups of 4 (the CPU attention's sets) at Mixtral's hidden size.
  {
    name: "Mixtral-8x7B-sized attention (hidden 4096, heads of 128), f16 cache",
    file: mixtralSizedFile,
    vocab: 400,
    type: "f16",
    llama: 5e-3,
    f32: 5e-3,
  },
  // Measured 1.1e-2 and 8.4e-3.
  {
    name: "Mixtral-8x7B-sized attention (hidden 4096, heads of 128), q8_0 cache",
    file: mixtralSizedFile,
    vocab: 400,
    type: "q8_0",
    llama: 5e-2,
    f32: 0.1,
  },
];

const prompt = (vocab: number) => Array.from({ length: 12 }, (_, i) => 1 + ((i * 37 + 11) % (vocab - 1)));
const worst = (a: Trace, b: Trace) => Math.max(...agreement(12, GENERATE, a, b).logit);

describe.each(CASES)("moec's $name against llama.cpp's and against an f32 cache", (c) => {
  let narrow: Trace;
  let batched: Trace;
  let wide: Trace;
  let theirs: Trace;
  beforeAll(async () => {
    const path = c.file();
    const ids = prompt(c.vocab);
    const m = await loadMoec(path, CONTEXT, { kvType: c.type });
    try {
      expect(m.model.module.manifest.kvType).toBe(c.type);
      narrow = moecGreedy(m.model, ids, GENERATE);
      batched = moecGreedyBatched(m.model, ids, GENERATE);
    } finally {
      m.close();
    }
    const f = await loadMoec(path, CONTEXT, { kvType: "f32" });
    try {
      wide = moecGreedy(f.model, ids, GENERATE);
    } finally {
      f.close();
    }
    const l = await loadLlamaCpp(path, {
      contextSize: CONTEXT,
      threads: THREADS,
      kvType: c.type === "f16" ? "F16" : "Q8_0",
    });
    try {
      theirs = await llamaGreedy(l, ids, GENERATE, c.vocab);
    } finally {
      await l.dispose();
    }
    report.push(
      `${c.name}: |Δlogit| vs llama.cpp ${worst(narrow, theirs).toExponential(1)}, vs moec f32 ${worst(narrow, wide).toExponential(1)}, ` +
        `min greedy margin ${agreement(12, GENERATE, narrow, theirs).minMargin.toFixed(2)}`,
    );
  }, 120_000);

  it(`${GENERATE} greedy tokens as llama.cpp with the same cache type, stepping and through the batched prefill`, () => {
    expect(narrow.tokens).toEqual(theirs.tokens);
    expect(batched.tokens).toEqual(theirs.tokens);
  });

  it("logits within the bound of llama.cpp's at every position, and of moec's f32 cache", () => {
    expect(worst(narrow, theirs)).toBeLessThan(c.llama);
    expect(worst(narrow, wide)).toBeLessThan(c.f32);
    expect(maxAbsDiff(batched.logits[0]!, narrow.logits[11]!)).toBeLessThan(c.f32);
  });
});

it("refuses a q8_0 cache for heads of 8 (stories260K), naming the head size", async () => {
  await expect(loadMoec(STORIES, CONTEXT, { kvType: "q8_0" })).rejects.toThrow(KvTypeError);
  await expect(loadMoec(STORIES, CONTEXT, { kvType: "q8_0" })).rejects.toThrow(/multiple of 32.*not 8/);
});
