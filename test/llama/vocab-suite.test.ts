// llama.cpp's tokenizer test suite (tests/test-tokenizer-0.cpp) run on moec's tokenizers: for every
// `models/ggml-vocab-NAME.gguf` that has `.inp`/`.out` cases, each case's text is tokenized as that test
// does (common_tokenize with add_special = false, parse_special = false) and the ids must be the `.out`
// line's. Cases are read as the C++ reads them: inputs separated by "\n__ggml_vocab_test__\n", one output
// line per input, kept in a map by input text (a repeated input counts once, its last line wins).
// Vocabularies moec does not read are listed in UNSUPPORTED with the reason and shown as skipped.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CheckpointError } from "../../runtime/checkpoint/errors.ts";
import { openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import { tokenizerFromGguf } from "../../runtime/tokenizer/from-gguf.ts";
import type { Tokenizer } from "../../runtime/tokenizer/tokenizer.ts";
import { llamaVocabDir, vocabsWithCases } from "./vocab-files.ts";

/**
 * Vocabularies with test cases that moec does not support, and why (none at present: WordPiece, the last,
 * is supported). Each one named here is shown as skipped and must be refused at load.
 */
const UNSUPPORTED: Readonly<Record<string, string>> = {};

/** llama.cpp's vocabularies without test cases that moec does not read, and why (none at present). */
const UNSUPPORTED_WITHOUT_CASES: Readonly<Record<string, string>> = {};

const SEPARATOR = "\n__ggml_vocab_test__\n";

/** test-tokenizer-0.cpp's read_tests. */
function readCases(path: string): Map<string, number[]> {
  const raw = readFileSync(`${path}.inp`);
  const text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  const inputs: string[] = [];
  for (let pos = 0; pos < text.length; ) {
    const next = text.indexOf(SEPARATOR, pos);
    if (next < 0) {
      inputs.push(text.slice(pos));
      break;
    }
    inputs.push(text.slice(pos, next));
    pos = next + SEPARATOR.length;
  }
  const lines = readFileSync(`${path}.out`, "utf8").split("\n");
  if (lines.at(-1) === "") lines.pop();
  if (lines.length !== inputs.length) {
    throw new Error(`${path}: ${inputs.length} inputs but ${lines.length} output lines`);
  }
  const cases = new Map<string, number[]>();
  inputs.forEach((input, i) => {
    const line = lines[i]!.trim();
    cases.set(input, line === "" ? [] : line.split(" ").map((x) => Number.parseInt(x, 10)));
  });
  return cases;
}

const dir = llamaVocabDir();
const vocabs = vocabsWithCases(dir);

it("finds llama.cpp's test vocabularies, and every unsupported one named here has cases", () => {
  expect(vocabs.length).toBeGreaterThanOrEqual(15);
  for (const name of ["bert-bge", "llama-spm", "llama-bpe", "qwen2", "deepseek-llm", "gemma-4"])
    expect(vocabs).toContain(name);
  for (const name of Object.keys(UNSUPPORTED)) expect(vocabs).toContain(name);
});

const unsupported = vocabs.filter((v) => v in UNSUPPORTED);
describe.runIf(unsupported.length > 0).each(unsupported)("ggml-vocab-%s (unsupported)", (name) => {
  it.skip(`not run: ${UNSUPPORTED[name]}`, () => {});

  it("is refused at load with a message naming the key", () => {
    const path = join(dir, `ggml-vocab-${name}.gguf`);
    const file = openGguf(path);
    try {
      expect(() => tokenizerFromGguf(file.metadata, path)).toThrow(CheckpointError);
      expect(() => tokenizerFromGguf(file.metadata, path)).toThrow(
        /key tokenizer\.ggml\.model: tokenizer model/,
      );
    } finally {
      file.close();
    }
  });
});

describe.each(vocabs.filter((v) => !(v in UNSUPPORTED)))("ggml-vocab-%s", (name) => {
  const path = join(dir, `ggml-vocab-${name}.gguf`);
  const cases = [...readCases(path)].map(([text, ids]) => ({
    text,
    ids,
    shown: JSON.stringify(text).slice(0, 70),
  }));
  let tok: Tokenizer;

  it("loads", () => {
    const file = openGguf(path);
    try {
      tok = tokenizerFromGguf(file.metadata, path);
    } finally {
      file.close();
    }
    expect(tok.vocabSize).toBeGreaterThan(1000);
  }, 120_000);

  it.each(cases)("tokenizes $shown to llama.cpp's ids", ({ text, ids }) => {
    expect(tok.encode(text, { addBos: false, addEos: false, parseSpecial: false })).toEqual(ids);
  });
});

describe("llama.cpp's vocabularies without test cases", () => {
  const all = readdirSync(dir)
    .filter((f) => /^ggml-vocab-.*\.gguf$/.test(f))
    .map((f) => f.slice("ggml-vocab-".length, -".gguf".length))
    .filter((v) => !vocabs.includes(v));

  for (const [name, why] of Object.entries(UNSUPPORTED_WITHOUT_CASES)) {
    it.skip(`ggml-vocab-${name} is not tokenized: ${why}`, () => {});
  }

  it.each(all)(
    "ggml-vocab-%s loads, or is one named here as unsupported and is refused naming the key",
    (name) => {
      const path = join(dir, `ggml-vocab-${name}.gguf`);
      const file = openGguf(path);
      try {
        if (name in UNSUPPORTED_WITHOUT_CASES) {
          expect(() => tokenizerFromGguf(file.metadata, path)).toThrow(
            /key tokenizer\.ggml\.model: tokenizer model/,
          );
        } else {
          const tok = tokenizerFromGguf(file.metadata, path);
          expect(tok.decode(tok.encode("Hello world", { addBos: false }))).toContain("world");
        }
      } finally {
        file.close();
      }
    },
    120_000,
  );
});
