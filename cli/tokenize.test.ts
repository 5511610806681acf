// `moec tokenize` as a user runs it: a GGUF (vocabulary-only ones included) or a Hugging Face folder, ids
// and pieces, --json, and one-line errors with exit code 2 for tokenizer metadata it cannot use.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type GgufValue, gv } from "../runtime/checkpoint/gguf-value.ts";
import { writeGguf } from "../runtime/checkpoint/gguf-write.ts";
import { writeRandomMixtralGguf } from "../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../runtime/checkpoint/test-support.ts";
import { BYTE_TO_CHAR } from "../runtime/tokenizer/pretokenize.ts";
import { llamaVocabDir } from "../test/llama/vocab-files.ts";

function moec(...args: string[]) {
  const r = spawnSync(process.execPath, ["bin/moec.js", ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());
const vocabDir = llamaVocabDir();

/** The ids of case `i` of llama.cpp's test file for a vocabulary, with its text. */
function llamaCase(name: string, i: number): { text: string; ids: number[] } {
  const path = join(vocabDir, `ggml-vocab-${name}.gguf`);
  const text = readFileSync(`${path}.inp`, "utf8").split("\n__ggml_vocab_test__\n")[i]!;
  const line = readFileSync(`${path}.out`, "utf8").split("\n")[i]!.trim();
  return { text, ids: line.split(" ").map(Number) };
}

describe("moec tokenize", () => {
  it("a vocabulary-only byte-level BPE GGUF: llama.cpp's ids, BOS added as the model adds it", () => {
    const path = join(vocabDir, "ggml-vocab-llama-bpe.gguf");
    const { text, ids } = llamaCase("llama-bpe", 20);
    expect(text.length).toBeGreaterThan(3);
    const r = moec("tokenize", path, "--prompt", text, "--json");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual({ tokens: [128000, ...ids] });
    // GPT-2 adds no BOS.
    const gpt2 = llamaCase("gpt-2", 20);
    const g = moec("tokenize", join(vocabDir, "ggml-vocab-gpt-2.gguf"), "-p", gpt2.text, "--json");
    expect(JSON.parse(g.out)).toEqual({ tokens: gpt2.ids });
  });

  it("prints each id with its piece, a byte piece that is not whole UTF-8 as <0xXX>", () => {
    const r = moec("tokenize", join(vocabDir, "ggml-vocab-llama-bpe.gguf"), "-p", "Hello 🦙");
    expect(r.code).toBe(0);
    const lines = r.out.trim().split("\n");
    expect(lines[0]).toMatch(/^128000 {2}"<\|begin_of_text\|>"$/);
    expect(lines[1]).toMatch(/^\s*9906 {2}"Hello"$/);
    expect(lines.slice(2, -1).join(" ")).toMatch(/<0x[0-9A-F]{2}>/);
    expect(lines.at(-1)).toMatch(/^\d+ tokens$/);
  });

  it("a SentencePiece GGUF with weights, written by moec's writer", () => {
    const path = join(dir, "spm.gguf");
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
    const r = moec("tokenize", path, "-p", "the cat", "--json");
    expect(r.code).toBe(0);
    const ids = JSON.parse(r.out).tokens as number[];
    expect(ids[0]).toBe(1);
    expect(ids.length).toBeGreaterThan(1);
  });

  it("a Hugging Face folder with a byte-level BPE tokenizer.json", () => {
    const folder = join(dir, "hf");
    mkdirSync(folder, { recursive: true });
    const vocab: Record<string, number> = {};
    BYTE_TO_CHAR.forEach((c, i) => (vocab[c] = i));
    Object.assign(vocab, { Ġt: 256, he: 257, Ġthe: 258, "<|endoftext|>": 259 });
    writeFileSync(
      join(folder, "tokenizer.json"),
      JSON.stringify({
        model: { type: "BPE", vocab, merges: ["Ġ t", "h e", "Ġt he"] },
        added_tokens: [{ id: 259, content: "<|endoftext|>", special: true }],
        pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, use_regex: true },
        decoder: { type: "ByteLevel" },
      }),
    );
    const r = moec("tokenize", folder, "-p", "he the<|endoftext|>", "--json");
    expect(r.err).toBe("");
    // The special token is text here (not parsed), as in `moec run`'s prompt.
    expect(JSON.parse(r.out).tokens.slice(0, 2)).toEqual([257, 258]);
  });

  it("tokenizer metadata it cannot use: one line naming the file and the key, exit 2, no stack", () => {
    const tokens = [...BYTE_TO_CHAR, "Ġt"];
    const base: [string, GgufValue][] = [
      ["general.architecture", gv.str("llama")],
      ["tokenizer.ggml.model", gv.str("gpt2")],
      ["tokenizer.ggml.tokens", gv.strings(tokens)],
    ];
    const cases: [string, [string, GgufValue][], RegExp][] = [
      [
        "bad-merges.gguf",
        [
          ...base,
          ["tokenizer.ggml.pre", gv.str("gpt-2")],
          ["tokenizer.ggml.merges", gv.strings(["Ġ t", "x yz"])],
        ],
        /bad-merges\.gguf: key tokenizer\.ggml\.merges: merge 1 "x yz" names "yz", which is not in the vocabulary/,
      ],
      [
        "bad-pre.gguf",
        [...base, ["tokenizer.ggml.pre", gv.str("klingon")], ["tokenizer.ggml.merges", gv.strings(["Ġ t"])]],
        /bad-pre\.gguf: key tokenizer\.ggml\.pre: pre-tokenizer "klingon" is not one moec knows/,
      ],
      [
        "bad-model.gguf",
        [
          ["tokenizer.ggml.model", gv.str("rwkv")],
          ["tokenizer.ggml.tokens", gv.strings(["[PAD]", "a"])],
        ],
        /bad-model\.gguf: key tokenizer\.ggml\.model: tokenizer model "rwkv" is not supported/,
      ],
    ];
    for (const [name, metadata, message] of cases) {
      const path = join(dir, name);
      writeGguf(path, { metadata });
      const r = moec("tokenize", path, "-p", "the");
      expect(r.code, name).toBe(2);
      expect(r.out).toBe("");
      expect(r.err.trim().split("\n")).toHaveLength(1);
      expect(r.err).toMatch(message);
      expect(r.err).not.toMatch(/\bat .*\.ts:\d+/);
    }
  });

  it("a SentencePiece vocabulary without byte tokens: text it covers tokenizes, text needing a byte token fails naming it", () => {
    const path = join(dir, "no-bytes.gguf");
    const tokens = ["<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "▁ab"];
    writeGguf(path, {
      metadata: [
        ["tokenizer.ggml.model", gv.str("llama")],
        ["tokenizer.ggml.tokens", gv.strings(tokens)],
        ["tokenizer.ggml.scores", gv.f32s(tokens.map((_, i) => -i))],
        ["tokenizer.ggml.token_type", gv.i32s([2, 3, 3, 1, 1, 1, 1, 1])],
      ],
    });
    const ok = moec("tokenize", path, "-p", "ab", "--json");
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.out)).toEqual({ tokens: [1, 7] });
    const bad = moec("tokenize", path, "-p", "aé");
    expect(bad.code).toBe(2);
    expect(bad.err.trim().split("\n")).toHaveLength(1);
    expect(bad.err).toMatch(
      /cannot tokenize "é": it is not in the vocabulary and its byte 0xC3 has no byte token <0xC3>/,
    );
  });

  it("a missing file is exit 2", () => {
    const r = moec("tokenize", join(dir, "nope.gguf"), "-p", "x");
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/nope\.gguf: no such file/);
  });
});
