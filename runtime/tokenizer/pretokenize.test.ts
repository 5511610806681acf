// The pre-tokenizers on their own. llama.cpp's behaviour on real vocabularies is checked by
// test/llama/vocab-suite.test.ts (its test cases) and test/llama/tokenizer-property.test.ts (random text
// against node-llama-cpp); these pin down the parts: code point classes from llama.cpp's tables, the
// hand-written splitters' edge cases, the collapsed-regex path and GPT-2's byte map.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  BYTE_TO_CHAR,
  byteEncode,
  CHAR_TO_BYTE,
  codePoints,
  cptFlags,
  F_ACCENT,
  F_LETTER,
  F_NUMBER,
  F_PUNCT,
  F_SYMBOL,
  F_WHITESPACE,
  PRE_TOKENIZER_NAMES,
  preTokenizer,
  splitText,
} from "./pretokenize.ts";

const split = (name: string, text: string) => splitText(text, preTokenizer(name)!.exprs);

describe("cptFlags: llama.cpp's code point classes", () => {
  it("letters, numbers, marks, punctuation, symbols and whitespace", () => {
    expect(cptFlags(0x41) & F_LETTER).toBeTruthy();
    expect(cptFlags(0x65e5) & F_LETTER).toBeTruthy(); // 日
    expect(cptFlags(0x33) & F_NUMBER).toBeTruthy();
    expect(cptFlags(0xbd) & F_NUMBER).toBeTruthy(); // ½
    expect(cptFlags(0x301) & F_ACCENT).toBeTruthy();
    expect(cptFlags(0x21) & F_PUNCT).toBeTruthy();
    expect(cptFlags(0x24) & F_SYMBOL).toBeTruthy();
    for (const c of [0x20, 0x0a, 0x85, 0xa0, 0x3000]) expect(cptFlags(c) & F_WHITESPACE).toBeTruthy();
    expect(cptFlags(0xfeff) & F_WHITESPACE).toBeFalsy();
  });
});

describe("splitText", () => {
  it("every split covers the text exactly, for every pre-tokenizer", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...PRE_TOKENIZER_NAMES),
        fc.string({ unit: "binary", maxLength: 30 }),
        (name, s) => {
          const pieces = split(name, s);
          expect(pieces.join("")).toBe(String.fromCodePoint(...codePoints(s)));
          expect(pieces.every((p) => p !== "")).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("GPT-2: a space joins the word after it; whitespace before a word leaves its last space to it", () => {
    expect(split("gpt-2", "Hello world")).toEqual(["Hello", " world"]);
    expect(split("gpt-2", "a   b")).toEqual(["a", "  ", " b"]);
    expect(split("gpt-2", "it's")).toEqual(["it", "'s"]);
    expect(split("gpt-2", "it'S")).toEqual(["it", "'", "S"]);
  });

  it("Llama 3: digits in threes, contractions in any case, newlines with the whitespace before them", () => {
    expect(split("llama-bpe", "1234567")).toEqual(["123", "456", "7"]);
    expect(split("llama-bpe", "IT'S")).toEqual(["IT", "'S"]);
    expect(split("llama-bpe", "a \n\nb")).toEqual(["a", " \n\n", "b"]);
  });

  it("Qwen2: single digits; Qwen3.5: combining marks stay in the word", () => {
    expect(split("qwen2", "123")).toEqual(["1", "2", "3"]);
    expect(split("qwen2", "e\u0301t")).toEqual(["e", "\u0301t"]);
    expect(split("qwen35", "e\u0301t")).toEqual(["e\u0301t"]);
  });

  it("regex pre-tokenizers (std::regex in llama.cpp) run one after the other on each piece", () => {
    // falcon: punctuation runs first, then GPT-2's expression, then three-digit groups.
    expect(split("falcon", "a,b 12345")).toEqual(["a", ",", "b", " ", "123", "45"]);
    // deepseek-coder: newlines alone, then letters, punctuation, CJK runs, single digits.
    expect(split("deepseek-coder", "ab\n12")).toEqual(["ab", "\n", "1", "2"]);
  });
});

describe("GPT-2's byte map", () => {
  it("is a bijection onto printable characters", () => {
    expect(new Set(BYTE_TO_CHAR).size).toBe(256);
    expect(BYTE_TO_CHAR[0x20]).toBe("Ġ");
    expect(BYTE_TO_CHAR[0x0a]).toBe("Ċ");
    expect(BYTE_TO_CHAR[0x41]).toBe("A");
    for (let b = 0; b < 256; b++) expect(CHAR_TO_BYTE.get(BYTE_TO_CHAR[b]!)).toBe(b);
    expect(byteEncode(" é")).toBe("ĠÃ©");
  });
});

describe("preTokenizer", () => {
  it("maps llama.cpp's names to its types and settings", () => {
    expect(preTokenizer("llama-bpe")).toMatchObject({
      type: "llama3",
      ignoreMerges: true,
      addBos: true,
      cleanSpaces: true,
    });
    expect(preTokenizer("qwen2")).toMatchObject({
      type: "qwen2",
      ignoreMerges: false,
      addBos: false,
      cleanSpaces: false,
    });
    expect(preTokenizer("olmo")?.type).toBe("gpt2");
    expect(preTokenizer("refact")?.type).toBe("starcoder");
    expect(preTokenizer(undefined)?.type).toBe("default");
    expect(preTokenizer("no-such")).toBeUndefined();
    for (const n of [
      "llama-bpe",
      "qwen2",
      "gpt-2",
      "deepseek-llm",
      "deepseek-coder",
      "falcon",
      "starcoder",
      "refact",
      "mpt",
      "olmo",
      "command-r",
      "qwen35",
    ]) {
      expect(PRE_TOKENIZER_NAMES).toContain(n);
    }
  });
});
