// WordPiece on a small vocabulary. Real vocabularies against llama.cpp: test/llama/vocab-suite.test.ts
// (bert-bge's cases) and test/llama/tokenizer-property.test.ts.
import { describe, expect, it } from "vitest";
import { SPM_TOKEN_TYPE as T, TokenizerDataError } from "./spm.ts";
import { TokenizeError } from "./tokenizer.ts";
import { WpmTokenizer } from "./wpm.ts";

const TOKENS = [
  "[PAD]",
  "[UNK]",
  "[CLS]",
  "[SEP]",
  "▁hello",
  "▁world",
  "▁un",
  "aff",
  "able",
  "▁!",
  "▁,",
  "▁cafe",
  "▁日",
  "▁",
];
const types = TOKENS.map((t) => (t.startsWith("[") ? T.control : T.normal));
const tok = (o: Partial<ConstructorParameters<typeof WpmTokenizer>[0]> = {}) =>
  new WpmTokenizer({ tokens: TOKENS, types, bos: 2, unk: 1, sep: 3, ...o });
const id = (t: string) => TOKENS.indexOf(t);

describe("WpmTokenizer", () => {
  it("lowercases, strips accents, and cuts each word greedily into the longest tokens", () => {
    const t = tok();
    expect(t.encode("Hello WORLD", { addBos: false })).toEqual([id("▁hello"), id("▁world")]);
    expect(t.encode("unaffable", { addBos: false })).toEqual([id("▁un"), id("aff"), id("able")]);
    expect(t.encode("Café", { addBos: false })).toEqual([id("▁cafe")]);
  });

  it("punctuation and CJK ideographs are words of their own; a word no tokens cover is [UNK]", () => {
    const t = tok();
    expect(t.encode("hello,world!", { addBos: false })).toEqual([
      id("▁hello"),
      id("▁,"),
      id("▁world"),
      id("▁!"),
    ]);
    expect(t.encode("日", { addBos: false })).toEqual([id("▁日")]);
    expect(t.encode("hello xyz", { addBos: false })).toEqual([id("▁hello"), id("[UNK]")]);
  });

  it("adds [CLS] and [SEP] with BOS, as llama.cpp's add_special does", () => {
    expect(tok().encode("hello")).toEqual([2, id("▁hello"), 3]);
  });

  it("keeps case and accents when the file says so", () => {
    const t = tok({ lowercase: false });
    expect(t.encode("Hello", { addBos: false })).toEqual([id("[UNK]")]);
  });

  it("decodes ▁ as a space and cleans the spaces before punctuation", () => {
    const t = tok();
    expect(t.decode([id("▁hello"), id("▁,"), id("▁world"), id("▁!")])).toBe(" hello, world!");
    expect(t.decode([2, id("▁hello"), 3])).toBe(" hello");
  });

  it("errors: bad data names the field; a word without unk fails naming it", () => {
    expect(() => tok({ bos: 99 })).toThrow(TokenizerDataError);
    expect(() => tok({ unk: undefined }).encode("xyz", { addBos: false })).toThrow(TokenizeError);
  });
});
