import { describe, expect, it } from "vitest";
import { BpeTokenizer } from "./bpe.ts";
import { hfByteLevelTokenizer, isByteLevelJson, jsRegex } from "./hf-bpe.ts";
import { HfTokenizerDataError } from "./hf-json.ts";
import { BYTE_TO_CHAR } from "./pretokenize.ts";

const all = (re: RegExp, s: string) => [...s.matchAll(re)].map((m) => m[0]);

describe("jsRegex: tokenizer.json expressions in JavaScript", () => {
  it("(?i:…) matches either case, only inside the group", () => {
    const re = jsRegex("(?i:'s|'ll)|x");
    expect(all(re, "'S 'LL 'lL X x")).toEqual(["'S", "'LL", "'lL", "x"]);
  });

  it("\\s is Rust's Unicode whitespace (U+0085 yes, U+FEFF no), also inside a class", () => {
    expect(all(jsRegex("\\s+"), "a\u0085\u00a0b\ufeffc")).toEqual(["\u0085\u00a0"]);
    expect(all(jsRegex("[^\\s\\p{L}]+"), "ab 12\u0085!?")).toEqual(["12", "!?"]);
    expect(all(jsRegex("\\S+"), "ab\u3000cd")).toEqual(["ab", "cd"]);
  });

  it("\\d is any decimal digit; possessive quantifiers become greedy", () => {
    expect(all(jsRegex("\\d+"), "12٣4x")).toEqual(["12٣4"]);
    expect(all(jsRegex("a?+b++"), "abb b")).toEqual(["abb", "b"]);
  });

  it("an expression JavaScript cannot compile is a data error naming the key", () => {
    expect(() => jsRegex("(?<=a", "pre_tokenizer.pattern.Regex")).toThrow(HfTokenizerDataError);
  });
});

describe("hfByteLevelTokenizer", () => {
  const vocab: Record<string, number> = {};
  BYTE_TO_CHAR.forEach((c, i) => (vocab[c] = i));
  Object.assign(vocab, { Ġt: 256, he: 257, Ġthe: 258, "<|endoftext|>": 259, "<sep>": 260, "12": 261 });
  const json = (pre: unknown, extra: Record<string, unknown> = {}) => ({
    model: { type: "BPE", vocab, merges: ["Ġ t", "h e", "Ġt he", "1 2"] },
    added_tokens: [
      { id: 259, content: "<|endoftext|>", special: true },
      { id: 260, content: "<sep>", special: false, lstrip: true, rstrip: true },
    ],
    pre_tokenizer: pre,
    ...extra,
  });
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, use_regex: true };

  it("is chosen for a ByteLevel pre-tokenizer, alone or in a Sequence", () => {
    expect(isByteLevelJson(json(byteLevel))).toBe(true);
    expect(isByteLevelJson(json({ type: "Sequence", pretokenizers: [{ type: "Digits" }, byteLevel] }))).toBe(
      true,
    );
    expect(isByteLevelJson(json({ type: "Metaspace" }))).toBe(false);
  });

  it("splits, byte-maps and merges by rank; added tokens strip whitespace; special ones only when parsed", () => {
    const t = hfByteLevelTokenizer(json(byteLevel));
    expect(t).toBeInstanceOf(BpeTokenizer);
    expect(t.encode("he the")).toEqual([257, 258]);
    expect(t.encode("he  <sep>  the")).toEqual([257, 260, vocab.t, 257]);
    expect(t.encode("<|endoftext|>", { parseSpecial: true })).toEqual([259]);
    expect(t.encode("<|endoftext|>")).not.toContain(259);
    expect(t.decode([257, 258])).toBe("he the");
    expect(t.decode([259])).toBe("");
    expect(t.decode([259], { unparseSpecial: true })).toBe("<|endoftext|>");
  });

  it("Digits and Split behaviours cut pieces before merging; add_prefix_space adds a space", () => {
    const digits = hfByteLevelTokenizer(
      json({ type: "Sequence", pretokenizers: [{ type: "Digits", individual_digits: true }, byteLevel] }),
    );
    expect(digits.encode("12")).toEqual([vocab["1"], vocab["2"]]);
    const together = hfByteLevelTokenizer(
      json({ type: "Sequence", pretokenizers: [{ type: "Digits" }, byteLevel] }),
    );
    expect(together.encode("12")).toEqual([261]);
    const removed = hfByteLevelTokenizer(
      json({
        type: "Sequence",
        pretokenizers: [
          { type: "Split", pattern: { String: "h" }, behavior: "Removed" },
          { ...byteLevel, use_regex: false },
        ],
      }),
    );
    expect(removed.encode("hehe")).toEqual([vocab.e, vocab.e]);
    const prefixed = hfByteLevelTokenizer(json({ ...byteLevel, add_prefix_space: true }));
    expect(prefixed.encode("the")).toEqual([258]);
  });

  it("an NFC normalizer composes before splitting", () => {
    const t = hfByteLevelTokenizer(json(byteLevel, { normalizer: { type: "NFC" } }));
    expect(t.encode("e\u0301")).toEqual(t.encode("é"));
  });

  it("BOS from a Sequence post-processor's template (Llama 3), none from a ByteLevel one (GPT-2, Qwen2)", () => {
    const template = {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<|endoftext|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      special_tokens: {},
    };
    const llama3 = hfByteLevelTokenizer(
      json(byteLevel, {
        post_processor: { type: "Sequence", processors: [{ type: "ByteLevel" }, template] },
      }),
    );
    expect(llama3.addBos).toBe(true);
    expect(llama3.encode("he")).toEqual([259, 257]);
    const gpt2 = hfByteLevelTokenizer(json(byteLevel, { post_processor: { type: "ByteLevel" } }));
    expect(gpt2.addBos).toBe(false);
    expect(gpt2.encode("he")).toEqual([257]);
  });

  it("unsupported parts are data errors naming their key", () => {
    const fails = (j: unknown, key: string) => {
      try {
        hfByteLevelTokenizer(j);
      } catch (e) {
        expect(e).toBeInstanceOf(HfTokenizerDataError);
        expect((e as HfTokenizerDataError).key).toBe(key);
        return;
      }
      throw new Error("expected an error");
    };
    fails(
      json({ type: "Sequence", pretokenizers: [{ type: "Whitespace" }, byteLevel] }),
      "pre_tokenizer.pretokenizers[0].type",
    );
    fails(json(byteLevel, { normalizer: { type: "Lowercase" } }), "normalizer.type");
    fails(
      json({
        type: "Sequence",
        pretokenizers: [{ type: "Split", pattern: { Regex: "a" }, behavior: "Sideways" }, byteLevel],
      }),
      "pre_tokenizer.pretokenizers[0].behavior",
    );
    fails({ ...json(byteLevel), model: { type: "BPE", vocab, merges: ["h q"] } }, "model.merges");
  });
});
