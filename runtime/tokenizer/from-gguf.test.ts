import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CheckpointError } from "../checkpoint/errors.ts";
import { openGguf } from "../checkpoint/gguf-read.ts";
import { type GgufValue, gv } from "../checkpoint/gguf-value.ts";
import { randomVocabulary, writeRandomMixtralGguf } from "../checkpoint/random-gguf.ts";
import { scratchDir } from "../checkpoint/test-support.ts";
import { BpeTokenizer } from "./bpe.ts";
import { TOKENIZER_KEYS as K, tokenizerFromGguf } from "./from-gguf.ts";
import { BYTE_TO_CHAR } from "./pretokenize.ts";
import { TokenizeError } from "./tokenizer.ts";

const FILE = "model.gguf";
const vocab = randomVocabulary(300);

function metadata(patch: Record<string, GgufValue | undefined> = {}): Map<string, GgufValue> {
  const m = new Map<string, GgufValue>([
    ["general.architecture", gv.str("llama")],
    [K.model, gv.str("llama")],
    [K.tokens, gv.strings(vocab.tokens)],
    [K.scores, gv.f32s(vocab.scores)],
    [K.types, gv.i32s(vocab.types)],
    [K.bos, gv.u32(1)],
    [K.eos, gv.u32(2)],
    [K.unk, gv.u32(0)],
    [K.addBos, gv.bool(true)],
  ]);
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) m.delete(k);
    else m.set(k, v);
  }
  return m;
}

function failure(patch: Record<string, GgufValue | undefined>): CheckpointError {
  try {
    tokenizerFromGguf(metadata(patch), FILE);
  } catch (e) {
    expect(e).toBeInstanceOf(CheckpointError);
    return e as CheckpointError;
  }
  throw new Error("expected a CheckpointError");
}

