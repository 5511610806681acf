// `moec import` end to end: a random GGUF → a spec that compiles with its `from_file` quantization →
// the generated model run on the file's own weights (GgufWeights) beside the reference executor.
// Both decode the same packed bytes, so only f32 summation order differs: max |generated − reference| ≤ 1e-4 ×
// max(1, max |reference|). Where the products quantize their activations (q8_0, q4_0), a value summed in another
// order may cross a rounding boundary and land one q8 step away, up to about 1e-2 of the logits on a model this
// small (test/gpu-harness.ts, logitTolerance): 1e-2 there.
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CheckpointError } from "../runtime/checkpoint/errors.ts";
import { openGguf } from "../runtime/checkpoint/gguf-read.ts";
import { gv } from "../runtime/checkpoint/gguf-value.ts";
import { GgufWeights } from "../runtime/checkpoint/gguf-weights.ts";
import { writeGguf } from "../runtime/checkpoint/gguf-write.ts";
import {
  type RandomFamily,
  type RandomMixtralOptions,
  writeRandomMixtralGguf,
} from "../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../runtime/checkpoint/test-support.ts";
import { importModuleSource, ModelInstance } from "../runtime/model.ts";
import { getScheme } from "../runtime/quant/registry.ts";
import { relativeError } from "../test/harness.ts";
import { compileModel } from "./compile.ts";
import { formatNumber, importCheckpoint, importHfConfig, sanitizeIdentifier } from "./import.ts";
import { compileSource } from "./lang/frontend.ts";
import { ReferenceModel } from "./reference/executor.ts";

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

const TOLERANCE = 1e-4;
const tolerance = (type: string) => (getScheme(type).wasm?.q8 === undefined ? TOLERANCE : 1e-2);
const sizes: Omit<RandomMixtralOptions, "type"> = {
  hidden: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 96,
  experts: 4,
  topK: 2,
  vocab: 300,
  context: 128,
  ropeTheta: 1e6,
  eps: 1e-5,
  headScale: 4,
};

/** Imports the file, compiles the spec with `from_file`, and runs 8 tokens on both executors. */
async function importAndRun(path: string) {
  const imported = importCheckpoint(path);
  const spec = compileSource(imported.source, `${path}.moe`);
  const model = spec.models[0]!;
  const quant = spec.quants.find((q) => q.name === "from_file")!;
  // An f32 KV cache: the f16 default's rounding may differ from the reference's by an ulp at a midpoint
  // (compiler/codegen/attend.test.ts bounds that); this test is about the import.
  const compiled = compileModel(spec, model, { quant, kvType: "f32" });
  const weights = GgufWeights.open(path, compiled.manifest);
  try {
    const generated = new ModelInstance(await importModuleSource(compiled.files["model.js"]!), weights);
    const unfused = compiled.stages.find((s) => s.pass === "dce")!.graph;
    const reference = new ReferenceModel(unfused, compiled.manifest, weights);
    let worst = 0;
    let peak = 0;
    for (let pos = 0; pos < 8; pos++) {
      const token = (pos * 37 + 5) % compiled.manifest.vocab;
      const want = reference.step(token, pos);
      const got = generated.step(token, pos);
      expect(got.length).toBe(sizes.vocab);
      worst = Math.max(worst, relativeError(got, want));
      peak = Math.max(peak, ...want.map(Math.abs));
    }
    return { imported, compiled, worst, peak };
  } finally {
    weights.close();
  }
}

