// The byte-level BPE tokenizer on small vocabularies built here. Real vocabularies against llama.cpp:
// test/llama/vocab-suite.test.ts and test/llama/tokenizer-property.test.ts.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BpeTokenizer, type BpeTokenizerData, cleanSpaces } from "./bpe.ts";
import { BYTE_TO_CHAR } from "./pretokenize.ts";
import { Detokenizer, SPM_TOKEN_TYPE as T, TokenizerDataError } from "./spm.ts";

/** The 256 byte characters (ids 0..255), then `extra` tokens with their types. */
function vocab(extra: [string, number][], merges: string[], o: Partial<BpeTokenizerData> = {}): BpeTokenizer {
  const tokens = [...BYTE_TO_CHAR, ...extra.map(([t]) => t)];
  const types = [...BYTE_TO_CHAR.map(() => T.normal as number), ...extra.map(([, ty]) => ty)];
  return new BpeTokenizer({ tokens, types, merges, pre: "gpt-2", ...o });
}

const N = T.normal;
const id = (t: BpeTokenizer, text: string) => t.tokenId(text)!;

describe("BpeTokenizer.encode", () => {
  it("merges the pair of lowest rank first, the leftmost on ties", () => {
    // "abc": a b (rank 1) and b c (rank 0) compete for b; b c wins.
    const t = vocab(
      [
        ["ab", N],
        ["bc", N],
        ["abc", N],
      ],
      ["b c", "a b", "a bc"],
    );
    expect(t.encode("abc")).toEqual([id(t, "abc")]);
    const u = vocab(
      [
        ["ab", N],
        ["bc", N],
      ],
      ["a b", "b c"],
    );
    expect(u.encode("abc")).toEqual([id(u, "ab"), id(u, "c")]);
    // "aaa" with only "a a": the leftmost pair merges.
    const w = vocab([["aa", N]], ["a a"]);
    expect(w.encode("aaa")).toEqual([id(w, "aa"), id(w, "a")]);
  });

  it("splits before merging: no merge crosses a pre-tokenizer piece", () => {
    const t = vocab([["aĠ", N]], ["a Ġ"]);
    expect(t.encode("a b")).toEqual([id(t, "a"), id(t, "Ġ"), id(t, "b")]);
  });

  it("ignore_merges (Llama 3) takes a piece that is a token whole", () => {
    const data = { pre: "llama-bpe", bos: 0, addBos: false };
    const t = vocab(
      [
        ["hello", N],
        ["he", N],
      ],
      ["h e"],
      data,
    );
    expect(t.encode("hello")).toEqual([id(t, "hello")]);
    const g = vocab(
      [
        ["hello", N],
        ["he", N],
      ],
      ["h e"],
      { pre: "gpt-2" },
    );
    expect(g.encode("hello")).toEqual([id(g, "he"), id(g, "l"), id(g, "l"), id(g, "o")]);
  });

  it("user-defined tokens are cut out of any text, control tokens only with parseSpecial", () => {
    const t = vocab(
      [
        ["<|im_start|>", T.control],
        ["<tool>", T.userDefined],
      ],
      [],
    );
    const ctl = id(t, "<|im_start|>");
    const user = id(t, "<tool>");
    expect(t.encode("x<tool>y")).toEqual([id(t, "x"), user, id(t, "y")]);
    expect(t.encode("<|im_start|>x")).not.toContain(ctl);
    expect(t.encode("<|im_start|>x", { parseSpecial: true })).toEqual([ctl, id(t, "x")]);
  });

  it("adds BOS and EOS when asked or when the vocabulary says so", () => {
    const t = vocab(
      [
        ["<s>", T.control],
        ["</s>", T.control],
      ],
      [],
      { bos: 256, eos: 257, addBos: true, addEos: true },
    );
    expect(t.encode("a")).toEqual([256, id(t, "a"), 257]);
    expect(t.encode("a", { addBos: false, addEos: false })).toEqual([id(t, "a")]);
    expect(t.isEog(257)).toBe(true);
  });

  it("a long text (a million characters) tokenizes without overflowing the stack", () => {
    const t = vocab(
      [
        ["Ġt", N],
        ["he", N],
        ["Ġthe", N],
      ],
      ["Ġ t", "h e", "Ġt he"],
      { pre: "llama-bpe", addBos: false },
    );
    const ids = t.encode(" the".repeat(250_000));
    expect(ids).toHaveLength(250_000);
    expect(new Set(ids)).toEqual(new Set([id(t, "Ġthe")]));
  });

  it("a symbol that is not a token keeps only its one-byte ASCII tokens, as llama.cpp does", () => {
    // Drop "Ã" (0xC3's character) from the vocabulary: "é" (C3 A9) loses that byte.
    const tokens = BYTE_TO_CHAR.map((c) => (c === "Ã" ? "[no]" : c));
    const t = new BpeTokenizer({ tokens, merges: [], pre: "gpt-2" });
    expect(t.encode("é")).toEqual([tokens.indexOf("©")]);
  });
});

