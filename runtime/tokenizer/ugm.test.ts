// Unigram on a small vocabulary. A real one against llama.cpp: test/llama/tokenizer-property.test.ts
// (nomic-bert-moe, with its precompiled charsmap) and test/llama/vocab-suite.test.ts.
import { describe, expect, it } from "vitest";
import { SPM_TOKEN_TYPE as T } from "./spm.ts";
import { TokenizeError } from "./tokenizer.ts";
import { UgmTokenizer } from "./ugm.ts";

const VOCAB: [string, number, number][] = [
  ["<pad>", 0, T.control],
  ["</s>", 0, T.control],
  ["<unk>", 0, T.unknown],
  ["▁", -2, T.normal],
  ["▁hello", -3, T.normal],
  ["▁he", -2, T.normal],
  ["llo", -2, T.normal],
  ["▁world", -4, T.normal],
  ["w", -6, T.normal],
  ["o", -6, T.normal],
  ["<tool>", 0, T.userDefined],
];
const tok = (o: Partial<ConstructorParameters<typeof UgmTokenizer>[0]> = {}) =>
  new UgmTokenizer({
    tokens: VOCAB.map((v) => v[0]),
    scores: VOCAB.map((v) => v[1]),
    types: VOCAB.map((v) => v[2]),
    eos: 1,
    unk: 2,
    addSpacePrefix: true,
    ...o,
  });
const id = (t: string) => VOCAB.findIndex((v) => v[0] === t);

describe("UgmTokenizer", () => {
  it("picks the segmentation with the best total score (Viterbi)", () => {
    // ▁hello (-3) beats ▁he + llo (-4).
    expect(tok().encode("hello", { addEos: false })).toEqual([id("▁hello")]);
  });

  it("a character no token covers is unk, and consecutive unknowns are one", () => {
    expect(tok().encode("hello xyz", { addEos: false })).toEqual([id("▁hello"), id("▁"), id("<unk>")]);
  });

  it("adds EOS by default, as llama.cpp does for this vocabulary type", () => {
    expect(tok().encode("world")).toEqual([id("▁world"), 1]);
  });

  it("remove_extra_whitespaces merges runs of spaces", () => {
    const t = tok({ removeExtraSpaces: true });
    expect(t.encode("  hello   world ", { addEos: false })).toEqual([id("▁hello"), id("▁world")]);
    expect(tok().encode("hello  world", { addEos: false })).toEqual([id("▁hello"), id("▁"), id("▁world")]);
  });

  it("user-defined tokens are cut out of the text and score 0", () => {
    expect(tok().encode("hello<tool>", { addEos: false })).toEqual([id("▁hello"), id("<tool>")]);
  });

  it("decodes ▁ as a space, dropping the prefix space", () => {
    expect(tok().decode([id("▁hello"), id("▁world")])).toBe("hello world");
  });

  it("without an unknown token, text it cannot cover fails", () => {
    expect(() => tok({ unk: undefined }).encode("xyz", { addEos: false })).toThrow(TokenizeError);
  });
});
