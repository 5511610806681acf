// The random GGUF writer: llama.cpp's metadata keys with the types it reads, a SentencePiece-style
// vocabulary whose pieces can all be built by merges, f32 norms and router, and a scaled head.
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { getScheme } from "../quant/index.ts";
import { openGguf } from "./gguf-read.ts";
import { plainValue } from "./gguf-value.ts";
import { randomVocabulary, TOKEN_TYPE, writeRandomMixtralGguf } from "./random-gguf.ts";
import { scratchDir } from "./test-support.ts";

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

const sizes = { hidden: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 96, experts: 4, topK: 2, vocab: 300 };

describe("randomVocabulary", () => {
  it("specials, 256 byte pieces, then pieces reachable by merging earlier ones", () => {
    for (const size of [260, 300, 1000, 32000]) {
      const v = randomVocabulary(size);
      expect(v.tokens).toHaveLength(size);
      expect(new Set(v.tokens).size).toBe(size);
      expect(v.tokens.slice(0, 3)).toEqual(["<unk>", "<s>", "</s>"]);
      expect(v.tokens[3]).toBe("<0x00>");
      expect(v.tokens[258]).toBe("<0xFF>");
      expect(v.types.slice(3, 259).every((t) => t === TOKEN_TYPE.byte)).toBe(true);
      expect(v.tokens[259]).toBe("\u2581");
      const earlier = new Set<string>();
      const bad: string[] = [];
      for (let i = 259; i < size; i++) {
        const p = v.tokens[i]!;
        const chars = [...p];
        const split = (k: number) =>
          earlier.has(chars.slice(0, k).join("")) && earlier.has(chars.slice(k).join(""));
        if (chars.length > 1 && !chars.some((_, k) => k > 0 && split(k))) bad.push(p);
        if (v.types[i] !== TOKEN_TYPE.normal) bad.push(`type of ${p}`);
        if (i > 259 && !(v.scores[i]! < v.scores[i - 1]!)) bad.push(`score of ${p}`);
        earlier.add(p);
      }
      expect(bad).toEqual([]);
    }
    expect(randomVocabulary(300).tokens).toContain("\u2581the");
    expect(() => randomVocabulary(259)).toThrow(/at least 260/);
  });
});

