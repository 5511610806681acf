// The byte-level BPE tokenizer.json path against llama.cpp's test cases: each vocabulary below is written
// back out as the tokenizer.json its model ships (its vocabulary, merges and added tokens from the GGUF,
// the pre-tokenizer and normalizer the model's own tokenizer.json has), loaded as a Hugging Face folder,
// and every case of its `.inp` must give the `.out` ids (which llama.cpp's scripts made with Hugging Face's
// tokenizers).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import { plainValue } from "../../runtime/checkpoint/gguf-value.ts";
import { scratchDir } from "../../runtime/checkpoint/test-support.ts";
import { BpeTokenizer } from "../../runtime/tokenizer/bpe.ts";
import { loadHfTokenizer } from "../../runtime/tokenizer/hf-json.ts";
import type { Tokenizer } from "../../runtime/tokenizer/tokenizer.ts";
import { llamaVocabDir } from "./vocab-files.ts";

const split = (regex: string) => ({
  type: "Sequence",
  pretokenizers: [
    { type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false },
    { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
  ],
});

/** What each model's own tokenizer.json says about pre-tokenizing. */
const MODELS: Record<string, { pre_tokenizer: unknown; normalizer?: unknown; ignore_merges?: boolean }> = {
  "llama-bpe": {
    pre_tokenizer: split(
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    ),
    ignore_merges: true,
  },
  qwen2: {
    normalizer: { type: "NFC" },
    pre_tokenizer: split(
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    ),
  },
  "gpt-2": {
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
  },
  // Qwen3.5: marks stay in words; its cases keep decomposed accents, so no NFC here.
  qwen35: {
    pre_tokenizer: split(
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    ),
  },
  // StarCoder: single digits, then GPT-2's expression.
  starcoder: {
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Digits", individual_digits: true },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
  },
  // DeepSeek Coder's Splits then single digits, which llama.cpp's deepseek-coder expressions copy.
  "deepseek-coder": {
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: "[\r\n]" }, behavior: "Isolated", invert: false },
        { type: "Split", pattern: { Regex: "\\s?\\p{L}+" }, behavior: "Isolated", invert: false },
        { type: "Split", pattern: { Regex: "\\s?\\p{P}+" }, behavior: "Isolated", invert: false },
        {
          type: "Split",
          pattern: { Regex: "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+" },
          behavior: "Isolated",
          invert: false,
        },
        { type: "Digits", individual_digits: true },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
  },
};

const SEPARATOR = "\n__ggml_vocab_test__\n";
const vocabDir = llamaVocabDir();
const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

function cases(path: string): { text: string; ids: number[] }[] {
  const text = readFileSync(`${path}.inp`, "utf8");
  const inputs = text.endsWith(SEPARATOR)
    ? text.slice(0, -SEPARATOR.length).split(SEPARATOR)
    : text.split(SEPARATOR);
  const lines = readFileSync(`${path}.out`, "utf8").split("\n");
  const map = new Map<string, number[]>();
  inputs.forEach((input, i) => {
    const line = lines[i]!.trim();
    map.set(input, line === "" ? [] : line.split(" ").map(Number));
  });
  return [...map].map(([text, ids]) => ({ text, ids }));
}

describe.each(Object.keys(MODELS))("tokenizer.json of ggml-vocab-%s", (name) => {
  const path = join(vocabDir, `ggml-vocab-${name}.gguf`);
  let tok: Tokenizer;

  it("loads as a Hugging Face folder", () => {
    const file = openGguf(path);
    const get = (k: string) => plainValue(file.metadata.get(k)!);
    const tokens = get("tokenizer.ggml.tokens") as string[];
    const types = get("tokenizer.ggml.token_type") as number[];
    const merges = get("tokenizer.ggml.merges") as string[];
    file.close();
    const vocab: Record<string, number> = {};
    const added: unknown[] = [];
    tokens.forEach((t, i) => {
      vocab[t] = i;
      if (types[i] === 3 || types[i] === 4) added.push({ id: i, content: t, special: types[i] === 3 });
    });
    const m = MODELS[name]!;
    const folder = join(dir, name);
    mkdirSync(folder, { recursive: true });
    writeFileSync(
      join(folder, "tokenizer.json"),
      JSON.stringify({
        added_tokens: added,
        normalizer: m.normalizer ?? null,
        pre_tokenizer: m.pre_tokenizer,
        decoder: { type: "ByteLevel" },
        model: { type: "BPE", vocab, merges, ignore_merges: m.ignore_merges ?? false },
      }),
    );
    tok = loadHfTokenizer(folder);
    expect(tok).toBeInstanceOf(BpeTokenizer);
  }, 120_000);

  it.each(cases(path).map((c) => ({ ...c, shown: JSON.stringify(c.text).slice(0, 70) })))(
    "tokenizes $shown to the .out ids",
    ({ text, ids }) => {
      expect(tok.encode(text, { addBos: false })).toEqual(ids);
    },
  );
});