describe("tokenizerFromGguf", () => {
  it("reads the vocabulary and llama.cpp's defaults", () => {
    const t = tokenizerFromGguf(metadata(), FILE);
    expect(t.vocabSize).toBe(300);
    expect([t.bos, t.eos, t.unk, t.addBos, t.addEos, t.addSpacePrefix]).toEqual([1, 2, 0, true, false, true]);
    const ids = t.encode("the cat");
    expect(ids[0]).toBe(1);
    expect(t.decode(ids.slice(1))).toBe("the cat");
    expect(t.isEog(2)).toBe(true);
  });

  it("uses llama.cpp's defaults when keys are absent", () => {
    const t = tokenizerFromGguf(
      metadata({ [K.bos]: undefined, [K.eos]: undefined, [K.unk]: undefined, [K.addBos]: undefined }),
      FILE,
    );
    expect([t.bos, t.eos, t.unk, t.addBos, t.addSpacePrefix]).toEqual([1, 2, 0, true, true]);
    // No scores: every score is 0; no types: every token is normal (so <s> renders as text).
    const u = tokenizerFromGguf(metadata({ [K.scores]: undefined, [K.types]: undefined }), FILE);
    expect(u.decode([1])).toBe("<s>");
  });

  it("honours add_space_prefix, add_bos_token, add_eos_token and i32 scores", () => {
    const t = tokenizerFromGguf(
      metadata({
        [K.addSpacePrefix]: gv.bool(false),
        [K.addBos]: gv.bool(false),
        [K.addEos]: gv.bool(true),
        [K.scores]: gv.i32s(vocab.scores),
      }),
      FILE,
    );
    expect([t.addSpacePrefix, t.addBos, t.addEos]).toEqual([false, false, true]);
    const ids = t.encode("the");
    expect(t.tokenText(ids[0]!)).toBe("t"); // no ▁ in front, and this vocabulary has no "th"
    expect(t.decode(ids)).toBe("the");
    expect(ids.at(-1)).toBe(2);
  });

  it("ignores extra scores and types, as llama.cpp does", () => {
    const t = tokenizerFromGguf(
      metadata({ [K.scores]: gv.f32s([...vocab.scores, 5]), [K.types]: gv.i32s([...vocab.types, 1]) }),
      FILE,
    );
    expect(t.vocabSize).toBe(300);
  });

  it("an id of -1 (0xFFFFFFFF) means no such token, as converters write it: llama.cpp's default stays", () => {
    const t = tokenizerFromGguf(metadata({ [K.unk]: gv.u32(0xffffffff), [K.eos]: gv.i32(-1) }), FILE);
    expect(t.unk).toBe(0);
    expect(t.eos).toBe(2);
  });

  it("names the file and the key when something is wrong", () => {
    const cases: [Record<string, GgufValue | undefined>, string, RegExp][] = [
      [{ [K.model]: undefined }, K.model, /missing/],
      [{ [K.model]: gv.str("rwkv") }, K.model, /"rwkv" is not supported/],
      [{ [K.model]: gv.u32(1) }, K.model, /must be a string/],
      [{ [K.tokens]: undefined }, K.tokens, /missing/],
      [{ [K.tokens]: gv.i32s([1, 2]) }, K.tokens, /array of strings, not an array of i32/],
      [{ [K.tokens]: gv.strings([]) }, K.tokens, /empty/],
      [{ [K.scores]: gv.f32s(vocab.scores.slice(1)) }, K.scores, /299 scores for 300 tokens/],
      [{ [K.scores]: gv.strings(["x"]) }, K.scores, /f32 or i32/],
      [{ [K.types]: gv.u32s(vocab.types) }, K.types, /array of i32, not an array of u32/],
      [{ [K.types]: gv.i32s([1]) }, K.types, /1 token types for 300 tokens/],
      [{ [K.bos]: gv.u32(300) }, K.bos, /token id 300 is outside the vocabulary \(0\.\.299\)/],
      [{ [K.eos]: gv.str("2") }, K.eos, /must be an integer/],
      [{ [K.unk]: gv.i32(-2) }, K.unk, /token id -2/],
      [{ [K.addBos]: gv.u8(1) }, K.addBos, /must be a bool/],
      [
        { [K.addEos]: gv.bool(true), [K.eos]: undefined, [K.tokens]: gv.strings(vocab.tokens.slice(0, 2)) },
        K.eos,
        /no EOS token id/,
      ],
    ];
    for (const [patch, key, problem] of cases) {
      const e = failure(patch);
      expect(e.file).toBe(FILE);
      expect(e.what).toBe(key);
      expect(e.message.startsWith(`${FILE}: key ${key}: `)).toBe(true);
      expect(e.problem).toMatch(problem);
    }
  });

  it("reports tokenizer data problems against their key", () => {
    const dup = [...vocab.tokens];
    dup[10] = dup[11]!;
    expect(failure({ [K.tokens]: gv.strings(dup) }).message).toBe(
      'model.gguf: key tokenizer.ggml.tokens: duplicate token "<0x08>" has ids 10 and 11',
    );
  });

  it("a vocabulary without a byte token loads; text needing it fails naming it, even with an unknown token", () => {
    const tokens = vocab.tokens.map((t) => (t === "<0x80>" ? "<0x80>!" : t));
    const t = tokenizerFromGguf(metadata({ [K.tokens]: gv.strings(tokens) }), FILE);
    expect(t.unk).toBe(0);
    expect(() => t.encode("\u0800")).toThrow(TokenizeError);
    expect(() => t.encode("\u0800")).toThrow(/its byte 0x80 has no byte token <0x80>/);
    expect(t.encode("the")[0]).toBe(1);
    // A byte whose single-character token exists needs no <0xXX> token (llama.cpp's second lookup).
    const letters = vocab.tokens.map((t) => (t === "<0x61>" ? "<0x61>!" : t));
    expect(letters).toContain("a");
    expect(() =>
      tokenizerFromGguf(metadata({ [K.tokens]: gv.strings(letters) }), FILE).encode("a"),
    ).not.toThrow();
  });

  it("reads a file written by moec's writer", () => {
    const { dir, cleanup } = scratchDir();
    try {
      const path = join(dir, "m.gguf");
      writeRandomMixtralGguf(path, {
        hidden: 32,
        layers: 1,
        heads: 4,
        kvHeads: 2,
        ffn: 64,
        experts: 2,
        topK: 1,
        vocab: 300,
        type: "f32",
      });
      const f = openGguf(path);
      try {
        const t = tokenizerFromGguf(f.metadata, path);
        expect(t.encode("the cat sat")[0]).toBe(1);
        expect(t.decode(t.encode("the cat sat", { addBos: false }))).toBe("the cat sat");
      } finally {
        f.close();
      }
    } finally {
      cleanup();
    }
  });
});

