// The Hugging Face tokenizer.json loader: on the random SentencePiece vocabulary converted the way
// transformers converts one, it gives the GGUF tokenizer's ids (which match llama.cpp's) on a corpus
// with spaces, accents, CJK, emoji and text that needs byte fallback; streaming decode gives the text
// back; a file with missing pieces is a CheckpointError naming the file and key.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { tokenizerJson } from "../../test/hf-folder.ts";
import { CheckpointError } from "../checkpoint/errors.ts";
import { randomVocabulary } from "../checkpoint/random-gguf.ts";
import { HfTokenizer, hfTokenizerData, loadHfTokenizer } from "./hf-json.ts";
import { Detokenizer, SpmTokenizer } from "./spm.ts";
import { TokenizeError } from "./tokenizer.ts";

const CORPUS = [
  "Once upon a time",
  "the cat and the dog",
  "  two  spaces  ",
  "line one\nline two\n\n",
  "Café, naïve, Ærø — déjà vu",
  "日本語のテキスト",
  "emoji 🙂👍🏽 and 𝄞",
  "digits 0123456789 3.14159",
  "\u0001\u007f control bytes",
  "what is it? (they said) 'yes'; -no-",
  "",
  " ",
];

function folder(json: object, config?: object): string {
  const d = mkdtempSync(join(tmpdir(), "moec-tok-"));
  writeFileSync(join(d, "tokenizer.json"), JSON.stringify(json));
  if (config) writeFileSync(join(d, "tokenizer_config.json"), JSON.stringify(config));
  return d;
}

describe("Hugging Face tokenizer.json", () => {
  for (const size of [300, 512, 2000]) {
    it(`matches the SentencePiece tokenizer on the same vocabulary (${size} pieces)`, () => {
      const hf = new HfTokenizer(hfTokenizerData(tokenizerJson(size)));
      const v = randomVocabulary(size);
      const spm = new SpmTokenizer({ ...v, addBos: true, addSpacePrefix: true, unkFallback: false });
      expect(hf.addBos).toBe(true);
      expect(hf.bos).toBe(1);
      expect(hf.eos).toBe(2);
      expect([...hf.eogIds]).toEqual([2]);
      for (const text of CORPUS) {
        const ids = hf.encode(text);
        expect(ids, JSON.stringify(text)).toEqual(spm.encode(text));
        expect(hf.decode(ids, { removeSpecial: true })).toBe(spm.decode(ids, { removeSpecial: true }));
      }
    });
  }

  it("streams text back exactly, never splitting a character", () => {
    const hf = new HfTokenizer(hfTokenizerData(tokenizerJson(400)));
    for (const text of CORPUS) {
      const ids = hf.encode(text, { addBos: false });
      const d = new Detokenizer(hf);
      let out = "";
      for (const id of ids) {
        const piece = d.push(id);
        expect(piece).not.toMatch(/\uFFFD/);
        out += piece;
      }
      expect(out + d.flush()).toBe(text);
    }
  });

  it("parses special tokens only when asked", () => {
    const hf = new HfTokenizer(hfTokenizerData(tokenizerJson(400)));
    const withSpecial = hf.encode("<s>the</s>", { addBos: false, parseSpecial: true });
    expect(withSpecial[0]).toBe(1);
    expect(withSpecial.at(-1)).toBe(2);
    expect(hf.encode("<s>", { addBos: false })).not.toContain(1);
  });

  it("reads BOS, EOS and add_bos_token from tokenizer_config.json", () => {
    const d = folder(tokenizerJson(300), {
      add_bos_token: false,
      eos_token: { content: "<unk>" },
      chat_template: "x",
    });
    const t = loadHfTokenizer(d);
    expect(t.addBos).toBe(false);
    expect(t.eos).toBe(0);
    expect(t.chatTemplate).toBe("x");
  });

  const broken: [string, (j: Record<string, unknown>) => void, RegExp][] = [
    ["no model", (j) => delete j.model, /tokenizer\.json: key model: missing/],
    ["no vocabulary", (j) => delete (j.model as Record<string, unknown>).vocab, /key model\.vocab: missing/],
    ["no merges", (j) => delete (j.model as Record<string, unknown>).merges, /key model\.merges: missing/],
    [
      "a merge of unknown pieces",
      (j) => ((j.model as { merges: string[] }).merges[3] = "qq zz"),
      /key model\.merges\[3\]: "qq" is not in the vocabulary/,
    ],
    [
      "a gap in the ids",
      (j) => {
        const v = (j.model as { vocab: Record<string, number> }).vocab;
        v["▁the"] = 100000;
      },
      /key model\.vocab: no token has id \d+/,
    ],
    [
      "an unsupported model",
      (j) => ((j.model as Record<string, unknown>).type = "WordPiece"),
      /key model\.type: "WordPiece" is not supported/,
    ],
  ];
  for (const [what, mutate, message] of broken) {
    it(`refuses a tokenizer.json with ${what}`, () => {
      const json = tokenizerJson(300) as Record<string, unknown>;
      mutate(json);
      const d = folder(json);
      try {
        loadHfTokenizer(d);
        throw new Error("expected a CheckpointError");
      } catch (e) {
        expect(e).toBeInstanceOf(CheckpointError);
        expect((e as Error).message.startsWith(join(d, "tokenizer.json"))).toBe(true);
        expect((e as Error).message).toMatch(message);
        expect((e as Error).message).not.toContain("\n");
      }
    });
  }

  it("byte_fallback with byte tokens missing loads; a character needing one becomes unk, or fails without unk", () => {
    const j = tokenizerJson(300) as { model: { vocab: Record<string, number>; unk_token?: string } };
    const v = j.model.vocab;
    // "é" is C3 A9: rename <0xA9> so that its id stays taken but the byte token is gone.
    v["<0xZZ>"] = v["<0xA9>"]!;
    delete v["<0xA9>"];
    const t = loadHfTokenizer(folder(j));
    expect(t.unk).toBeDefined();
    expect(t.encode("é", { addBos: false })).toContain(t.unk);
    expect(t.encode("a", { addBos: false }).length).toBeGreaterThan(0);
    const noUnk = JSON.parse(JSON.stringify(j));
    noUnk.model.unk_token = null;
    const u = loadHfTokenizer(folder(noUnk));
    expect(() => u.encode("é", { addBos: false })).toThrow(TokenizeError);
    expect(() => u.encode("é", { addBos: false })).toThrow(/cannot tokenize "é": .*no byte token <0xA9>/);
  });

  it("names tokenizer_config.json for a bad key there", () => {
    const d = folder(tokenizerJson(300), { bos_token: "<nope>" });
    expect(() => loadHfTokenizer(d)).toThrow(
      /tokenizer_config\.json: key bos_token: "<nope>" is not in the vocabulary/,
    );
  });

  it("a folder without tokenizer.json is an error naming the file", () => {
    const d = mkdtempSync(join(tmpdir(), "moec-tok-"));
    expect(() => loadHfTokenizer(d)).toThrow(/tokenizer\.json: missing/);
  });
});
