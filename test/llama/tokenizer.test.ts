// moec's SentencePiece tokenizer against llama.cpp's (node-llama-cpp's model.tokenize / detokenize, i.e.
// common_tokenize without BOS and llama_detokenize) on the vocabulary moec's random GGUF writer produces,
// over a corpus of strings: spaces and newlines, accents, CJK, emoji, digits, text that falls back to
// bytes, leading and trailing spaces, the empty string, and text that looks like special tokens.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeRandomMixtralGguf } from "../../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../../runtime/checkpoint/test-support.ts";
import type { Tokenizer } from "../../runtime/tokenizer/tokenizer.ts";
import { asTokens, type LlamaCppModel, loadLlamaCpp, loadMoec, type MoecModel } from "./engines.ts";

const CORPUS: readonly string[] = [
  "",
  " ",
  "  ",
  "\n",
  "\n\n",
  "\t",
  "the",
  " the",
  "the ",
  "  the cat  ",
  "The cat and the dog were in the house.",
  "the  cat   and\tthe\ndog\n\nwere\r\nin the house",
  "   leading spaces",
  "trailing spaces   ",
  "line one\nline two\n",
  "\nstarts with a newline",
  "Café, naïve, façade, résumé, Ångström, Œuvre, ß",
  "e\u0301 (e + combining acute) and é (precomposed)",
  "日本語のテキスト",
  "中文文本，标点符号。",
  "한국어 텍스트",
  "Привет, мир",
  "مرحبا بالعالم",
  "😀 🎉 👍🏽 👩‍👩‍👧 🇫🇷",
  "0123456789",
  "3.14159 2,718 1e-5 -42 +7 100%",
  "year 2024, 42 cats, 007",
  "a~b`c|d\\e^f{g}h[i]j@k#l$m&n*o",
  "\u0000\u0001\u007f control characters",
  "zero\u200bwidth\u200djoiner\ufeffbom",
  "<s> </s> <unk> [INST] look like special tokens",
  "<0x41> is not a byte token in text",
  "qqqq zzzz xjxj vkvk",
  "thethethe andand ofofof",
  "▁ is the SentencePiece space mark",
  "mixed: the 猫 and the 🐕 were in the дом",
];

/** Decoded ids that exercise the detokenizer on their own: byte pieces that do not form UTF-8, BOS/EOS. */
const ID_SEQUENCES: readonly number[][] = [
  [1, 288, 398],
  [288, 2, 398],
  [3 + 0xe6, 3 + 0x97],
  [3 + 0xff, 3 + 0x41, 3 + 0xc3],
  [259, 259, 288],
  [0, 1, 2],
];

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

const show = (s: string) => JSON.stringify(s);

// The vocabulary of the llama.cpp comparison's q8_0 case (1000 pieces) and of the bench model (32000,
// with longer merged pieces). The weights do not matter here.
describe.each([1000, 32000])("moec's tokenizer against llama.cpp's, vocabulary of %i", (vocab) => {
  let moec: MoecModel;
  let tok: Tokenizer;
  let llama: LlamaCppModel;

  beforeAll(async () => {
    const path = `${dir}/tokenizer-${vocab}.gguf`;
    writeRandomMixtralGguf(path, {
      type: "q8_0",
      hidden: 64,
      layers: 1,
      heads: 2,
      kvHeads: 2,
      ffn: 64,
      experts: 2,
      topK: 1,
      vocab,
      context: 256,
    });
    moec = await loadMoec(path, 256);
    tok = moec.tokenizer;
    llama = await loadLlamaCpp(path, { contextSize: 256, threads: 2 });
  }, 60_000);

  afterAll(async () => {
    moec?.close();
    await llama?.dispose();
  });

  it("adds BOS as llama.cpp does", () => {
    expect(tok.bos).toBe(llama.model.tokens.bos);
    expect(tok.eos).toBe(llama.model.tokens.eos);
    expect(tok.addBos).toBe(llama.model.tokens.shouldPrependBosToken);
  });

  it.each(CORPUS.map((text) => ({ text, name: show(text) })))(
    "encodes $name to llama.cpp's ids",
    ({ text }) => {
      expect(tok.encode(text, { addBos: false })).toEqual(llama.model.tokenize(text));
    },
  );

  it.each(CORPUS.map((text) => ({ text, name: show(text) })))(
    "encodes $name with special tokens parsed to llama.cpp's ids",
    ({ text }) => {
      expect(tok.encode(text, { addBos: false, parseSpecial: true })).toEqual(
        llama.model.tokenize(text, true),
      );
    },
  );

  it.each(CORPUS.map((text) => ({ text, name: show(text) })))(
    "decodes the ids of $name (with and without BOS) to llama.cpp's text",
    ({ text }) => {
      const ids = tok.encode(text, { addBos: false });
      expect(tok.decode(ids)).toBe(llama.model.detokenize(asTokens(ids)));
      const withBos = [tok.bos!, ...ids];
      expect(tok.decode(withBos)).toBe(llama.model.detokenize(asTokens(withBos)));
      expect(tok.decode(withBos, { unparseSpecial: true })).toBe(
        llama.model.detokenize(asTokens(withBos), true),
      );
    },
  );

  it.each(ID_SEQUENCES.map((ids) => ({ ids, name: ids.join(",") })))(
    "decodes ids [$name] to llama.cpp's text",
    ({ ids }) => {
      expect(tok.decode(ids)).toBe(llama.model.detokenize(asTokens(ids)));
      expect(tok.decode(ids, { unparseSpecial: true })).toBe(llama.model.detokenize(asTokens(ids), true));
    },
  );

  it("round-trips the corpus through its own encode and decode where llama.cpp does", () => {
    for (const text of CORPUS) {
      const ids = tok.encode(text, { addBos: false });
      const ours = tok.decode(ids);
      const theirs = llama.model.detokenize(llama.model.tokenize(text));
      expect(ours, show(text)).toBe(theirs);
    }
  });
});