describe("BpeTokenizer.decode", () => {
  const t = vocab(
    [
      ["ĠÃ", N],
      ["¥æľ¬", N],
      ["<|end|>", T.control],
      ["<x>", T.userDefined],
    ],
    [],
    { eos: 258 },
  );

  it("maps byte-level pieces back to bytes; control tokens are empty unless unparsed", () => {
    expect(t.decode(t.encode(" é日本 x"))).toBe(" é日本 x");
    expect(t.decode([258])).toBe("");
    expect(t.decode([258], { unparseSpecial: true })).toBe("<|end|>");
    expect(t.decode([259])).toBe("<x>");
  });

  it("streams a character split across tokens whole, never half of it", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 20 }), (s) => {
        const ids = t.encode(s);
        const d = new Detokenizer(t);
        const parts = ids.map((i) => d.push(i));
        parts.push(d.flush());
        for (const p of parts) expect(p).not.toContain("\ufffd");
        expect(parts.join("")).toBe(new TextDecoder().decode(new TextEncoder().encode(s)));
      }),
      { numRuns: 200 },
    );
    // 日 is E6 97 A5: "æĹ" carries its first two bytes, "¥æľ¬" the third and half of 本.
    const ids = [id(t, "æ"), id(t, "Ĺ"), id(t, "¥æľ¬")];
    const d = new Detokenizer(t);
    expect(d.push(ids[0]!)).toBe("");
    expect(d.push(ids[1]!)).toBe("");
    expect(d.push(ids[2]!)).toBe("日本");
  });

  it("a normal token outside the byte map renders as llama.cpp's [UNK_BYTE_…]", () => {
    const u = vocab([["☃", N]], []);
    expect(u.decode([256])).toBe("[UNK_BYTE_0xe29883☃]");
  });

  it("clean_spaces removes the spaces llama.cpp removes", () => {
    expect(cleanSpaces("Hello , world ! It 's I 'm a ' b")).toBe("Hello, world! It's I'm a'b");
    // The space after a " ' " is blanked, so the next apostrophe does not see a space before it.
    expect(cleanSpaces(" ' ' x")).toBe("'' x");
  });
});

describe("BpeTokenizer data errors", () => {
  const fails = (patch: Partial<BpeTokenizerData>, field: string, message: RegExp) => {
    try {
      vocab([["ab", N]], ["a b"], patch);
    } catch (e) {
      expect(e).toBeInstanceOf(TokenizerDataError);
      expect((e as TokenizerDataError).field).toBe(field);
      expect((e as Error).message).toMatch(message);
      return;
    }
    throw new Error("expected a TokenizerDataError");
  };

  it("names the field and what is wrong", () => {
    fails({ merges: ["a ☃"] }, "merges", /merge 0 "a ☃" names "☃", which is not in the vocabulary/);
    fails({ merges: ["b b"] }, "merges", /merge 0 "b b" makes "bb", which is not in the vocabulary/);
    fails({ pre: "nope" }, "pre", /pre-tokenizer "nope" is not one moec knows/);
    fails({ bos: 9999 }, "bos", /outside the vocabulary/);
    fails({ addBos: true }, "bos", /no BOS token id/);
    fails({ types: [1] }, "types", /1 token types for 257 tokens/);
  });
});