describe("tokenizerFromGguf: byte-level BPE (tokenizer.ggml.model gpt2)", () => {
  // The 256 byte characters, then merges making "Ġt", "he", "Ġthe", and two control tokens.
  const bytes = [...BYTE_TO_CHAR];
  const merges = ["Ġ t", "h e", "Ġt he"];
  const tokens = [...bytes, "Ġt", "he", "Ġthe", "<|begin_of_text|>", "<|end_of_text|>"];
  const types = tokens.map((_, i) => (i >= 259 ? 3 : 1));
  const bpe = (patch: Record<string, GgufValue | undefined> = {}) => {
    const m = new Map<string, GgufValue>([
      [K.model, gv.str("gpt2")],
      [K.pre, gv.str("llama-bpe")],
      [K.tokens, gv.strings(tokens)],
      [K.types, gv.i32s(types)],
      [K.merges, gv.strings(merges)],
      [K.bos, gv.u32(259)],
      [K.eos, gv.u32(260)],
    ]);
    for (const [k, v] of Object.entries(patch)) {
      if (v === undefined) m.delete(k);
      else m.set(k, v);
    }
    return m;
  };
  const failure = (patch: Record<string, GgufValue | undefined>): CheckpointError => {
    try {
      tokenizerFromGguf(bpe(patch), FILE);
    } catch (e) {
      expect(e).toBeInstanceOf(CheckpointError);
      return e as CheckpointError;
    }
    throw new Error("expected a CheckpointError");
  };

  it("reads the vocabulary, merges by rank and adds BOS as llama.cpp does for llama-bpe", () => {
    const t = tokenizerFromGguf(bpe(), FILE);
    expect(t).toBeInstanceOf(BpeTokenizer);
    expect(t.addBos).toBe(true);
    expect(t.encode(" the")).toEqual([259, 258]);
    expect(t.encode("he the", { addBos: false })).toEqual([257, 258]);
    expect(t.decode([259, 257, 258])).toBe("he the");
    expect(t.isEog(260)).toBe(true);
  });

  it("add_bos_token in the file wins; gpt-2 does not add BOS by default", () => {
    expect(tokenizerFromGguf(bpe({ [K.addBos]: gv.bool(false) }), FILE).addBos).toBe(false);
    expect(tokenizerFromGguf(bpe({ [K.pre]: gv.str("gpt-2") }), FILE).addBos).toBe(false);
  });

  it("names the file, the key and the problem for metadata it cannot use", () => {
    const cases: [Record<string, GgufValue | undefined>, string, string][] = [
      [{ [K.merges]: undefined }, K.merges, "missing: a BPE vocabulary needs its merges"],
      [{ [K.merges]: gv.i32s([1]) }, K.merges, "must be an array of strings, not an array of i32"],
      [
        { [K.merges]: gv.strings(["Ġ t", "h x"]) },
        K.merges,
        'merge 1 "h x" makes "hx", which is not in the vocabulary',
      ],
      [
        { [K.merges]: gv.strings(["Ġ t", "h ☃"]) },
        K.merges,
        'merge 1 "h ☃" names "☃", which is not in the vocabulary',
      ],
      [{ [K.merges]: gv.strings(["het"]) }, K.merges, 'merge 0 "het" is not "left right"'],
      [{ [K.pre]: gv.str("no-such-pre") }, K.pre, 'pre-tokenizer "no-such-pre" is not one moec knows'],
      [{ [K.pre]: gv.u32(1) }, K.pre, "must be a string, not u32"],
      [{ [K.bos]: gv.u32(999) }, K.bos, "token id 999 is outside the vocabulary (0..260)"],
    ];
    for (const [patch, key, problem] of cases) {
      const e = failure(patch);
      expect(e.exitCode).toBe(2);
      expect(e.message.startsWith(`${FILE}: key ${key}: `)).toBe(true);
      expect(e.problem).toContain(problem);
      expect(e.message).not.toContain("\n");
    }
  });

  it("a pre-tokenizer named by llama.cpp's default (none in the file) is used", () => {
    const t = tokenizerFromGguf(bpe({ [K.pre]: undefined }), FILE);
    expect((t as BpeTokenizer).preType).toBe("default");
  });
});
