// A dense llama GGUF (stories260K) written out as a Hugging Face folder, the way transformers saves a
// LlamaForCausalLM: config.json, model.safetensors (f32, Hugging Face names, q/k rows in the half-split RoPE
// order, i.e. llama.cpp's convert permutation undone), tokenizer.json and tokenizer_config.json. With
// `tie_word_embeddings: true` the folder stores the embedding, the output head, or both (`store`).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openGguf } from "../runtime/checkpoint/gguf-read.ts";
import { plainValue } from "../runtime/checkpoint/gguf-value.ts";
import type { Vocabulary } from "../runtime/checkpoint/random-gguf.ts";
import { type SafetensorsTensorInput, writeSafetensors } from "../runtime/checkpoint/safetensors-write.ts";
import { tokenizerJsonFor } from "./hf-folder.ts";

/** Which of the two tied tensors the folder stores. */
export type TiedStorage = "embed" | "lm_head" | "both";

export interface HfFromGgufOptions {
  /** config.json's tie_word_embeddings (default true). */
  tie?: boolean;
  /** Which tensors to store (default "embed", what transformers writes for a tied model). */
  store?: TiedStorage;
}

/**
 * Rows of a [heads · d, in] matrix from GGUF's interleaved RoPE order back to Hugging Face's half-split one
 * (the inverse of permuteRopeRows): within each head, row p·d/2 + j ← row 2j + p.
 */
export function unpermuteRopeRows(values: Float32Array, rows: number, heads: number): Float32Array {
  const cols = values.length / rows;
  const d = rows / heads;
  const half = d / 2;
  const out = new Float32Array(values.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < half; j++) {
      for (let p = 0; p < 2; p++) {
        const from = (h * d + 2 * j + p) * cols;
        const to = (h * d + p * half + j) * cols;
        out.set(values.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}

export function writeHfFromGguf(ggufPath: string, dir: string, o: HfFromGgufOptions = {}): void {
  const store = o.store ?? "embed";
  const file = openGguf(ggufPath);
  try {
    const meta = (key: string) => plainValue(file.metadata.get(key)!);
    const num = (key: string, dflt?: number) =>
      file.metadata.has(key) ? Number(meta(key)) : (dflt ?? Number(meta(key)));
    const hidden = num("llama.embedding_length");
    const heads = num("llama.attention.head_count");
    const kvHeads = num("llama.attention.head_count_kv", heads);
    const layers = num("llama.block_count");
    const tensor = (name: string) => {
      const t = file.findTensor(name);
      if (!t) throw new Error(`${ggufPath}: no ${name}`);
      const values = new Float32Array(t.elements);
      t.scheme.decode(file.read(t), values);
      return { shape: [...t.dims].reverse(), values };
    };
    const inputs: SafetensorsTensorInput[] = [];
    const put = (name: string, t: { shape: number[]; values: Float32Array }) => {
      inputs.push({ name, dtype: "F32", shape: t.shape, data: new Uint8Array(t.values.slice().buffer) });
    };
    const embed = tensor("token_embd.weight");
    if (store !== "lm_head") put("model.embed_tokens.weight", embed);
    for (let i = 0; i < layers; i++) {
      const b = `blk.${i}`;
      const p = `model.layers.${i}`;
      const q = tensor(`${b}.attn_q.weight`);
      const k = tensor(`${b}.attn_k.weight`);
      put(`${p}.input_layernorm.weight`, tensor(`${b}.attn_norm.weight`));
      put(`${p}.self_attn.q_proj.weight`, { ...q, values: unpermuteRopeRows(q.values, q.shape[0]!, heads) });
      put(`${p}.self_attn.k_proj.weight`, {
        ...k,
        values: unpermuteRopeRows(k.values, k.shape[0]!, kvHeads),
      });
      put(`${p}.self_attn.v_proj.weight`, tensor(`${b}.attn_v.weight`));
      put(`${p}.self_attn.o_proj.weight`, tensor(`${b}.attn_output.weight`));
      put(`${p}.post_attention_layernorm.weight`, tensor(`${b}.ffn_norm.weight`));
      put(`${p}.mlp.gate_proj.weight`, tensor(`${b}.ffn_gate.weight`));
      put(`${p}.mlp.up_proj.weight`, tensor(`${b}.ffn_up.weight`));
      put(`${p}.mlp.down_proj.weight`, tensor(`${b}.ffn_down.weight`));
    }
    put("model.norm.weight", tensor("output_norm.weight"));
    if (store !== "embed")
      put("lm_head.weight", file.findTensor("output.weight") ? tensor("output.weight") : embed);

    mkdirSync(dir, { recursive: true });
    writeSafetensors(join(dir, "model.safetensors"), inputs, { format: "pt" });
    const vocab: Vocabulary = {
      tokens: meta("tokenizer.ggml.tokens") as string[],
      scores: meta("tokenizer.ggml.scores") as number[],
      types: meta("tokenizer.ggml.token_type") as number[],
      bos: num("tokenizer.ggml.bos_token_id"),
      eos: num("tokenizer.ggml.eos_token_id"),
      unk: num("tokenizer.ggml.unknown_token_id"),
    };
    const config = {
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      hidden_size: hidden,
      intermediate_size: num("llama.feed_forward_length"),
      num_hidden_layers: layers,
      num_attention_heads: heads,
      num_key_value_heads: kvHeads,
      vocab_size: embed.shape[0],
      max_position_embeddings: num("llama.context_length"),
      rope_theta: num("llama.rope.freq_base", 10000),
      rms_norm_eps: num("llama.attention.layer_norm_rms_epsilon"),
      tie_word_embeddings: o.tie ?? true,
      torch_dtype: "float32",
      bos_token_id: vocab.bos,
      eos_token_id: vocab.eos,
    };
    writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizerJsonFor(vocab)));
    writeFileSync(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({
        add_bos_token: true,
        add_eos_token: false,
        bos_token: "<s>",
        eos_token: "</s>",
        unk_token: "<unk>",
      }),
    );
  } finally {
    file.close();
  }
}
