// `moec import`: a .moe spec from a checkpoint, so a person who only has a checkpoint can start from a
// spec. From a GGUF file (architectures llama: Llama, Mistral, Mixtral; qwen3moe, qwen2moe, olmoe,
// granitemoe) the hyperparameters come from its metadata, the vocabulary size from `token_embd.weight`,
// and a `quantization from_file` block gives each weight the type it has in the file; from a Hugging
// Face `config.json` (Mixtral, Mistral, Llama, Qwen3-MoE, Qwen2-MoE, OLMoE, Granite MoE) the spec names
// the Hugging Face tensors and uses the half-split RoPE they need.
//
// Nothing from the checkpoint reaches the spec as raw text: the model name is reduced to
// [A-Za-z_][A-Za-z0-9_]*, numbers are checked and printed by us, tensor names come from fixed
// templates, and the one comment that quotes the file is JSON-escaped with control characters escaped.

import { readFileSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { writeFileAtomic } from "../runtime/atomic.ts";
import { CheckpointError, printableName } from "../runtime/checkpoint/errors.ts";
import { type GgufFile, openGguf } from "../runtime/checkpoint/gguf-read.ts";
import { plainValue } from "../runtime/checkpoint/gguf-value.ts";
import { resolveGgufWeights } from "../runtime/checkpoint/gguf-weights.ts";
import { weightEntries } from "./compile.ts";
import { layerRanges } from "./ir/print.ts";
import { compileSource } from "./lang/frontend.ts";
import { KEYWORDS } from "./lang/lexer.ts";

/** The architectures moec imports, by llama.cpp's `general.architecture` name. */
export const FAMILIES = ["llama", "qwen3moe", "qwen2moe", "olmoe", "granitemoe"] as const;
export type Family = (typeof FAMILIES)[number];

/** What a spec needs to know about a llama-style model and the MoE families built on it. */
export interface ModelShape {
  name: string;
  family: Family;
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  /** 0 for a dense model. */
  experts: number;
  topK: number;
  context: number;
  ropeTheta: number;
  eps: number;
  /** Sliding-window attention in tokens (Mistral 7B v0.1), if any. */
  window?: number;
  /** No separate output head: logits use `tok_embed`. */
  tied: boolean;
  rope: "interleaved" | "half";
  /** Renormalize the top-k router weights (Mixtral, Qwen3, Granite); Qwen2-MoE and OLMoE do not. */
  normalize: boolean;
  /** An RMS norm of q and k before RoPE: per head (Qwen3) or over the whole projection (OLMoE). */
  qkNorm?: "head" | "full";
  /** Biases on q, k and v (Qwen2). */
  qkvBias?: boolean;
  /** A shared expert of this width beside the routed ones, scaled by a sigmoid gate (Qwen2-MoE). */
  sharedFfn?: number;
  /** Granite's multipliers: embeddings, each residual branch, attention scores (in place of
   * 1/sqrt(head_dim)), and the logits' divisor. */
  multipliers?: { embedding?: number; residual?: number; attention?: number; logits?: number };
}

/** Checkpoint tensor names of each weight; `{i}` is the layer. */
export interface TensorNames {
  tok_embed: string;
  attn_norm: string;
  wq: string;
  wk: string;
  wv: string;
  wo: string;
  ffn_norm: string;
  router: string;
  w_gate: string;
  w_up: string;
  w_down: string;
  out_norm: string;
  lm_head: string;
  q_norm: string;
  k_norm: string;
  bq: string;
  bk: string;
  bv: string;
  sh_gate_in: string;
  sh_gate: string;
  sh_up: string;
  sh_down: string;
}

export const GGUF_NAMES = (moe: boolean): TensorNames => ({
  tok_embed: "token_embd.weight",
  attn_norm: "blk.{i}.attn_norm.weight",
  wq: "blk.{i}.attn_q.weight",
  wk: "blk.{i}.attn_k.weight",
  wv: "blk.{i}.attn_v.weight",
  wo: "blk.{i}.attn_output.weight",
  ffn_norm: "blk.{i}.ffn_norm.weight",
  router: "blk.{i}.ffn_gate_inp.weight",
  w_gate: moe ? "blk.{i}.ffn_gate_exps.weight" : "blk.{i}.ffn_gate.weight",
  w_up: moe ? "blk.{i}.ffn_up_exps.weight" : "blk.{i}.ffn_up.weight",
  w_down: moe ? "blk.{i}.ffn_down_exps.weight" : "blk.{i}.ffn_down.weight",
  out_norm: "output_norm.weight",
  lm_head: "output.weight",
  q_norm: "blk.{i}.attn_q_norm.weight",
  k_norm: "blk.{i}.attn_k_norm.weight",
  bq: "blk.{i}.attn_q.bias",
  bk: "blk.{i}.attn_k.bias",
  bv: "blk.{i}.attn_v.bias",
  sh_gate_in: "blk.{i}.ffn_gate_inp_shexp.weight",
  sh_gate: "blk.{i}.ffn_gate_shexp.weight",
  sh_up: "blk.{i}.ffn_up_shexp.weight",
  sh_down: "blk.{i}.ffn_down_shexp.weight",
});

/**
 * Hugging Face names. The language has no expert placeholder, so an expert weight names the stacked
 * tensor `….experts.w1.weight`; Hugging Face stores `….experts.E.w1.weight` per expert, and a loader
 * gathers experts 0…E-1 by inserting the index before `.w1` (runtime/checkpoint/gguf-weights.ts,
 * perExpertTensorNames). w1 is the gate, w3 the up and w2 the down projection.
 */
export const HF_NAMES = (moe: boolean, family: Family = "llama"): TensorNames => ({
  ...(family === "llama"
    ? HF_MIXTRAL_NAMES(moe)
    : family === "granitemoe"
      ? HF_GRANITE_NAMES
      : HF_QWEN_NAMES),
  tok_embed: "model.embed_tokens.weight",
  attn_norm: "model.layers.{i}.input_layernorm.weight",
  wq: "model.layers.{i}.self_attn.q_proj.weight",
  wk: "model.layers.{i}.self_attn.k_proj.weight",
  wv: "model.layers.{i}.self_attn.v_proj.weight",
  wo: "model.layers.{i}.self_attn.o_proj.weight",
  ffn_norm: "model.layers.{i}.post_attention_layernorm.weight",
  out_norm: "model.norm.weight",
  lm_head: "lm_head.weight",
  q_norm: "model.layers.{i}.self_attn.q_norm.weight",
  k_norm: "model.layers.{i}.self_attn.k_norm.weight",
  bq: "model.layers.{i}.self_attn.q_proj.bias",
  bk: "model.layers.{i}.self_attn.k_proj.bias",
  bv: "model.layers.{i}.self_attn.v_proj.bias",
  sh_gate_in: "model.layers.{i}.mlp.shared_expert_gate.weight",
  sh_gate: "model.layers.{i}.mlp.shared_expert.gate_proj.weight",
  sh_up: "model.layers.{i}.mlp.shared_expert.up_proj.weight",
  sh_down: "model.layers.{i}.mlp.shared_expert.down_proj.weight",
});

/** Mixtral's experts (w1 gate, w3 up, w2 down) under block_sparse_moe; a dense model's mlp. */
const HF_MIXTRAL_NAMES = (moe: boolean) => ({
  router: "model.layers.{i}.block_sparse_moe.gate.weight",
  w_gate: moe
    ? "model.layers.{i}.block_sparse_moe.experts.w1.weight"
    : "model.layers.{i}.mlp.gate_proj.weight",
  w_up: moe ? "model.layers.{i}.block_sparse_moe.experts.w3.weight" : "model.layers.{i}.mlp.up_proj.weight",
  w_down: moe
    ? "model.layers.{i}.block_sparse_moe.experts.w2.weight"
    : "model.layers.{i}.mlp.down_proj.weight",
});

/** Qwen2-MoE, Qwen3-MoE and OLMoE: the router and experts under mlp, each expert gate_proj/up_proj/down_proj. */
const HF_QWEN_NAMES = {
  router: "model.layers.{i}.mlp.gate.weight",
  w_gate: "model.layers.{i}.mlp.experts.gate_proj.weight",
  w_up: "model.layers.{i}.mlp.experts.up_proj.weight",
  w_down: "model.layers.{i}.mlp.experts.down_proj.weight",
};

/**
 * Granite MoE: the router is a Linear inside `router.layer`, and each layer's experts are two 3-D tensors,
 * `input_linear` [experts, 2·ffn, hidden] (gate rows, then up rows: llama.cpp's convert_hf_to_gguf.py
 * splits it so) and `output_linear` [experts, hidden, ffn]. `[k/n]` names the k-th of n blocks of rows of
 * each expert's matrix, which the safetensors loader reads without the rest (safetensors-weights.ts).
 */
const HF_GRANITE_NAMES = {
  router: "model.layers.{i}.block_sparse_moe.router.layer.weight",
  w_gate: "model.layers.{i}.block_sparse_moe.input_linear.weight[0/2]",
  w_up: "model.layers.{i}.block_sparse_moe.input_linear.weight[1/2]",
  w_down: "model.layers.{i}.block_sparse_moe.output_linear.weight",
};

/** A model name from free text: lower case, runs of other characters → `_`, never a keyword. */
export function sanitizeIdentifier(text: string, fallback = "imported"): string {
  let s = text
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, "_")
    .replace(/_+/g, "_")
    .replace(/^_+|_+$/g, "")
    .slice(0, 64)
    .replace(/_+$/, "");
  if (s === "") s = fallback;
  if (/^[0-9]/.test(s)) s = `m_${s}`;
  if (KEYWORDS.includes(s)) s = `${s}_model`;
  return s;
}

