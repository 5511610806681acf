// GgufWeights over files from moec's own random writer: the manifest is checked up front (missing
// tensor, wrong shape, wrong type each name the tensor), and the older one-tensor-per-expert layout
// reads to exactly the bytes of the merged one.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { Manifest, WeightEntry } from "../manifest.ts";
import { CheckpointError } from "./errors.ts";
import { openGguf } from "./gguf-read.ts";
import { GgufWeights, perExpertTensorNames } from "./gguf-weights.ts";
import { writeGguf } from "./gguf-write.ts";
import { type RandomMixtralOptions, writeRandomMixtralGguf } from "./random-gguf.ts";
import { scratchDir } from "./test-support.ts";

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

const sizes: RandomMixtralOptions = {
  hidden: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 96,
  experts: 4,
  topK: 2,
  vocab: 300,
  type: "q8_0",
  seed: 5,
};

/** The manifest weights a Mixtral spec with GGUF names compiles to (what the compiler would emit). */
function mixtralWeights(o: RandomMixtralOptions, scheme: string): Pick<Manifest, "weights"> {
  const { hidden: h, ffn: f, experts: e, vocab: v, layers: n } = o;
  const hd = h / o.heads;
  const one = (key: string, tensor: string, shape: number[], s = scheme): WeightEntry => ({
    key,
    tensor,
    shape,
    layers: 0,
    scheme: shape.length === 1 ? "f32" : s,
  });
  const per = (key: string, tensor: string, shape: number[], s = scheme): WeightEntry => ({
    ...one(`layer.${key}`, `blk.{i}.${tensor}.weight`, shape, s),
    index: "i",
    layers: n,
  });
  return {
    weights: [
      one("tok_embed", "token_embd.weight", [v, h]),
      per("attn_norm", "attn_norm", [h]),
      per("wq", "attn_q", [o.heads * hd, h]),
      per("wk", "attn_k", [o.kvHeads * hd, h]),
      per("wv", "attn_v", [o.kvHeads * hd, h]),
      per("wo", "attn_output", [h, o.heads * hd]),
      per("ffn_norm", "ffn_norm", [h]),
      per("router", "ffn_gate_inp", [e, h], "f32"),
      per("w_gate", "ffn_gate_exps", [e, f, h]),
      per("w_up", "ffn_up_exps", [e, f, h]),
      per("w_down", "ffn_down_exps", [e, h, f]),
      one("out_norm", "output_norm.weight", [h]),
      one("lm_head", "output.weight", [v, h]),
    ],
  };
}

function everyBytes(w: GgufWeights, m: Pick<Manifest, "weights">): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const e of m.weights) {
    for (const l of e.layers === 0 ? [undefined] : [...Array(e.layers).keys()]) {
      out.set(`${e.key}#${l}`, w.bytes(e.key, l));
    }
  }
  return out;
}

function errorOf(f: () => unknown): CheckpointError {
  try {
    f();
  } catch (e) {
    if (e instanceof CheckpointError) {
      expect(e.message).not.toContain("\n");
      expect(e.exitCode).toBe(2);
      return e;
    }
    throw e;
  }
  throw new Error("expected a CheckpointError");
}

describe("perExpertTensorNames", () => {
  it("GGUF and Hugging Face conventions", () => {
    expect(perExpertTensorNames("blk.3.ffn_gate_exps.weight", 2)).toEqual([
      "blk.3.ffn_gate.0.weight",
      "blk.3.ffn_gate.1.weight",
    ]);
    expect(perExpertTensorNames("model.layers.1.block_sparse_moe.experts.w2.weight", 2)).toEqual([
      "model.layers.1.block_sparse_moe.experts.0.w2.weight",
      "model.layers.1.block_sparse_moe.experts.1.w2.weight",
    ]);
    expect(perExpertTensorNames("blk.0.attn_q.weight", 2)).toBeUndefined();
  });
});

