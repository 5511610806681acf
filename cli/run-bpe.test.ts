// `moec run` on a GGUF whose vocabulary is byte-level BPE (tokenizer.ggml.model "gpt2", as Qwen-MoE, OLMoE
// and DeepSeek-MoE ship): moec's random Mixtral-shaped weights with a BPE vocabulary of the same size.
// The prompt's ids are the BPE tokenizer's, and the generated text is the generated ids decoded.
import { spawnSync } from "node:child_process";
import { closeSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { openGguf } from "../runtime/checkpoint/gguf-read.ts";
import { type GgufValue, gv } from "../runtime/checkpoint/gguf-value.ts";
import { writeGguf } from "../runtime/checkpoint/gguf-write.ts";
import { writeRandomMixtralGguf } from "../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../runtime/checkpoint/test-support.ts";
import { tokenizerFromGguf } from "../runtime/tokenizer/from-gguf.ts";
import { BYTE_TO_CHAR } from "../runtime/tokenizer/pretokenize.ts";

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

/** Rewrites `src` with a byte-level BPE vocabulary of `vocab` tokens in place of its SentencePiece one. */
function withBpeVocabulary(src: string, dst: string, vocab: number): void {
  const merged = ["Ġt", "he", "Ġthe", "Ġc", "Ġca", "Ġcat", "Ġs", "Ġsat"];
  const merges = ["Ġ t", "h e", "Ġt he", "Ġ c", "Ġc a", "Ġca t", "Ġ s", "Ġs a", "Ġsa t"];
  const tokens = [...BYTE_TO_CHAR, ...merged, "Ġsa", "<|endoftext|>"];
  for (let i = tokens.length; i < vocab; i++) tokens.push(`<|unused_${i}|>`);
  const types = tokens.map((t) => (t.startsWith("<|") ? 3 : 1));
  const file = openGguf(src);
  const fd = openSync(src, "r");
  try {
    const metadata: [string, GgufValue][] = [...file.metadata].filter(([k]) => !k.startsWith("tokenizer."));
    metadata.push(
      ["tokenizer.ggml.model", gv.str("gpt2")],
      ["tokenizer.ggml.pre", gv.str("qwen2")],
      ["tokenizer.ggml.tokens", gv.strings(tokens)],
      ["tokenizer.ggml.token_type", gv.i32s(types)],
      ["tokenizer.ggml.merges", gv.strings(merges)],
      ["tokenizer.ggml.bos_token_id", gv.u32(tokens.indexOf("<|endoftext|>"))],
      ["tokenizer.ggml.eos_token_id", gv.u32(tokens.indexOf("<|endoftext|>"))],
    );
    const tensors = file.tensors.map((t) => {
      const data = new Uint8Array(t.nbytes);
      readSync(fd, data, 0, t.nbytes, t.offset);
      return { name: t.name, dims: t.dims, type: t.type, data };
    });
    writeGguf(dst, { metadata, tensors });
  } finally {
    closeSync(fd);
    file.close();
  }
}

it("moec run generates from a byte-level BPE GGUF, with the BPE tokenizer's prompt ids", () => {
  const src = join(dir, "spm.gguf");
  const path = join(dir, "bpe.gguf");
  const vocab = 320;
  writeRandomMixtralGguf(src, {
    hidden: 32,
    layers: 1,
    heads: 4,
    kvHeads: 2,
    ffn: 64,
    experts: 2,
    topK: 1,
    vocab,
    type: "f32",
  });
  withBpeVocabulary(src, path, vocab);
  const file = openGguf(path);
  const tok = tokenizerFromGguf(file.metadata, path);
  file.close();
  const prompt = " the cat sat 日本";
  const ids = tok.encode(prompt);
  expect(ids.slice(0, 3)).toEqual([tok.tokenId("Ġthe"), tok.tokenId("Ġcat"), tok.tokenId("Ġsat")]);
  const r = spawnSync(
    process.execPath,
    [
      "bin/moec.js",
      "run",
      "--weights",
      path,
      "-p",
      prompt,
      "-n",
      "8",
      "--temperature",
      "0",
      "--json",
      "--threads",
      "1",
    ],
    { encoding: "utf8", timeout: 120_000 },
  );
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  const out = JSON.parse(r.stdout);
  expect(out.prompt_tokens).toEqual(ids);
  expect(out.tokens.length).toBeGreaterThan(0);
  expect(out.text).toBe(tok.decode(out.tokens.filter((t: number) => !tok.isEog(t))));
}, 180_000);