/** A number as the .moe lexer reads it, in its shortest form ("1e-5", "1e6", "10000", "0.5"). */
export function formatNumber(x: number, f32 = false): string {
  if (!Number.isFinite(x) || x < 0) throw new RangeError(`cannot write ${x} in a spec`);
  let v = x;
  if (f32) {
    // The shortest decimal that reads back as the same f32.
    for (let p = 1; p <= 17; p++) {
      const c = Number(x.toPrecision(p));
      if (Math.fround(c) === Math.fround(x)) {
        v = c;
        break;
      }
    }
  }
  const plain = String(v);
  const exp = v.toExponential().replace("e+", "e");
  return exp.length + 2 < plain.length ? exp : plain;
}

/** A comment line quoting untrusted text: JSON-escaped, control and line-separator characters escaped. */
function quoted(text: string): string {
  return JSON.stringify(printableName(text, 200));
}

export interface QuantRule {
  /** A pattern of the quantization block: `tok_embed`, `layer[*].wq`, `layer[3].wv`. */
  pattern: string;
  scheme: string;
}

export interface RenderOptions {
  /** Comment lines put first (without `// `). */
  header: string[];
  /** Rules of a `quantization from_file` block, if any. */
  quant?: QuantRule[];
  /** Comment lines put inside the quantization block, before the rules. */
  quantNotes?: string[];
}

