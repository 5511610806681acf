// Hugging Face folders with tied embeddings (`tie_word_embeddings: true`): stories260K (models/README.md)
// written out as a LlamaForCausalLM folder storing the embedding only (what transformers saves), the output
// head only, or both, must load and give the GGUF file's greedy tokens: moec's on the GGUF, and llama.cpp's.
// The folder holds the same f32 numbers with q/k rows in Hugging Face's half-split RoPE order (the spec
// imported from config.json rotates halves), so the logits agree with the GGUF run's to f32 rounding.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadForRun } from "../../cli/model-source.ts";
import { CheckpointError } from "../../runtime/checkpoint/errors.ts";
import { openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import { scratchDir } from "../../runtime/checkpoint/test-support.ts";
import { ModelInstance } from "../../runtime/model.ts";
import { type TiedStorage, writeHfFromGguf } from "../hf-from-gguf.ts";
import { llamaGreedy, loadLlamaCpp, loadMoec, maxAbsDiff, moecGreedy, type Trace } from "./engines.ts";

const STORIES = fileURLToPath(new URL("../../models/stories260K.gguf", import.meta.url));
const PROMPT = "Once upon a time";
const EXPECTED =
  ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.";
const GENERATE = 40;
const CONTEXT = 128;

const { dir, cleanup } = scratchDir();
afterAll(cleanup);

let prompt: number[];
let gguf: Trace;
let llama: Trace;

beforeAll(async () => {
  const m = await loadMoec(STORIES, CONTEXT);
  try {
    prompt = m.tokenizer.encode(PROMPT, { addBos: true });
    gguf = moecGreedy(m.model, prompt, GENERATE);
    expect(m.tokenizer.decode(gguf.tokens).startsWith(EXPECTED)).toBe(true);
  } finally {
    m.close();
  }
  const l = await loadLlamaCpp(STORIES, { contextSize: CONTEXT, threads: 2 });
  try {
    llama = await llamaGreedy(l, prompt, GENERATE, 512);
  } finally {
    await l.dispose();
  }
}, 120_000);

it("stories260K's output head is its embedding (so a tied folder holds the same model)", () => {
  const f = openGguf(STORIES);
  try {
    expect(
      Buffer.from(f.read(f.findTensor("output.weight")!)).equals(f.read(f.findTensor("token_embd.weight")!)),
    ).toBe(true);
  } finally {
    f.close();
  }
});

describe.each(["embed", "lm_head", "both"] as TiedStorage[])("tie_word_embeddings, storing %s", (store) => {
  const folder = `${dir}/hf-${store}`;
  let trace: Trace;
  let ids: number[];
  let text: string;

  beforeAll(async () => {
    writeHfFromGguf(STORIES, folder, { store });
    // The f32 KV cache loadMoec gives the GGUF run above: the two differ only in where the weights come from.
    const loaded = await loadForRun(undefined, folder, { maxContext: CONTEXT, kvType: "f32" });
    try {
      ids = loaded.tokenizer.encode(PROMPT, { addBos: true });
      const model = new ModelInstance(loaded.module, loaded.weights, { threads: 1 });
      try {
        trace = moecGreedy(model, ids, GENERATE);
      } finally {
        model.close();
      }
      text = loaded.tokenizer.decode(trace.tokens);
    } finally {
      loaded.close();
    }
  }, 120_000);

  it("imports a tied spec, tokenizes the prompt as the GGUF does, and gives its greedy tokens and llama.cpp's", () => {
    expect(ids).toEqual(prompt);
    expect(trace.tokens).toEqual(gguf.tokens);
    expect(trace.tokens).toEqual(llama.tokens);
    expect(text.startsWith(EXPECTED)).toBe(true);
  });

  it("gives the GGUF run's logits to f32 rounding at every position", () => {
    expect(trace.logits.length).toBe(gguf.logits.length);
    for (let p = 0; p < trace.logits.length; p++) {
      expect(maxAbsDiff(trace.logits[p]!, gguf.logits[p]!)).toBeLessThan(1e-4);
    }
  });
});

it("`moec run --weights FOLDER` runs a folder that stores only lm_head.weight", () => {
  const folder = `${dir}/hf-lm_head`;
  const r = spawnSync(
    process.execPath,
    [
      "bin/moec.js",
      "run",
      "--weights",
      folder,
      "-p",
      PROMPT,
      "-n",
      "32",
      "--temperature",
      "0",
      "--threads",
      "1",
    ],
    { encoding: "utf8", timeout: 120_000 },
  );
  expect(r.stderr).not.toMatch(/error/i);
  expect(r.status).toBe(0);
  expect(r.stdout.startsWith(`${PROMPT}, there was a little girl named Lily.`)).toBe(true);
});

it("without tie_word_embeddings, a folder missing lm_head.weight is refused, naming it", async () => {
  const folder = `${dir}/untied`;
  writeHfFromGguf(STORIES, folder, { tie: false, store: "embed" });
  const err = await loadForRun(undefined, folder, { maxContext: CONTEXT }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(CheckpointError);
  expect(String((err as Error).message)).toMatch(/lm_head\.weight/);
});