describe("writeRandomMixtralGguf", () => {
  it("writes what llama.cpp reads for a Mixtral", () => {
    const path = join(dir, "m.gguf");
    writeRandomMixtralGguf(path, {
      ...sizes,
      type: "q4_0",
      ropeTheta: 1e6,
      eps: 1e-6,
      seed: 2,
      name: "tiny",
    });
    const f = openGguf(path);
    const type = (k: string) => f.metadata.get(k)?.type;
    const value = (k: string) => plainValue(f.metadata.get(k)!);
    expect(value("general.architecture")).toBe("llama");
    expect(value("general.name")).toBe("tiny");
    expect(value("general.file_type")).toBe(2);
    for (const [k, v] of [
      ["llama.embedding_length", 64],
      ["llama.block_count", 2],
      ["llama.feed_forward_length", 96],
      ["llama.attention.head_count", 4],
      ["llama.attention.head_count_kv", 2],
      ["llama.expert_count", 4],
      ["llama.expert_used_count", 2],
      ["llama.context_length", 2048],
      ["llama.rope.dimension_count", 16],
      ["llama.vocab_size", 300],
    ] as const) {
      expect(type(k), k).toBe("u32");
      expect(value(k), k).toBe(v);
    }
    expect(type("llama.rope.freq_base")).toBe("f32");
    expect(value("llama.rope.freq_base")).toBe(1e6);
    expect(value("llama.attention.layer_norm_rms_epsilon")).toBe(Math.fround(1e-6));
    expect(value("tokenizer.ggml.model")).toBe("llama");
    expect((value("tokenizer.ggml.tokens") as string[]).length).toBe(300);
    expect(f.metadata.get("tokenizer.ggml.token_type")).toMatchObject({ type: "array", of: "i32" });
    expect(f.metadata.get("tokenizer.ggml.scores")).toMatchObject({ type: "array", of: "f32" });
    expect(value("tokenizer.ggml.bos_token_id")).toBe(1);
    expect(value("tokenizer.ggml.eos_token_id")).toBe(2);
    expect(value("tokenizer.ggml.add_bos_token")).toBe(true);

    const t = (n: string) => f.tensor(n);
    expect(t("token_embd.weight").dims).toEqual([64, 300]);
    expect(t("token_embd.weight").scheme.name).toBe("q4_0");
    expect(t("blk.1.ffn_gate_inp.weight")).toMatchObject({ dims: [64, 4] });
    expect(t("blk.1.ffn_gate_inp.weight").scheme.name).toBe("f32");
    expect(t("blk.1.attn_norm.weight").scheme.name).toBe("f32");
    expect(t("blk.0.ffn_down_exps.weight").dims).toEqual([96, 64, 4]);
    expect(t("blk.0.attn_k.weight").dims).toEqual([64, 32]);
    expect(t("output.weight").scheme.name).toBe("q4_0");
    f.close();
  });

  it("scales the head, and can tie it or write a dense model", () => {
    const rms = (path: string, name: string) => {
      const f = openGguf(path);
      const t = f.tensor(name);
      const v = new Float32Array(t.elements);
      getScheme(t.scheme.name).decode(f.read(t), v);
      f.close();
      return Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length);
    };
    const a = join(dir, "a.gguf");
    const b = join(dir, "b.gguf");
    writeRandomMixtralGguf(a, { ...sizes, type: "f32", seed: 3 });
    writeRandomMixtralGguf(b, { ...sizes, type: "f32", seed: 3, headScale: 8 });
    expect(rms(b, "output.weight") / rms(a, "output.weight")).toBeCloseTo(8, 5);
    expect(rms(a, "output.weight")).toBeCloseTo(1 / 8, 1);

    const c = join(dir, "c.gguf");
    writeRandomMixtralGguf(c, { ...sizes, experts: 0, topK: 0, type: "f16", tiedHead: true });
    const f = openGguf(c);
    expect(f.findTensor("output.weight")).toBeUndefined();
    expect(f.findTensor("blk.0.ffn_gate_inp.weight")).toBeUndefined();
    expect(f.tensor("blk.0.ffn_up.weight").dims).toEqual([64, 96]);
    expect(f.metadata.has("llama.expert_count")).toBe(false);
    f.close();
  });

  it("embedScale, routerScale and successorPeak shape only their tensors", () => {
    const read = (path: string) => {
      const f = openGguf(path);
      const out = new Map<string, Float32Array>();
      for (const t of f.tensors) {
        const v = new Float32Array(t.elements);
        getScheme(t.scheme.name).decode(f.read(t), v);
        out.set(t.name, v);
      }
      f.close();
      return out;
    };
    const a = join(dir, "plain.gguf");
    const b = join(dir, "shaped.gguf");
    writeRandomMixtralGguf(a, { ...sizes, type: "f32", seed: 5, headScale: 2 });
    writeRandomMixtralGguf(b, {
      ...sizes,
      type: "f32",
      seed: 5,
      headScale: 2,
      embedScale: 3,
      routerScale: 4,
      successorPeak: 10,
    });
    const plain = read(a);
    const shaped = read(b);
    const changed = [...plain.keys()].filter((k) => !plain.get(k)!.every((x, i) => x === shaped.get(k)![i]));
    expect(changed.sort()).toEqual([
      "blk.0.ffn_gate_inp.weight",
      "blk.1.ffn_gate_inp.weight",
      "output.weight",
      "token_embd.weight",
    ]);
    const ratio = (k: string) => {
      const x = plain.get(k)!;
      const y = shaped.get(k)!;
      return x.reduce((s, v, i) => (v === 0 ? s : Math.max(s, Math.abs(y[i]! / v))), 0);
    };
    expect(ratio("token_embd.weight")).toBeCloseTo(3, 5);
    expect(ratio("blk.1.ffn_gate_inp.weight")).toBeCloseTo(4, 5);

    // Each token has one successor: the head row that its embedding direction scores highest, by about
    // successorPeak · headScale (20 here, against N(0, headScale²) for the other rows).
    const h = sizes.hidden;
    const emb = shaped.get("token_embd.weight")!;
    const head = shaped.get("output.weight")!;
    const best = new Set<number>();
    for (let t = 0; t < sizes.vocab; t++) {
      const e = emb.subarray(t * h, (t + 1) * h);
      const norm = Math.sqrt(e.reduce((s, v) => s + v * v, 0));
      const scores = Array.from({ length: sizes.vocab }, (_, r) => {
        let d = 0;
        for (let i = 0; i < h; i++) d += head[r * h + i]! * e[i]!;
        return (d / norm) * Math.sqrt(h);
      });
      const top = scores.indexOf(Math.max(...scores));
      best.add(top);
      expect(scores[top]).toBeGreaterThan((10 * 2) / 2);
    }
    expect(best.size).toBe(sizes.vocab);
  });

  it("refuses sizes the type cannot hold", () => {
    expect(() => writeRandomMixtralGguf(join(dir, "x.gguf"), { ...sizes, type: "q4_k" })).toThrow(
      /hidden 64 is not a multiple of the q4_k block size 256/,
    );
  });
});