/** The .moe source of a llama-style model (Mixtral when experts > 0, else dense Mistral/Llama) or of one
 * of the MoE families built on it (its q/k norms, biases, shared expert and multipliers). */
export function renderSpec(s: ModelShape, names: TensorNames, opts: RenderOptions): string {
  const moe = s.experts > 0;
  const num = (x: number) => formatNumber(x);
  const m = s.multipliers ?? {};
  const lines: string[] = opts.header.map((h) => `// ${h}`);
  lines.push("");
  lines.push(`model ${s.name} {`);
  lines.push(
    `  param vocab = ${s.vocab}, hidden = ${s.hidden}, layers = ${s.layers}, heads = ${s.heads}, kv_heads = ${s.kvHeads}`,
  );
  const headDim = s.hidden === s.heads * s.headDim ? "hidden / heads" : String(s.headDim);
  lines.push(
    `  param head_dim = ${headDim}, ffn = ${s.ffn}${s.sharedFfn ? `, shared_ffn = ${s.sharedFfn}` : ""}${moe ? `, experts = ${s.experts}, top_k = ${s.topK}` : ""}`,
  );
  lines.push(
    `  param context = ${s.context}${s.window !== undefined ? `, window = ${s.window}` : ""}, rope_theta = ${num(s.ropeTheta)}, eps = ${num(s.eps)}`,
  );
  const multiplierParams = (
    [
      ["embedding_multiplier", m.embedding],
      ["residual_multiplier", m.residual],
      ["attention_multiplier", m.attention],
      ["logits_scaling", m.logits],
    ] as const
  ).filter(([, v]) => v !== undefined);
  if (multiplierParams.length)
    lines.push(`  param ${multiplierParams.map(([k, v]) => `${k} = ${num(v!)}`).join(", ")}`);
  lines.push("");
  const w = (indent: string, name: string, shape: string, tensor: string) =>
    `${indent}${`${name.padEnd(9)} : ${shape}`.padEnd(48 - indent.length)} <- ${JSON.stringify(tensor)}`;
  lines.push("  weights {");
  lines.push(w("    ", "tok_embed", "[vocab, hidden]", names.tok_embed));
  lines.push("    layer[i < layers] {");
  const l = "      ";
  lines.push(w(l, "attn_norm", "[hidden]", names.attn_norm));
  for (const [p, width, wname] of [
    ["q", "heads * head_dim", "wq"],
    ["k", "kv_heads * head_dim", "wk"],
    ["v", "kv_heads * head_dim", "wv"],
  ] as const) {
    lines.push(w(l, wname, `[${width}, hidden]`, names[wname]));
    if (s.qkvBias) lines.push(w(l, `b${p}`, `[${width}]`, names[`b${p}`]));
  }
  if (s.qkNorm) {
    const head = s.qkNorm === "head";
    lines.push(w(l, "q_norm", head ? "[head_dim]" : "[heads * head_dim]", names.q_norm));
    lines.push(w(l, "k_norm", head ? "[head_dim]" : "[kv_heads * head_dim]", names.k_norm));
  }
  lines.push(w(l, "wo", "[hidden, heads * head_dim]", names.wo));
  lines.push(w(l, "ffn_norm", "[hidden]", names.ffn_norm));
  if (moe) {
    lines.push(w(l, "router", "[experts, hidden]", names.router));
    lines.push(w(l, "w_gate", "[experts, ffn, hidden]", names.w_gate));
    lines.push(w(l, "w_up", "[experts, ffn, hidden]", names.w_up));
    lines.push(w(l, "w_down", "[experts, hidden, ffn]", names.w_down));
  } else {
    lines.push(w(l, "w_gate", "[ffn, hidden]", names.w_gate));
    lines.push(w(l, "w_up", "[ffn, hidden]", names.w_up));
    lines.push(w(l, "w_down", "[hidden, ffn]", names.w_down));
  }
  if (s.sharedFfn) {
    lines.push(w(l, "sh_gate_in", "[hidden]", names.sh_gate_in));
    lines.push(w(l, "sh_gate", "[shared_ffn, hidden]", names.sh_gate));
    lines.push(w(l, "sh_up", "[shared_ffn, hidden]", names.sh_up));
    lines.push(w(l, "sh_down", "[hidden, shared_ffn]", names.sh_down));
  }
  lines.push("    }");
  lines.push(w("    ", "out_norm", "[hidden]", names.out_norm));
  if (!s.tied) lines.push(w("    ", "lm_head", "[vocab, hidden]", names.lm_head));
  lines.push("  }");
  lines.push("");
  const style = s.rope === "half" ? ", style: half" : "";
  const window = s.window !== undefined ? ", window: window" : "";
  const scale = m.attention !== undefined ? ", scale: attention_multiplier" : "";
  const residual = m.residual !== undefined ? " * residual_multiplier" : "";
  const bias = (p: string) => (s.qkvBias ? `, bias: layer[i].b${p}` : "");
  lines.push("  forward(tokens) {");
  lines.push(`    x = embed(tok_embed, tokens)${m.embedding !== undefined ? " * embedding_multiplier" : ""}`);
  lines.push("    for i < layers {");
  lines.push("      a = rms_norm(x, layer[i].attn_norm, eps)");
  if (s.qkNorm) {
    const heads = (h: string) => (s.qkNorm === "head" ? `, heads: ${h}` : "");
    lines.push(
      `      q = rms_norm(linear(a, layer[i].wq${bias("q")}), layer[i].q_norm, eps${heads("heads")})`,
    );
    lines.push(
      `      k = rms_norm(linear(a, layer[i].wk${bias("k")}), layer[i].k_norm, eps${heads("kv_heads")})`,
    );
    lines.push(`      q = rope(q, heads: heads, theta: rope_theta${style})`);
    lines.push(`      k = rope(k, heads: kv_heads, theta: rope_theta${style})`);
  } else {
    lines.push(`      q = rope(linear(a, layer[i].wq${bias("q")}), heads: heads, theta: rope_theta${style})`);
    lines.push(
      `      k = rope(linear(a, layer[i].wk${bias("k")}), heads: kv_heads, theta: rope_theta${style})`,
    );
  }
  lines.push(`      v = linear(a, layer[i].wv${bias("v")})`);
  lines.push(
    `      x = x + linear(attention(q, k, v, heads: heads, kv_heads: kv_heads${window}${scale}), layer[i].wo)${residual}`,
  );
  const expert = "expert: swiglu(layer[i].w_gate, layer[i].w_up, layer[i].w_down))";
  const normalize = s.normalize ? "" : ", normalize: false";
  if (moe && s.sharedFfn) {
    lines.push("      h = rms_norm(x, layer[i].ffn_norm, eps)");
    lines.push(`      routed = moe(h, router: layer[i].router, top_k: top_k${normalize},`);
    lines.push(`                   ${expert}`);
    lines.push("      shared = swiglu(h, layer[i].sh_gate, layer[i].sh_up, layer[i].sh_down)");
    const sum = "routed + sigmoid_gate(shared, by: h, weight: layer[i].sh_gate_in)";
    lines.push(`      x = x + ${residual ? `(${sum})${residual}` : sum}`);
  } else if (moe) {
    lines.push("      h = rms_norm(x, layer[i].ffn_norm, eps)");
    lines.push(`      x = x + moe(h, router: layer[i].router, top_k: top_k${normalize},`);
    lines.push(`                  ${expert}${residual}`);
  } else {
    lines.push(
      `      x = x + swiglu(rms_norm(x, layer[i].ffn_norm, eps), layer[i].w_gate, layer[i].w_up, layer[i].w_down)${residual}`,
    );
  }
  lines.push("    }");
  lines.push(
    `    return linear(rms_norm(x, out_norm, eps), ${s.tied ? "tok_embed" : "lm_head"})${m.logits !== undefined ? " * (1 / logits_scaling)" : ""}`,
  );
  lines.push("  }");
  lines.push("}");
  if (opts.quant) {
    lines.push("");
    lines.push(`quantization from_file for ${s.name} {`);
    for (const n of opts.quantNotes ?? []) lines.push(`  // ${n}`);
    const width = Math.max(...opts.quant.map((r) => r.pattern.length));
    for (const r of opts.quant) lines.push(`  ${r.pattern.padEnd(width)} : ${r.scheme}`);
    lines.push("}");
  }
  lines.push("");
  return lines.join("\n");
}