describe("import a random GGUF, compile it, run it on the file's weights", () => {
  for (const type of ["f32", "f16", "q8_0", "q4_0"]) {
    it(`${type}: generated matches the reference within ${tolerance(type)}`, async () => {
      const path = join(dir, `mixtral-${type}.gguf`);
      writeRandomMixtralGguf(path, { ...sizes, type, seed: 21 });
      const { imported, compiled, worst, peak } = await importAndRun(path);
      expect(imported.shape).toMatchObject({
        vocab: 300,
        hidden: 64,
        layers: 2,
        heads: 4,
        kvHeads: 2,
        headDim: 16,
        ffn: 96,
        experts: 4,
        topK: 2,
        context: 128,
        ropeTheta: 1e6,
        eps: 1e-5,
        tied: false,
      });
      expect(imported.source).toContain("rope_theta = 1e6, eps = 1e-5");
      const scheme = (key: string) => compiled.manifest.weights.find((w) => w.key === key)!.scheme;
      expect(scheme("layer.w_gate")).toBe(type);
      expect(scheme("layer.router")).toBe("f32");
      expect(scheme("layer.attn_norm")).toBe("f32");
      expect(peak).toBeGreaterThan(0);
      expect(worst).toBeLessThanOrEqual(tolerance(type));
    });
  }

  it("per-expert layout, tied head, and a dense model import and run too", async () => {
    const split = join(dir, "split.gguf");
    writeRandomMixtralGguf(split, { ...sizes, type: "q8_0", seed: 4, layout: "per-expert", tiedHead: true });
    const a = await importAndRun(split);
    expect(a.imported.shape.tied).toBe(true);
    expect(a.imported.source).toContain("return linear(rms_norm(x, out_norm, eps), tok_embed)");
    expect(a.imported.source).not.toContain("lm_head");
    expect(a.worst).toBeLessThanOrEqual(tolerance("q8_0"));

    const dense = join(dir, "dense.gguf");
    writeRandomMixtralGguf(dense, { ...sizes, experts: 0, topK: 0, type: "f16", seed: 6 });
    const b = await importAndRun(dense);
    expect(b.imported.shape.experts).toBe(0);
    expect(b.imported.source).toContain('"blk.{i}.ffn_gate.weight"');
    expect(b.imported.source).not.toContain("moe(");
    expect(b.worst).toBeLessThanOrEqual(TOLERANCE);
  });
});

describe("the MoE families after Mixtral: import a random GGUF of each, compile it, run it", () => {
  const cases: [RandomFamily, Partial<RandomMixtralOptions>, string[]][] = [
    ["qwen3moe", { headDim: 32 }, ["heads: heads)", '"blk.{i}.attn_q_norm.weight"', "style: half"]],
    [
      "qwen2moe",
      { sharedFfn: 64 },
      ["bias: layer[i].bq", "normalize: false", "sigmoid_gate(shared, by: h, weight: layer[i].sh_gate_in)"],
    ],
    ["olmoe", { kvHeads: 4 }, ["layer[i].q_norm, eps)", "[heads * head_dim]", "normalize: false"]],
    [
      "granitemoe",
      { multipliers: { embedding: 12, residual: 0.22, attention: 0.015625, logits: 6 }, tiedHead: true },
      [
        "* embedding_multiplier",
        "scale: attention_multiplier",
        "* residual_multiplier",
        "* (1 / logits_scaling)",
      ],
    ],
  ];
  for (const [family, extra, wants] of cases) {
    it(`${family}: its spec from the metadata; generated matches the reference within ${TOLERANCE}`, async () => {
      const path = join(dir, `${family}.gguf`);
      writeRandomMixtralGguf(path, { ...sizes, ...extra, family, type: "q8_0", seed: 9 });
      const { imported, worst } = await importAndRun(path);
      expect(imported.shape.family).toBe(family);
      for (const w of wants) expect(imported.source).toContain(w);
      expect(worst).toBeLessThanOrEqual(TOLERANCE);
    });
  }
});

function rewrite(from: string, to: string, edit: (md: Map<string, unknown>) => void, drop?: string) {
  const f = openGguf(from);
  const md = new Map(f.metadata) as Map<string, unknown>;
  edit(md);
  writeGguf(to, {
    metadata: md as never,
    tensors: f.tensors
      .filter((t) => t.name !== drop)
      .map((t) => ({ name: t.name, dims: t.dims, type: t.type, data: f.read(t) })),
  });
  f.close();
}

function importError(path: string): CheckpointError {
  try {
    importCheckpoint(path);
  } catch (e) {
    if (e instanceof CheckpointError) {
      expect(e.message).not.toContain("\n");
      return e;
    }
    throw e;
  }
  throw new Error("expected a CheckpointError");
}

