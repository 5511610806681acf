// Tiny Hugging Face checkpoints for tests: a Mixtral-shaped config.json, random weights in
// safetensors (one file, or two shards with model.safetensors.index.json) under the Hugging Face
// names and half-split RoPE layout, and a tokenizer.json (BPE with byte fallback, converted from
// moec's random SentencePiece vocabulary the way transformers converts a SentencePiece model).
// `writeGgufTwin` writes the same numbers as an f32 GGUF file, q/k rows permuted to GGUF's
// interleaved RoPE as llama.cpp's convert script does, so both must give the same logits.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeGguf } from "../runtime/checkpoint/gguf-write.ts";
import {
  mixtralMetadata,
  type RandomMixtralOptions,
  randomVocabulary,
  type Vocabulary,
} from "../runtime/checkpoint/random-gguf.ts";
import { toF32 } from "../runtime/checkpoint/safetensors.ts";
import { permuteRopeRows } from "../runtime/checkpoint/safetensors-weights.ts";
import {
  encodeSafetensorsData,
  type SafetensorsTensorInput,
  writeSafetensors,
} from "../runtime/checkpoint/safetensors-write.ts";
import { getScheme } from "../runtime/quant/registry.ts";
import { gaussian, rng } from "../runtime/weights.ts";

export interface TinyHfOptions {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  experts: number;
  topK: number;
  vocab: number;
  dtype: "F32" | "F16" | "BF16";
  shards?: 1 | 2;
  seed?: number;
  headScale?: number;
  ropeTheta?: number;
  eps?: number;
  /** A chat_template for tokenizer_config.json. */
  chatTemplate?: string;
}

export interface TinyHf {
  dir: string;
  opts: TinyHfOptions;
  /** The stored values (after rounding to the dtype), Hugging Face names, row-major shapes. */
  tensors: Map<string, { shape: number[]; values: Float32Array }>;
}

const SPACE = "\u2581";

export const MISTRAL_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

/** tokenizer.json for moec's random SentencePiece vocabulary (transformers' LlamaConverter layout). */
export function tokenizerJson(vocabSize: number): object {
  return tokenizerJsonFor(randomVocabulary(vocabSize));
}

/**
 * tokenizer.json for a SentencePiece vocabulary whose pieces are in score order with `<unk>`, `<s>`, `</s>` as
 * ids 0, 1, 2 (moec's random ones, llama2.c's), laid out as transformers' LlamaConverter writes it.
 */
export function tokenizerJsonFor(v: Vocabulary): object {
  const vocab: Record<string, number> = {};
  v.tokens.forEach((t, i) => {
    vocab[t] = i;
  });
  const ids = new Map(v.tokens.map((t, i) => [t, i]));
  // SentencePieceExtractor: for each normal piece by score, every split into two known pieces.
  const merges: [string, string][] = [];
  v.tokens.forEach((piece, i) => {
    if (v.types[i] !== 1) return;
    const chars = [...piece];
    const local: [string, string][] = [];
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join("");
      const r = chars.slice(k).join("");
      if (ids.has(l) && ids.has(r)) local.push([l, r]);
    }
    local.sort((a, b) => ids.get(a[0])! - ids.get(b[0])! || ids.get(a[1])! - ids.get(b[1])!);
    merges.push(...local);
  });
  const added = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: SPACE },
        { type: "Replace", pattern: { String: " " }, content: SPACE },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: SPACE }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

const TORCH_DTYPE = { F32: "float32", F16: "float16", BF16: "bfloat16" } as const;