export interface ImportOptions {
  /** The model's name in the spec (sanitized); default from the checkpoint. */
  name?: string;
}

export interface Imported {
  source: string;
  format: "gguf" | "hf-config";
  shape: ModelShape;
  /** Weights whose type differs between layers: moec compiles one kernel per weight for all layers. */
  mixedLayers: string[];
}

// ---------------------------------------------------------------- GGUF

type MetaKind = "int" | "float" | "string";

function metaReader(file: GgufFile) {
  const fail = (key: string, problem: string): never => {
    throw new CheckpointError({ file: file.path, what: key, whatKind: "key", problem });
  };
  function get(key: string, kind: "string"): string;
  function get(key: string, kind: "int" | "float"): number;
  function get(key: string, kind: "string", optional: true): string | undefined;
  function get(key: string, kind: "int" | "float", optional: true): number | undefined;
  function get(key: string, kind: MetaKind, optional = false): number | string | undefined {
    const v = file.metadata.get(key);
    if (v === undefined) {
      if (optional) return undefined;
      return fail(key, "missing: moec import needs it");
    }
    if (kind === "string") {
      if (v.type !== "string") return fail(key, `is a ${v.type}, expected a string`);
      return v.value;
    }
    if (v.type === "string" || v.type === "bool" || v.type === "array") {
      return fail(key, `is a ${v.type}, expected a number`);
    }
    const n = plainValue(v);
    if (typeof n !== "number" || !Number.isFinite(n)) return fail(key, `${String(n)} is out of range`);
    if (kind === "int" && (!Number.isSafeInteger(n) || n < 0)) {
      return fail(key, `is ${n}, expected a whole number`);
    }
    return n;
  }
  return { get, fail };
}