describe("GgufWeights", () => {
  const merged = join(dir, "merged.gguf");
  const split = join(dir, "split.gguf");
  writeRandomMixtralGguf(merged, sizes);
  writeRandomMixtralGguf(split, { ...sizes, layout: "per-expert" });
  const manifest = mixtralWeights(sizes, "q8_0");

  it("reads every weight, the tensor's bytes exactly", () => {
    const w = GgufWeights.open(merged, manifest);
    const f = openGguf(merged);
    expect(w.bytes("layer.wq", 1)).toEqual(f.read("blk.1.attn_q.weight"));
    expect(w.bytes("tok_embed")).toEqual(f.read("token_embd.weight"));
    expect(w.bytes("layer.w_down", 0).length).toBe(4 * 64 * (96 / 32) * 34);
    f.close();
    w.close();
  });

  it("the per-expert layout loads to the same bytes as the merged one", () => {
    const a = GgufWeights.open(merged, manifest);
    const b = GgufWeights.open(split, manifest);
    expect(b.resolved.find((r) => r.key === "layer.w_up" && r.layer === 1)!.parts.map((p) => p.name)).toEqual(
      [0, 1, 2, 3].map((e) => `blk.1.ffn_up.${e}.weight`),
    );
    expect(openGguf(split).findTensor("blk.0.ffn_gate_exps.weight")).toBeUndefined();
    const x = everyBytes(a, manifest);
    const y = everyBytes(b, manifest);
    expect([...y.keys()]).toEqual([...x.keys()]);
    const differ = [...x].filter(([k, v]) => Buffer.compare(v, y.get(k)!) !== 0).map(([k]) => k);
    expect(differ).toEqual([]);
    a.close();
    b.close();
  });

  it("a missing tensor is named", () => {
    const f = openGguf(merged);
    const path = join(dir, "missing.gguf");
    writeGguf(path, {
      metadata: f.metadata,
      tensors: f.tensors
        .filter((t) => t.name !== "blk.1.attn_k.weight")
        .map((t) => ({ name: t.name, dims: t.dims, type: t.type, data: f.read(t) })),
    });
    f.close();
    const e = errorOf(() => GgufWeights.open(path, manifest));
    expect(e.what).toBe("blk.1.attn_k.weight");
    expect(e.message).toMatch(
      /^.*missing\.gguf: tensor blk\.1\.attn_k\.weight: missing: .*`layer\.wk` \(layer 1\)/,
    );
  });

  it("a missing merged expert tensor with no per-expert form is named", () => {
    const f = openGguf(merged);
    const path = join(dir, "missing-experts.gguf");
    writeGguf(path, {
      metadata: f.metadata,
      tensors: f.tensors
        .filter((t) => t.name !== "blk.0.ffn_up_exps.weight")
        .map((t) => ({ name: t.name, dims: t.dims, type: t.type, data: f.read(t) })),
    });
    f.close();
    const e = errorOf(() => GgufWeights.open(path, manifest));
    expect(e.what).toBe("blk.0.ffn_up_exps.weight");
    expect(e.problem).toContain("blk.0.ffn_up.0.weight");
  });

  it("a missing expert of the per-expert layout is named", () => {
    const f = openGguf(split);
    const path = join(dir, "missing-expert.gguf");
    writeGguf(path, {
      metadata: f.metadata,
      tensors: f.tensors
        .filter((t) => t.name !== "blk.1.ffn_down.2.weight")
        .map((t) => ({ name: t.name, dims: t.dims, type: t.type, data: f.read(t) })),
    });
    f.close();
    expect(errorOf(() => GgufWeights.open(path, manifest)).what).toBe("blk.1.ffn_down.2.weight");
  });

  it("a wrong shape names the tensor, both dims and its offset", () => {
    const bigger = { ...sizes, ffn: 128 };
    const path = join(dir, "shape.gguf");
    writeRandomMixtralGguf(path, bigger);
    const f = openGguf(path);
    const t = f.tensor("blk.0.ffn_gate_exps.weight");
    f.close();
    const e = errorOf(() => GgufWeights.open(path, manifest));
    expect(e.what).toBe("blk.0.ffn_gate_exps.weight");
    expect(e.offset).toBe(t.offset);
    expect(e.problem).toContain("dims are [64, 128, 4] but `layer.w_gate` (layer 0) needs [64, 96, 4]");
  });

  it("a wrong type names the tensor, expected and found, and its offset", () => {
    const path = join(dir, "type.gguf");
    writeRandomMixtralGguf(path, { ...sizes, type: "f16" });
    const f = openGguf(path);
    const t = f.tensor("token_embd.weight");
    f.close();
    const e = errorOf(() => GgufWeights.open(path, manifest));
    expect(e.what).toBe("token_embd.weight");
    expect(e.offset).toBe(t.offset);
    expect(e.message).toContain(
      `tensor token_embd.weight at byte ${t.offset}: expected type q8_0 for \`tok_embed\`, found f16`,
    );
  });

  it("bytes come from the file at the tensor's offset", () => {
    const w = GgufWeights.open(merged, manifest);
    const before = w.bytes("out_norm");
    expect(before).toEqual(
      new Uint8Array(
        readFileSync(merged).subarray(w.file.tensor("output_norm.weight").offset).subarray(0, before.length),
      ),
    );
    w.close();
  });
});