export function writeTinyHfFolder(dir: string, o: TinyHfOptions): TinyHf {
  mkdirSync(dir, { recursive: true });
  const g = gaussian(rng(o.seed ?? 3));
  const hd = o.hidden / o.heads;
  const tensors = new Map<string, { shape: number[]; values: Float32Array }>();
  const inputs: SafetensorsTensorInput[] = [];
  const add = (name: string, shape: number[], scale = 1) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const raw = new Float32Array(n);
    const vector = shape.length === 1;
    const std = vector ? 0.1 : scale / Math.sqrt(shape.at(-1)!);
    for (let i = 0; i < n; i++) raw[i] = (vector ? 1 : 0) + std * g();
    const data = encodeSafetensorsData(raw, o.dtype);
    const values = toF32(data, { name, dtype: o.dtype, offset: 0 }, name);
    tensors.set(name, { shape, values });
    inputs.push({ name, dtype: o.dtype, shape, data });
  };
  add("model.embed_tokens.weight", [o.vocab, o.hidden]);
  for (let i = 0; i < o.layers; i++) {
    const p = `model.layers.${i}`;
    add(`${p}.input_layernorm.weight`, [o.hidden]);
    add(`${p}.self_attn.q_proj.weight`, [o.heads * hd, o.hidden]);
    add(`${p}.self_attn.k_proj.weight`, [o.kvHeads * hd, o.hidden]);
    add(`${p}.self_attn.v_proj.weight`, [o.kvHeads * hd, o.hidden]);
    add(`${p}.self_attn.o_proj.weight`, [o.hidden, o.heads * hd]);
    add(`${p}.post_attention_layernorm.weight`, [o.hidden]);
    add(`${p}.block_sparse_moe.gate.weight`, [o.experts, o.hidden]);
    for (let e = 0; e < o.experts; e++) {
      add(`${p}.block_sparse_moe.experts.${e}.w1.weight`, [o.ffn, o.hidden]);
      add(`${p}.block_sparse_moe.experts.${e}.w2.weight`, [o.hidden, o.ffn]);
      add(`${p}.block_sparse_moe.experts.${e}.w3.weight`, [o.ffn, o.hidden]);
    }
  }
  add("model.norm.weight", [o.hidden]);
  add("lm_head.weight", [o.vocab, o.hidden], o.headScale ?? 1);

  if ((o.shards ?? 1) === 1) {
    writeSafetensors(join(dir, "model.safetensors"), inputs, { format: "pt" });
  } else {
    const half = Math.ceil(inputs.length / 2);
    const names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
    const parts = [inputs.slice(0, half), inputs.slice(half)];
    const weightMap: Record<string, string> = {};
    parts.forEach((list, k) => {
      writeSafetensors(join(dir, names[k]!), list, { format: "pt" });
      for (const t of list) weightMap[t.name] = names[k]!;
    });
    writeFileSync(
      join(dir, "model.safetensors.index.json"),
      JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }, null, 2),
    );
  }
  const config = {
    architectures: ["MixtralForCausalLM"],
    model_type: "mixtral",
    _name_or_path: "tiny-hf-mixtral",
    hidden_size: o.hidden,
    intermediate_size: o.ffn,
    num_hidden_layers: o.layers,
    num_attention_heads: o.heads,
    num_key_value_heads: o.kvHeads,
    num_local_experts: o.experts,
    num_experts_per_tok: o.topK,
    vocab_size: o.vocab,
    max_position_embeddings: 256,
    rope_theta: o.ropeTheta ?? 10000,
    rms_norm_eps: o.eps ?? 1e-5,
    tie_word_embeddings: false,
    torch_dtype: TORCH_DTYPE[o.dtype],
    bos_token_id: 1,
    eos_token_id: 2,
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJson(o.vocab)));
  writeFileSync(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({
      add_bos_token: true,
      add_eos_token: false,
      bos_token: "<s>",
      eos_token: "</s>",
      unk_token: "<unk>",
      ...(o.chatTemplate !== undefined ? { chat_template: o.chatTemplate } : {}),
    }),
  );
  return { dir, opts: o, tensors };
}

/** The same weights as an f32 GGUF file (GGUF names, merged experts, q/k permuted to interleaved RoPE). */
export function writeGgufTwin(hf: TinyHf, path: string): void {
  const o = hf.opts;
  const f32 = getScheme("f32");
  const get = (name: string) => hf.tensors.get(name)!;
  const tensors: { name: string; dims: number[]; type: number; data: Uint8Array }[] = [];
  const put = (name: string, shape: number[], values: Float32Array) => {
    tensors.push({
      name,
      dims: [...shape].reverse(),
      type: f32.ggmlType!,
      data: new Uint8Array(values.slice().buffer),
    });
  };
  const copy = (gguf: string, hfName: string) => put(gguf, get(hfName).shape, get(hfName).values);
  copy("token_embd.weight", "model.embed_tokens.weight");
  for (let i = 0; i < o.layers; i++) {
    const p = `model.layers.${i}`;
    const b = `blk.${i}`;
    copy(`${b}.attn_norm.weight`, `${p}.input_layernorm.weight`);
    const q = get(`${p}.self_attn.q_proj.weight`);
    const k = get(`${p}.self_attn.k_proj.weight`);
    put(`${b}.attn_q.weight`, q.shape, permuteRopeRows(q.values, q.shape[0]!, o.heads));
    put(`${b}.attn_k.weight`, k.shape, permuteRopeRows(k.values, k.shape[0]!, o.kvHeads));
    copy(`${b}.attn_v.weight`, `${p}.self_attn.v_proj.weight`);
    copy(`${b}.attn_output.weight`, `${p}.self_attn.o_proj.weight`);
    copy(`${b}.ffn_norm.weight`, `${p}.post_attention_layernorm.weight`);
    copy(`${b}.ffn_gate_inp.weight`, `${p}.block_sparse_moe.gate.weight`);
    for (const [gg, w] of [
      ["gate", "w1"],
      ["down", "w2"],
      ["up", "w3"],
    ] as const) {
      const parts = Array.from({ length: o.experts }, (_, e) =>
        get(`${p}.block_sparse_moe.experts.${e}.${w}.weight`),
      );
      const all = new Float32Array(parts.reduce((s, x) => s + x.values.length, 0));
      let at = 0;
      for (const x of parts) {
        all.set(x.values, at);
        at += x.values.length;
      }
      put(`${b}.ffn_${gg}_exps.weight`, [o.experts, ...parts[0]!.shape], all);
    }
  }
  copy("output_norm.weight", "model.norm.weight");
  copy("output.weight", "lm_head.weight");
  const meta: RandomMixtralOptions = {
    hidden: o.hidden,
    layers: o.layers,
    heads: o.heads,
    kvHeads: o.kvHeads,
    ffn: o.ffn,
    experts: o.experts,
    topK: o.topK,
    vocab: o.vocab,
    context: 256,
    ropeTheta: o.ropeTheta ?? 10000,
    eps: o.eps ?? 1e-5,
    type: "f32",
    name: "tiny gguf twin",
  };
  writeGguf(path, { metadata: mixtralMetadata(meta, randomVocabulary(o.vocab)), tensors });
}