/** Hyperparameters of a GGUF file of one of the FAMILIES (its `general.architecture`). */
export function ggufShape(file: GgufFile, opts: ImportOptions = {}): ModelShape {
  const { get, fail } = metaReader(file);
  const arch = get("general.architecture", "string");
  if (!(FAMILIES as readonly string[]).includes(arch)) {
    fail(
      "general.architecture",
      `architecture ${JSON.stringify(printableName(arch, 40))} is not supported (moec reads ${FAMILIES.join(", ")}: Llama, Mistral, Mixtral, Qwen3-MoE, Qwen2-MoE, OLMoE, Granite MoE)`,
    );
  }
  const family = arch as Family;
  const k = (key: string) => `${arch}.${key}`;
  const positive = (key: string, kind: "int" | "float" = "int") => {
    const n = get(k(key), kind);
    if (!(n > 0)) fail(k(key), `is ${n}, expected more than 0`);
    return n;
  };
  const hidden = positive("embedding_length");
  const layers = positive("block_count");
  const heads = positive("attention.head_count");
  const kvHeads = get(k("attention.head_count_kv"), "int", true) ?? heads;
  if (kvHeads < 1 || heads % kvHeads !== 0) {
    fail(k("attention.head_count_kv"), `${kvHeads} does not divide the ${heads} query heads`);
  }
  const keyLength = get(k("attention.key_length"), "int", true);
  if (keyLength === undefined && hidden % heads !== 0) {
    fail(k("attention.head_count"), `${heads} heads do not divide embedding_length ${hidden}`);
  }
  const headDim = keyLength ?? hidden / heads;
  if (headDim < 2 || headDim % 2 !== 0) {
    fail(k("attention.key_length"), `head size ${headDim} must be even for RoPE`);
  }
  const experts = get(k("expert_count"), "int", true) ?? 0;
  if (family !== "llama" && !(experts > 0)) fail(k("expert_count"), `missing: a ${arch} model has experts`);
  const topK = experts > 0 ? positive("expert_used_count") : 0;
  if (topK > experts) fail(k("expert_used_count"), `${topK} is more than the ${experts} experts`);
  // The Qwens give the experts' width apart from the (dense) feed_forward_length, as llama.cpp reads it.
  const qwen = family === "qwen3moe" || family === "qwen2moe";
  const ffn = qwen
    ? (get(k("expert_feed_forward_length"), "int", true) ??
      Math.floor(positive("feed_forward_length") / topK))
    : positive("feed_forward_length");
  if (!(ffn > 0)) fail(k("expert_feed_forward_length"), `is ${ffn}, expected more than 0`);
  const context = positive("context_length");
  const ropeTheta = get(k("rope.freq_base"), "float", true) ?? 10000;
  if (!(ropeTheta > 0)) fail(k("rope.freq_base"), `is ${ropeTheta}, expected more than 0`);
  const eps = positive("attention.layer_norm_rms_epsilon", "float");
  const f32 = (x: number) => Number(formatNumber(x, true));

  const embd = file.findTensor("token_embd.weight");
  if (!embd) {
    throw new CheckpointError({
      file: file.path,
      what: "token_embd.weight",
      whatKind: "tensor",
      problem: "missing: the vocabulary size is read from it",
    });
  }
  if (embd.dims.length !== 2 || embd.dims[0] !== hidden) {
    throw new CheckpointError({
      file: file.path,
      what: "token_embd.weight",
      whatKind: "tensor",
      offset: embd.offset,
      problem: `dims are [${embd.dims.join(", ")}], expected [${hidden}, vocab] (embedding_length ${hidden})`,
    });
  }
  const name =
    opts.name ?? get("general.name", "string", true) ?? basename(file.path).replace(/\.gguf$/i, "");
  const shape: ModelShape = {
    name: sanitizeIdentifier(name),
    family,
    vocab: embd.dims[1]!,
    hidden,
    layers,
    heads,
    kvHeads,
    headDim,
    ffn,
    experts,
    topK,
    context,
    ropeTheta: f32(ropeTheta),
    eps: f32(eps),
    tied: file.findTensor("output.weight") === undefined,
    // llama.cpp's rope type: NEOX (halves) for the Qwens and OLMoE, NORM (pairs) for llama and Granite.
    rope: qwen || family === "olmoe" ? "half" : "interleaved",
    normalize: family !== "qwen2moe" && family !== "olmoe",
  };
  if (family === "qwen3moe") shape.qkNorm = "head";
  if (family === "olmoe") shape.qkNorm = "full";
  if (family === "qwen2moe") {
    shape.qkvBias = file.findTensor("blk.0.attn_q.bias") !== undefined;
    shape.sharedFfn = get(k("expert_shared_feed_forward_length"), "int", true) ?? ffn * topK;
  }
  if (family === "granitemoe") {
    // llama.cpp: a scale of 0 (or none) is no scaling; the logits are divided by logit_scale.
    const scale = (key: string) => {
      const v = get(k(key), "float", true);
      return v ? f32(v) : undefined;
    };
    shape.multipliers = {
      embedding: scale("embedding_scale"),
      residual: scale("residual_scale"),
      attention: scale("attention.scale"),
      logits: scale("logit_scale"),
    };
  }
  return shape;
}