describe("import from GGUF metadata", () => {
  const base = join(dir, "base.gguf");
  writeRandomMixtralGguf(base, { ...sizes, type: "q8_0", seed: 1 });

  it("a hostile general.name becomes an identifier and an escaped comment", () => {
    const path = join(dir, "hostile.gguf");
    const name = 'x"\n} model evil { param a = 1 }\u2028// */ \u0000 Mixtral-8x7B v0.1';
    rewrite(base, path, (md) => md.set("general.name", gv.str(name)));
    const { source, shape } = importCheckpoint(path);
    expect(shape.name).toBe("x_model_evil_param_a_1_mixtral_8x7b_v0_1");
    const comment = source.split("\n")[0]!;
    expect(comment).toContain(String.raw`general.name "x\"\\n} model evil`);
    expect(source.split("\n").filter((l) => l.includes("evil"))).toHaveLength(3);
    expect(source).not.toContain("\u2028");
    expect(source).not.toContain("\u0000");
    expect(compileSource(source, "h.moe").models.map((m) => m.name)).toEqual([shape.name]);
  });

  it("names a missing key, a wrong architecture, a missing or misshapen tensor", () => {
    const noHeads = join(dir, "no-heads.gguf");
    rewrite(base, noHeads, (md) => md.delete("llama.attention.head_count"));
    expect(importError(noHeads).message).toMatch(/key llama\.attention\.head_count: missing/);

    const gpt2 = join(dir, "gpt2.gguf");
    rewrite(base, gpt2, (md) => md.set("general.architecture", gv.str("gpt2")));
    expect(importError(gpt2).message).toMatch(
      /key general\.architecture: architecture "gpt2" is not supported \(moec reads llama, qwen3moe, qwen2moe, olmoe, granitemoe/,
    );

    const noWo = join(dir, "no-wo.gguf");
    rewrite(base, noWo, () => {}, "blk.1.attn_output.weight");
    expect(importError(noWo).what).toBe("blk.1.attn_output.weight");

    const wrongFfn = join(dir, "wrong-ffn.gguf");
    rewrite(base, wrongFfn, (md) => md.set("llama.feed_forward_length", gv.u32(128)));
    const e = importError(wrongFfn);
    expect(e.what).toBe("blk.0.ffn_gate_exps.weight");
    expect(e.problem).toMatch(/dims are \[64, 96, 4\] but `layer\.w_gate` \(layer 0\) needs \[64, 128, 4\]/);
  });

  it("types that differ between layers get a rule naming the layers of each type but the most common", () => {
    const f = openGguf(base);
    const path = join(dir, "mixed.gguf");
    const f16 = join(dir, "f16.gguf");
    writeRandomMixtralGguf(f16, { ...sizes, type: "f16", seed: 1 });
    const g = openGguf(f16);
    writeGguf(path, {
      metadata: f.metadata,
      tensors: f.tensors.map((t) => {
        const mixed = t.name === "blk.1.attn_v.weight" || t.name === "blk.0.ffn_down_exps.weight";
        const src = mixed ? g.tensor(t.name) : t;
        return { name: t.name, dims: src.dims, type: src.type, data: (src === t ? f : g).read(src) };
      }),
    });
    f.close();
    g.close();
    const imported = importCheckpoint(path);
    expect(imported.mixedLayers).toEqual(["layer.wv", "layer.w_down"]);
    expect(imported.source).toMatch(/layer\[1\]\.wv\s+: f16\n\s+layer\[\*\]\.wv\s+: q8_0/);
    // The block compiles, and the manifest reads each layer's type as the file has it.
    const spec = compileSource(imported.source, "mixed.moe");
    const compiled = compileModel(spec, spec.models[0]!, { quant: spec.quants[0]! });
    const w = (key: string) => compiled.manifest.weights.find((x) => x.key === key)!;
    expect(w("layer.wv").schemes).toEqual(["q8_0", "f16"]);
    expect(w("layer.w_down").schemes).toEqual(["f16", "q8_0"]);
  });
});

describe("import from a Hugging Face config.json", () => {
  const mixtral = {
    architectures: ["MixtralForCausalLM"],
    _name_or_path: "mistralai/Mixtral-8x7B-v0.1",
    hidden_size: 4096,
    intermediate_size: 14336,
    max_position_embeddings: 32768,
    model_type: "mixtral",
    num_attention_heads: 32,
    num_experts_per_tok: 2,
    num_hidden_layers: 32,
    num_key_value_heads: 8,
    num_local_experts: 8,
    rms_norm_eps: 1e-5,
    rope_theta: 1e6,
    sliding_window: null,
    tie_word_embeddings: false,
    torch_dtype: "bfloat16",
    vocab_size: 32000,
  };

  it("Mixtral: Hugging Face names, half-split RoPE, bf16, compiles", () => {
    const { source, shape } = importHfConfig(JSON.stringify(mixtral), "/x/config.json");
    expect(shape).toMatchObject({ name: "mixtral_8x7b_v0_1", experts: 8, topK: 2, rope: "half" });
    expect(source).toContain('"model.layers.{i}.self_attn.q_proj.weight"');
    expect(source).toContain('"model.layers.{i}.block_sparse_moe.gate.weight"');
    expect(source).toContain('"model.layers.{i}.block_sparse_moe.experts.w1.weight"');
    expect(source).toContain("theta: rope_theta, style: half");
    expect(source).toMatch(/layer\[\*\]\.w_down +: bf16/);
    const spec = compileSource(source, "c.moe");
    const m = spec.models[0]!;
    expect(m.weights.get("layer.w_gate")!.shape).toEqual([8, 14336, 4096]);
    expect(m.weights.get("lm_head")!.tensor).toBe("lm_head.weight");
    expect(spec.quants[0]!.schemeFor("layer.attn_norm", 0)).toBe("bf16");
  });

  it("Mistral 7B: dense, sliding window, mlp names", () => {
    const cfg = {
      ...mixtral,
      model_type: "mistral",
      _name_or_path: "",
      num_local_experts: undefined,
      num_experts_per_tok: undefined,
      sliding_window: 4096,
      rope_theta: 10000,
      torch_dtype: "float16",
    };
    const { source, shape } = importHfConfig(JSON.stringify(cfg), "/models/Mistral-7B/config.json");
    expect(shape).toMatchObject({ name: "mistral_7b", experts: 0, window: 4096 });
    expect(source).toContain('"model.layers.{i}.mlp.down_proj.weight"');
    expect(source).toContain("kv_heads: kv_heads, window: window)");
    expect(source).toContain("rope_theta = 10000");
    compileSource(source, "c.moe");
  });

  const qwen3 = {
    architectures: ["Qwen3MoeForCausalLM"],
    model_type: "qwen3_moe",
    hidden_size: 2048,
    head_dim: 128,
    moe_intermediate_size: 768,
    intermediate_size: 6144,
    max_position_embeddings: 40960,
    num_attention_heads: 32,
    num_key_value_heads: 4,
    num_experts: 128,
    num_experts_per_tok: 8,
    norm_topk_prob: true,
    num_hidden_layers: 48,
    decoder_sparse_step: 1,
    mlp_only_layers: [],
    rms_norm_eps: 1e-6,
    rope_theta: 1e6,
    tie_word_embeddings: false,
    torch_dtype: "bfloat16",
    vocab_size: 151936,
  };

  it("Qwen3-MoE, Qwen2-MoE, OLMoE and Granite MoE: their Hugging Face names and ops", () => {
    const q3 = importHfConfig(JSON.stringify(qwen3), "/m/Qwen3-30B-A3B/config.json");
    expect(q3.shape).toMatchObject({ family: "qwen3moe", qkNorm: "head", normalize: true, ffn: 768 });
    expect(q3.source).toContain('"model.layers.{i}.mlp.experts.gate_proj.weight"');
    expect(q3.source).toContain('"model.layers.{i}.self_attn.q_norm.weight"');
    expect(compileSource(q3.source, "q3.moe").models[0]!.weights.get("layer.q_norm")!.shape).toEqual([128]);

    const { model_type: _, ...byClass } = { ...qwen3, architectures: ["Qwen2MoeForCausalLM"] };
    const q2 = importHfConfig(
      JSON.stringify({
        ...byClass,
        head_dim: undefined,
        num_attention_heads: 16,
        num_key_value_heads: 16,
        moe_intermediate_size: 1408,
        shared_expert_intermediate_size: 5632,
        num_experts: 60,
        num_experts_per_tok: 4,
        norm_topk_prob: false,
        num_hidden_layers: 24,
      }),
      "/m/Qwen1.5-MoE-A2.7B/config.json",
    );
    expect(q2.shape).toMatchObject({ family: "qwen2moe", qkvBias: true, sharedFfn: 5632, normalize: false });
    expect(q2.source).toContain('"model.layers.{i}.mlp.shared_expert_gate.weight"');
    expect(q2.source).toContain('"model.layers.{i}.self_attn.k_proj.bias"');
    compileSource(q2.source, "q2.moe");

    const olmoe = importHfConfig(
      JSON.stringify({
        architectures: ["OlmoeForCausalLM"],
        model_type: "olmoe",
        hidden_size: 2048,
        intermediate_size: 1024,
        num_attention_heads: 16,
        num_key_value_heads: 16,
        num_experts: 64,
        num_experts_per_tok: 8,
        num_hidden_layers: 16,
        vocab_size: 50304,
        clip_qkv: null,
      }),
      "/m/OLMoE-1B-7B/config.json",
    );
    expect(olmoe.shape).toMatchObject({ family: "olmoe", qkNorm: "full", normalize: false, eps: 1e-5 });
    compileSource(olmoe.source, "o.moe");

    // Granite-3.0-3B-A800M's config.json (the keys moec reads).
    const granite = importHfConfig(
      JSON.stringify({
        architectures: ["GraniteMoeForCausalLM"],
        model_type: "granitemoe",
        hidden_size: 1536,
        intermediate_size: 512,
        num_attention_heads: 24,
        num_key_value_heads: 8,
        num_hidden_layers: 32,
        num_local_experts: 40,
        num_experts_per_tok: 8,
        vocab_size: 49155,
        max_position_embeddings: 4096,
        rope_theta: 10000,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
        embedding_multiplier: 12,
        residual_multiplier: 0.22,
        attention_multiplier: 0.015625,
        logits_scaling: 6,
        torch_dtype: "bfloat16",
      }),
      "/m/granite-3.0-3b-a800m/config.json",
    );
    expect(granite.shape).toMatchObject({
      family: "granitemoe",
      experts: 40,
      ffn: 512,
      normalize: true,
      tied: true,
      multipliers: { embedding: 12, residual: 0.22, attention: 0.015625, logits: 6 },
    });
    // Gate and up are the two halves of rows of the fused input_linear (gate first, as llama.cpp splits it).
    expect(granite.source).toContain('"model.layers.{i}.block_sparse_moe.input_linear.weight[0/2]"');
    expect(granite.source).toContain('"model.layers.{i}.block_sparse_moe.input_linear.weight[1/2]"');
    expect(granite.source).toContain("scale: attention_multiplier");
    compileSource(granite.source, "g.moe");
    // transformers' default attention multiplier is 1 (not 1/sqrt(head_dim)); the other defaults are no-ops.
    const plain = { ...mixtral, model_type: "granitemoe", embedding_multiplier: 1 };
    expect(importHfConfig(JSON.stringify(plain), "g/config.json").shape.multipliers).toEqual({
      attention: 1,
    });
    expect(() =>
      importHfConfig(
        JSON.stringify({ ...mixtral, model_type: "granitemoe", shared_intermediate_size: 1024 }),
        "g/config.json",
      ),
    ).toThrow(/key shared_intermediate_size: a shared expert/);
    expect(() => importHfConfig(JSON.stringify({ ...qwen3, mlp_only_layers: [0] }), "q/config.json")).toThrow(
      /key mlp_only_layers: dense layers/,
    );
  });

  it("bad configs name the key", () => {
    const bad = (cfg: unknown, re: RegExp) => {
      expect(() => importHfConfig(typeof cfg === "string" ? cfg : JSON.stringify(cfg), "c.json")).toThrow(re);
    };
    bad("{", /c\.json: not valid JSON/);
    bad([1], /one JSON object/);
    bad({ ...mixtral, hidden_size: "4096" }, /key hidden_size: is "4096", expected a whole number/);
    bad({ ...mixtral, num_hidden_layers: undefined }, /key num_hidden_layers: missing/);
    bad(
      { ...mixtral, model_type: "gpt2" },
      /key model_type: "gpt2" is not supported \(moec import reads mixtral, mistral, llama, qwen3_moe, qwen2_moe, olmoe, granitemoe configs\)/,
    );
    bad({ ...mixtral, num_key_value_heads: 7 }, /key num_key_value_heads: 7 does not divide/);
    bad({ ...mixtral, torch_dtype: "int8" }, /key torch_dtype: "int8" is not one of/);
    bad(`{"__proto__": {"hidden_size": 1}, "model_type": "mixtral"}`, /key hidden_size: missing/);
  });
});

describe("helpers", () => {
  it("sanitizeIdentifier", () => {
    expect(sanitizeIdentifier("Mixtral 8x7B Instruct v0.1")).toBe("mixtral_8x7b_instruct_v0_1");
    expect(sanitizeIdentifier("8x7b")).toBe("m_8x7b");
    expect(sanitizeIdentifier("model")).toBe("model_model");
    expect(sanitizeIdentifier("ünïcode ✓")).toBe("n_code");
    expect(sanitizeIdentifier("✓✓")).toBe("imported");
  });

  it("formatNumber", () => {
    expect(formatNumber(Math.fround(1e-5), true)).toBe("1e-5");
    expect(formatNumber(Math.fround(1e6), true)).toBe("1e6");
    expect(formatNumber(10000)).toBe("10000");
    expect(formatNumber(0.5)).toBe("0.5");
    expect(formatNumber(Math.fround(0.1), true)).toBe("0.1");
    expect(() => formatNumber(Number.NaN)).toThrow();
  });
});
