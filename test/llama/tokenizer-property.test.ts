// Random text through moec's tokenizers and through llama.cpp's (node-llama-cpp loading llama.cpp's test
// vocabularies with vocabOnly): the same ids without and with special tokens parsed, and the same text
// back from llama.cpp's detokenizer. The text mixes what the pre-tokenizers treat specially (contractions,
// digit runs, whitespace runs before text and at the end, \r\n, non-ASCII whitespace, marks, CJK, emoji,
// punctuation, special-token texts) with arbitrary code points.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import { tokenizerFromGguf } from "../../runtime/tokenizer/from-gguf.ts";
import type { Tokenizer } from "../../runtime/tokenizer/tokenizer.ts";
import { asTokens, getLlamaCpu } from "./engines.ts";
import { llamaVocabDir } from "./vocab-files.ts";

/**
 * One vocabulary per splitter moec has (mpt, olmo, refact and command-r share gpt-2's and starcoder's;
 * gpt-neox has no tokenizer.ggml.pre: llama.cpp's "default" expressions), and SentencePiece ones (phi-3:
 * special tokens that eat the spaces after them; baichuan: no test cases of its own) WordPiece (bert-bge) and Unigram (nomic-bert-moe, which has no test cases).
 */
const VOCABS = [
  "nomic-bert-moe",
  "bert-bge",
  "gpt-neox",
  "baichuan",
  "llama-bpe",
  "qwen2",
  "qwen35",
  "deepseek-llm",
  "deepseek-coder",
  "falcon",
  "gpt-2",
  "starcoder",
  "gemma-4",
  "llama-spm",
  "phi-3",
];

const PIECES = [
  " ",
  "  ",
  "   ",
  "\n",
  "\r\n",
  "\t",
  "\u00a0",
  "\u3000",
  "\u2028",
  "\u000b",
  "'",
  "'s",
  "'S",
  "'ll",
  "'Re",
  "'ve",
  "don't",
  "a",
  "the",
  " the",
  "Hello",
  "WORLD",
  "1",
  "12",
  "123",
  "1234567",
  "3.14",
  "٣",
  "½",
  "é",
  "e\u0301",
  "\u0301",
  "ß",
  "Ångström",
  "naïve",
  "日本語",
  "中文",
  "한국어",
  "Привет",
  "مرحبا",
  "हिन्दी",
  "ไทย",
  "😀",
  "👩‍👩‍👧",
  "🇫🇷",
  "!",
  "...",
  "?!",
  "(",
  ")",
  "$",
  "+",
  "<",
  "=",
  "^",
  "~",
  "|",
  "`",
  "@",
  "#",
  "_",
  "-",
  "—",
  "“",
  "。",
  "，",
  "！",
  "▁",
  "\u0000",
  "\u007f",
  "\ufeff",
  "\ufffd",
  "<s>",
  "</s>",
  "<|endoftext|>",
  "<|im_start|>",
  "<|begin_of_text|>",
  "<start_of_turn>",
  "<|user|>",
  "𝔘𝔫𝔦",
];

const text = fc.oneof(
  fc.array(fc.constantFrom(...PIECES), { maxLength: 24 }).map((p) => p.join("")),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 24 }),
);

/** Always tried first: special tokens with spaces around them (Phi-3's rstrip), contractions, digit runs. */
const EXAMPLES = [
  "</s>   hi",
  "<|user|>\n  hi<|end|> x",
  "<|endoftext|>  x",
  " <s> a",
  "I'm  '  12345\r\n\n",
  "e\u0301\u0301 ½",
];

type Llama = Awaited<ReturnType<typeof getLlamaCpu>>;
type LlamaModel = Awaited<ReturnType<Llama["loadModel"]>>;

const dir = llamaVocabDir();

describe.each(VOCABS)("ggml-vocab-%s: moec against llama.cpp on random text", (name) => {
  const path = `${dir}/ggml-vocab-${name}.gguf`;
  let tok: Tokenizer;
  let model: LlamaModel;

  beforeAll(async () => {
    const file = openGguf(path);
    try {
      tok = tokenizerFromGguf(file.metadata, path);
    } finally {
      file.close();
    }
    const llama = await getLlamaCpu();
    model = await llama.loadModel({ modelPath: path, vocabOnly: true });
  }, 120_000);

  afterAll(async () => {
    await model?.dispose();
  });

  it("adds BOS as llama.cpp does", () => {
    expect(tok.addBos).toBe(model.tokens.shouldPrependBosToken);
    if (tok.addBos) expect(tok.bos).toBe(model.tokens.bos);
  });

  it("gives llama.cpp's ids, with and without special tokens parsed, and llama.cpp's text back", () => {
    fc.assert(
      fc.property(text, (s) => {
        const ids = tok.encode(s, { addBos: false, addEos: false });
        expect(ids).toEqual(model.tokenize(s));
        expect(tok.encode(s, { addBos: false, addEos: false, parseSpecial: true })).toEqual(
          model.tokenize(s, true),
        );
        expect(tok.decode(ids)).toBe(model.detokenize(asTokens(ids)));
        expect(tok.decode(ids, { unparseSpecial: true })).toBe(model.detokenize(asTokens(ids), true));
      }),
      { numRuns: 200, examples: EXAMPLES.map((e) => [e]) },
    );
  });
});