/** The pattern of a weight key in a quantization block: `tok_embed`, `layer[*].wq`. */
function patternOf(key: string, layer?: number | string): string {
  const dot = key.indexOf(".");
  if (dot < 0) return key;
  return `${key.slice(0, dot)}[${layer ?? "*"}]${key.slice(dot)}`;
}

/** A spec from an open GGUF file; every tensor is checked to exist with the shape the spec gives it. */
export function importGguf(file: GgufFile, opts: ImportOptions = {}): Imported {
  const shape = ggufShape(file, opts);
  const names = GGUF_NAMES(shape.experts > 0);
  const header = [
    `Imported by \`moec import\` from ${quoted(basename(file.path))}, general.name ${quoted(String(plainValue(file.metadata.get("general.name") ?? { type: "string", value: "" })))}.`,
    `Hyperparameters from the ${shape.family}.* metadata; the vocabulary size from token_embd.weight.`,
  ];
  if (shape.experts > 0) {
    header.push(
      "Experts are named by their merged tensors; a file with one tensor per expert (blk.N.ffn_gate.E.weight) loads too.",
    );
  }
  if (shape.tied) header.push("The file has no output.weight: the output head is tied to tok_embed.");
  const bare = renderSpec(shape, names, { header });
  const model = compileSource(bare, `${file.path}.moe`).models[0]!;

  // Every tensor exists with the spec's shape; its type (per layer) becomes a quantization rule.
  const resolved = resolveGgufWeights(
    file,
    weightEntries(model, () => ({ scheme: "f32" })),
    { checkTypes: false },
  );
  const types = new Map<string, string[]>();
  for (const r of resolved) {
    const t = r.parts[0]!.scheme.name;
    for (const p of r.parts) {
      if (p.scheme.name !== t) {
        throw new CheckpointError({
          file: file.path,
          what: p.name,
          whatKind: "tensor",
          offset: p.offset,
          problem: `type is ${p.scheme.name} but expert 0 of ${r.tensor} is ${t}: one weight has one type`,
        });
      }
    }
    const list = types.get(r.key) ?? [];
    list.push(t);
    types.set(r.key, list);
  }
  const rules: QuantRule[] = [];
  const mixedLayers: string[] = [];
  for (const w of model.weights.values()) {
    const per = types.get(w.key)!;
    if (!w.group) {
      rules.push({ pattern: patternOf(w.key), scheme: per[0]! });
      continue;
    }
    const counts = new Map<string, number>();
    for (const t of per) counts.set(t, (counts.get(t) ?? 0) + 1);
    const common = [...counts].sort((a, b) => b[1] - a[1])[0]![0];
    if (counts.size > 1) {
      mixedLayers.push(w.key);
      // The layers of each other type as one rule: `layer[0-3, 7].w_down : q6_k`.
      for (const t of counts.keys()) {
        if (t === common) continue;
        const layers = per.flatMap((x, l) => (x === t ? [l] : []));
        rules.push({ pattern: patternOf(w.key, layerRanges(layers).replaceAll(",", ", ")), scheme: t });
      }
    }
    rules.push({ pattern: patternOf(w.key), scheme: common });
  }
  const quantNotes = ["Each weight's type in the file, so that compiling with this block reads it as is."];
  if (mixedLayers.length) {
    quantNotes.push(
      `The file's types differ between layers for ${mixedLayers.join(", ")}: a rule names the layers of each type that is not the most common one.`,
    );
  }
  const source = renderSpec(shape, names, { header, quant: rules, quantNotes });
  compileSource(source, `${file.path}.moe`);
  return { source, format: "gguf", shape, mixedLayers };
}

// ---------------------------------------------------------------- Hugging Face config.json

const MAX_CONFIG_BYTES = 1 << 20;

const DTYPES: Record<string, string> = { bfloat16: "bf16", float16: "f16", float32: "f32" };

/** Hugging Face model_type → family, and each family's class in `architectures`. */
const HF_FAMILIES: Record<string, Family> = {
  mixtral: "llama",
  mistral: "llama",
  llama: "llama",
  qwen3_moe: "qwen3moe",
  qwen2_moe: "qwen2moe",
  olmoe: "olmoe",
  granitemoe: "granitemoe",
};
const HF_CLASSES: Record<string, string> = {
  mixtral: "MixtralForCausalLM",
  mistral: "MistralForCausalLM",
  llama: "LlamaForCausalLM",
  qwen3_moe: "Qwen3MoeForCausalLM",
  qwen2_moe: "Qwen2MoeForCausalLM",
  olmoe: "OlmoeForCausalLM",
  granitemoe: "GraniteMoeForCausalLM",
};

/** A spec from a Hugging Face config.json (its text, and the path errors should name). */
export function importHfConfig(text: string, path: string, opts: ImportOptions = {}): Imported {
  const fail = (key: string | undefined, problem: string): never => {
    throw new CheckpointError({ file: path, what: key, whatKind: "key", problem });
  };
  let cfg: unknown;
  try {
    cfg = JSON.parse(text);
  } catch (e) {
    return fail(undefined, `not valid JSON: ${(e as Error).message}`);
  }
  if (cfg === null || typeof cfg !== "object" || Array.isArray(cfg)) {
    return fail(undefined, "a config.json must hold one JSON object");
  }
  const obj = cfg as Record<string, unknown>;
  const has = (k: string) => Object.hasOwn(obj, k) && obj[k] !== null;
  const int = (k: string, dflt?: number): number => {
    if (!has(k)) return dflt ?? fail(k, "missing: moec import needs it");
    const v = obj[k];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      return fail(k, `is ${printableName(JSON.stringify(v), 40)}, expected a whole number`);
    }
    return v;
  };
  const float = (k: string, dflt: number): number => {
    if (!has(k)) return dflt;
    const v = obj[k];
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      return fail(k, `is ${printableName(JSON.stringify(v), 40)}, expected a number more than 0`);
    }
    return v;
  };
  const positive = (k: string, dflt?: number) => {
    const n = int(k, dflt);
    if (n < 1) fail(k, `is ${n}, expected more than 0`);
    return n;
  };
  // The family from model_type, else from the class in `architectures`.
  const arch = Array.isArray(obj.architectures) ? obj.architectures[0] : undefined;
  const typeName = has("model_type")
    ? obj.model_type
    : typeof arch === "string"
      ? Object.entries(HF_CLASSES).find(([, c]) => c === arch)?.[0]
      : undefined;
  const family: Family | undefined = typeName === undefined ? "llama" : HF_FAMILIES[typeName as string];
  if (family === undefined) {
    fail(
      "model_type",
      `${printableName(JSON.stringify(typeName), 40)} is not supported (moec import reads ${Object.keys(HF_FAMILIES).join(", ")} configs)`,
    );
  }
  const qwen = family === "qwen3moe" || family === "qwen2moe";
  const hidden = positive("hidden_size");
  const layers = positive("num_hidden_layers");
  const heads = positive("num_attention_heads");
  const kvHeads = positive("num_key_value_heads", heads);
  if (heads % kvHeads !== 0)
    fail("num_key_value_heads", `${kvHeads} does not divide the ${heads} query heads`);
  if (!has("head_dim") && hidden % heads !== 0) {
    fail("num_attention_heads", `${heads} heads do not divide hidden_size ${hidden}`);
  }
  const headDim = positive("head_dim", hidden / heads);
  if (headDim % 2 !== 0) fail("head_dim", `head size ${headDim} must be even for RoPE`);
  const ffn = positive(qwen ? "moe_intermediate_size" : "intermediate_size");
  const experts =
    family === "llama"
      ? int("num_local_experts", 0)
      : positive(family === "granitemoe" ? "num_local_experts" : "num_experts");
  if (family === "granitemoe" && int("shared_intermediate_size", 0) > 0)
    fail("shared_intermediate_size", "a shared expert beside Granite's experts is not supported");
  if (
    qwen &&
    (int("decoder_sparse_step", 1) !== 1 ||
      (Array.isArray(obj.mlp_only_layers) && obj.mlp_only_layers.length > 0))
  ) {
    fail(
      "mlp_only_layers",
      "dense layers among the MoE layers are not supported: every layer must be an MoE layer",
    );
  }
  if (family === "olmoe" && has("clip_qkv")) fail("clip_qkv", "clipping q, k and v is not supported");
  const normalizeDefault = family !== "qwen2moe" && family !== "olmoe";
  if (has("norm_topk_prob") && typeof obj.norm_topk_prob !== "boolean")
    fail("norm_topk_prob", "expected true or false");
  const normalize = has("norm_topk_prob") ? obj.norm_topk_prob === true : normalizeDefault;
  const topK = experts > 0 ? positive("num_experts_per_tok", 2) : 0;
  if (topK > experts) fail("num_experts_per_tok", `${topK} is more than the ${experts} experts`);
  const vocab = positive("vocab_size");
  const context = positive("max_position_embeddings", 4096);
  const ropeTheta = float("rope_theta", 10000);
  const eps = float("rms_norm_eps", typeName === "mixtral" || family === "olmoe" ? 1e-5 : 1e-6);
  let window: number | undefined;
  if (has("sliding_window")) {
    window = positive("sliding_window");
    if (window >= context) window = undefined;
  }
  if (has("tie_word_embeddings") && typeof obj.tie_word_embeddings !== "boolean") {
    fail("tie_word_embeddings", "expected true or false");
  }
  const tied = obj.tie_word_embeddings === true;
  const dtypeKey = has("torch_dtype") ? "torch_dtype" : has("dtype") ? "dtype" : undefined;
  let scheme = "bf16";
  if (dtypeKey) {
    const d = obj[dtypeKey];
    const s = typeof d === "string" ? DTYPES[d] : undefined;
    if (!s)
      fail(
        dtypeKey,
        `${printableName(JSON.stringify(d), 40)} is not one of ${Object.keys(DTYPES).join(", ")}`,
      );
    scheme = s!;
  }
  const given =
    opts.name ??
    (typeof obj._name_or_path === "string" && obj._name_or_path !== ""
      ? obj._name_or_path.split("/").filter(Boolean).pop()
      : undefined) ??
    basename(dirname(path));
  const shape: ModelShape = {
    name: sanitizeIdentifier(given ?? "", typeof typeName === "string" ? typeName : "model"),
    family: family!,
    vocab,
    hidden,
    layers,
    heads,
    kvHeads,
    headDim,
    ffn,
    experts,
    topK,
    context,
    ropeTheta,
    eps,
    ...(window !== undefined ? { window } : {}),
    tied,
    rope: "half",
    normalize,
    ...(family === "qwen3moe" ? { qkNorm: "head" as const } : {}),
    ...(family === "olmoe" ? { qkNorm: "full" as const } : {}),
    ...(family === "qwen2moe"
      ? { qkvBias: true, sharedFfn: positive("shared_expert_intermediate_size") }
      : {}),
    ...(family === "qwen3moe" && obj.attention_bias === true ? { qkvBias: true } : {}),
    ...(family === "granitemoe" ? { multipliers: graniteMultipliers(float) } : {}),
  };
  const header = [
    `Imported by \`moec import\` from ${quoted(basename(path))}${typeof typeName === "string" ? ` (model_type ${typeName})` : ""}.`,
    "Hugging Face tensor names; RoPE pairs the halves of each head (style: half), as these checkpoints need.",
  ];
  if (experts > 0 && shape.family === "llama") {
    header.push(
      "Hugging Face stores each expert apart (….experts.E.w1.weight); the language has no expert index, so",
      "w_gate/w_up/w_down name ….experts.w1/w3/w2.weight and the loader gathers experts 0…E-1 in order.",
    );
  } else if (shape.family === "granitemoe") {
    header.push(
      "Granite stores each layer's experts fused: input_linear holds gate and up rows, so w_gate/w_up name its",
      "first and second half of rows ([0/2], [1/2]), which the loader reads apart; output_linear is w_down.",
    );
  } else if (experts > 0) {
    header.push(
      "Hugging Face stores each expert apart (….experts.E.gate_proj.weight); the language has no expert index,",
      "so w_gate/w_up/w_down name ….experts.gate_proj/up_proj/down_proj.weight and the loader gathers them.",
    );
  }
  if (tied) header.push("tie_word_embeddings: the output head is tied to tok_embed.");
  const bare = renderSpec(shape, HF_NAMES(experts > 0, shape.family), { header });
  const model = compileSource(bare, `${path}.moe`).models[0]!;
  const rules = [...model.weights.values()].map((w) => ({ pattern: patternOf(w.key), scheme }));
  const source = renderSpec(shape, HF_NAMES(experts > 0, shape.family), {
    header,
    quant: rules,
    quantNotes: [`${dtypeKey ?? "torch_dtype"}: every tensor of the checkpoint is ${scheme}.`],
  });
  compileSource(source, `${path}.moe`);
  return { source, format: "hf-config", shape, mixedLayers: [] };
}

/**
 * Granite's multipliers from config.json (transformers' GraniteMoeConfig defaults them to 1). The
 * attention multiplier replaces 1/sqrt(head_dim), so it is always given; the others only when set.
 */
function graniteMultipliers(float: (k: string, dflt: number) => number): ModelShape["multipliers"] {
  const m: NonNullable<ModelShape["multipliers"]> = { attention: float("attention_multiplier", 1) };
  const embedding = float("embedding_multiplier", 1);
  const residual = float("residual_multiplier", 1);
  const logits = float("logits_scaling", 1);
  if (embedding !== 1) m.embedding = embedding;
  if (residual !== 1) m.residual = residual;
  if (logits !== 1) m.logits = logits;
  return m;
}

// ---------------------------------------------------------------- either

/**
 * A spec from a checkpoint: a GGUF file, a Hugging Face config.json, or a folder holding one.
 * Throws CheckpointError for a file it cannot read or use.
 */
export function importCheckpoint(path: string, opts: ImportOptions = {}): Imported {
  let target = path;
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch (e) {
    throw new CheckpointError({ file: path, problem: `cannot open: ${(e as Error).message}` });
  }
  if (st.isDirectory()) {
    target = join(path, "config.json");
    try {
      st = statSync(target);
    } catch {
      throw new CheckpointError({
        file: path,
        problem: "a folder to import must hold a Hugging Face config.json",
      });
    }
  }
  if (/\.json$/i.test(target)) {
    if (st.size > MAX_CONFIG_BYTES) {
      throw new CheckpointError({
        file: target,
        problem: `is ${st.size} bytes; a config.json is at most 1 MiB`,
      });
    }
    let text: string;
    try {
      text = readFileSync(target, "utf8");
    } catch (e) {
      throw new CheckpointError({ file: target, problem: `cannot read: ${(e as Error).message}` });
    }
    return importHfConfig(text, target, opts);
  }
  // Anything else is a GGUF file, or openGguf says why it is not one.
  const file = openGguf(target);
  try {
    return importGguf(file, opts);
  } finally {
    file.close();
  }
}

/** Imports and writes the spec atomically; returns what was imported. */
export function writeImportedSpec(checkpoint: string, out: string, opts: ImportOptions = {}): Imported {
  const imported = importCheckpoint(checkpoint, opts);
  writeFileAtomic(out, imported.source);
  return imported;
}
