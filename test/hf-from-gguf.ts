// A GGUF file written out as a Hugging Face folder, the way transformers saves the model: config.json,
// model.safetensors (f32, Hugging Face names, q/k rows in the half-split RoPE order where llama.cpp's convert
// script permutes them, i.e. that permutation undone), tokenizer.json and tokenizer_config.json. A dense
// llama (stories260K) or Mixtral, or one of the MoE families (qwen3moe, qwen2moe, olmoe: one tensor per
// expert; granitemoe: gate and up fused in input_linear). The vocabulary must be SentencePiece-style (a
// `llama` tokenizer.ggml.model). With `tie_word_embeddings: true` the folder stores the embedding, the
// output head, or both (`store`).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openGguf } from "../runtime/checkpoint/gguf-read.ts";
import { plainValue } from "../runtime/checkpoint/gguf-value.ts";
import type { Vocabulary } from "../runtime/checkpoint/random-gguf.ts";
import { type SafetensorsTensorInput, writeSafetensors } from "../runtime/checkpoint/safetensors-write.ts";
import { tokenizerJsonFor } from "./hf-folder.ts";

/** transformers' class and model_type of each llama.cpp architecture this writes. */
const HF_CLASS: Record<string, string> = {
  llama: "LlamaForCausalLM",
  qwen3moe: "Qwen3MoeForCausalLM",
  qwen2moe: "Qwen2MoeForCausalLM",
  olmoe: "OlmoeForCausalLM",
  granitemoe: "GraniteMoeForCausalLM",
};
const HF_MODEL_TYPE: Record<string, string> = {
  llama: "llama",
  qwen3moe: "qwen3_moe",
  qwen2moe: "qwen2_moe",
  olmoe: "olmoe",
  granitemoe: "granitemoe",
};

/** Which of the two tied tensors the folder stores. */
export type TiedStorage = "embed" | "lm_head" | "both";

export interface HfFromGgufOptions {
  /** config.json's tie_word_embeddings (default true for llama, else whether the file lacks output.weight). */
  tie?: boolean;
  /** Which tensors to store (default "embed" when tied, what transformers writes; else both). */
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
  const file = openGguf(ggufPath);
  try {
    const meta = (key: string) => plainValue(file.metadata.get(key)!);
    const arch = String(meta("general.architecture"));
    const num = (key: string, dflt?: number) =>
      file.metadata.has(key) ? Number(meta(key)) : (dflt ?? Number(meta(key)));
    const hp = (key: string, dflt?: number) => num(`${arch}.${key}`, dflt);
    const hidden = hp("embedding_length");
    const heads = hp("attention.head_count");
    const kvHeads = hp("attention.head_count_kv", heads);
    const layers = hp("block_count");
    const experts = hp("expert_count", 0);
    // llama.cpp's convert script permutes q/k rows for the rope of llama and Granite (NORM); the Qwens
    // and OLMoE rotate halves (NEOX) in both layouts, so their rows are stored as they are.
    const permuted = arch === "llama" || arch === "granitemoe";
    // stories260K's output.weight is a copy of its embedding; the MoE families' random files are tied when
    // they have no output.weight.
    const tie = o.tie ?? (arch === "llama" || !file.findTensor("output.weight"));
    const store = o.store ?? (tie ? "embed" : "both");
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
    /** Expert e's matrix of a merged [experts, rows, cols] tensor. */
    const expert = (t: { shape: number[]; values: Float32Array }, e: number) => {
      const per = t.shape[1]! * t.shape[2]!;
      return { shape: t.shape.slice(1), values: t.values.subarray(e * per, (e + 1) * per) };
    };
    const embed = tensor("token_embd.weight");
    if (store !== "lm_head") put("model.embed_tokens.weight", embed);
    for (let i = 0; i < layers; i++) {
      const b = `blk.${i}`;
      const p = `model.layers.${i}`;
      const q = tensor(`${b}.attn_q.weight`);
      const k = tensor(`${b}.attn_k.weight`);
      put(`${p}.input_layernorm.weight`, tensor(`${b}.attn_norm.weight`));
      put(
        `${p}.self_attn.q_proj.weight`,
        permuted ? { ...q, values: unpermuteRopeRows(q.values, q.shape[0]!, heads) } : q,
      );
      put(
        `${p}.self_attn.k_proj.weight`,
        permuted ? { ...k, values: unpermuteRopeRows(k.values, k.shape[0]!, kvHeads) } : k,
      );
      put(`${p}.self_attn.v_proj.weight`, tensor(`${b}.attn_v.weight`));
      for (const x of ["q", "k", "v"]) {
        if (file.findTensor(`${b}.attn_${x}.bias`))
          put(`${p}.self_attn.${x}_proj.bias`, tensor(`${b}.attn_${x}.bias`));
      }
      for (const x of ["q", "k"]) {
        if (file.findTensor(`${b}.attn_${x}_norm.weight`))
          put(`${p}.self_attn.${x}_norm.weight`, tensor(`${b}.attn_${x}_norm.weight`));
      }
      put(`${p}.self_attn.o_proj.weight`, tensor(`${b}.attn_output.weight`));
      put(`${p}.post_attention_layernorm.weight`, tensor(`${b}.ffn_norm.weight`));
      if (experts === 0) {
        put(`${p}.mlp.gate_proj.weight`, tensor(`${b}.ffn_gate.weight`));
        put(`${p}.mlp.up_proj.weight`, tensor(`${b}.ffn_up.weight`));
        put(`${p}.mlp.down_proj.weight`, tensor(`${b}.ffn_down.weight`));
        continue;
      }
      const gate = tensor(`${b}.ffn_gate_exps.weight`);
      const up = tensor(`${b}.ffn_up_exps.weight`);
      const down = tensor(`${b}.ffn_down_exps.weight`);
      if (arch === "granitemoe") {
        // GraniteMoeParallelExperts: each expert's gate rows, then its up rows, in one tensor.
        const [e, f, h] = gate.shape as [number, number, number];
        const fused = new Float32Array(2 * gate.values.length);
        for (let x = 0; x < e; x++) {
          fused.set(expert(gate, x).values, 2 * x * f * h);
          fused.set(expert(up, x).values, (2 * x + 1) * f * h);
        }
        put(`${p}.block_sparse_moe.router.layer.weight`, tensor(`${b}.ffn_gate_inp.weight`));
        put(`${p}.block_sparse_moe.input_linear.weight`, { shape: [e, 2 * f, h], values: fused });
        put(`${p}.block_sparse_moe.output_linear.weight`, down);
      } else if (arch === "llama") {
        put(`${p}.block_sparse_moe.gate.weight`, tensor(`${b}.ffn_gate_inp.weight`));
        for (let x = 0; x < experts; x++) {
          put(`${p}.block_sparse_moe.experts.${x}.w1.weight`, expert(gate, x));
          put(`${p}.block_sparse_moe.experts.${x}.w3.weight`, expert(up, x));
          put(`${p}.block_sparse_moe.experts.${x}.w2.weight`, expert(down, x));
        }
      } else {
        put(`${p}.mlp.gate.weight`, tensor(`${b}.ffn_gate_inp.weight`));
        for (let x = 0; x < experts; x++) {
          put(`${p}.mlp.experts.${x}.gate_proj.weight`, expert(gate, x));
          put(`${p}.mlp.experts.${x}.up_proj.weight`, expert(up, x));
          put(`${p}.mlp.experts.${x}.down_proj.weight`, expert(down, x));
        }
        if (file.findTensor(`${b}.ffn_gate_inp_shexp.weight`)) {
          // A Linear(hidden, 1): [1, hidden] in the checkpoint, a [hidden] vector in GGUF.
          const g = tensor(`${b}.ffn_gate_inp_shexp.weight`);
          put(`${p}.mlp.shared_expert_gate.weight`, { shape: [1, hidden], values: g.values });
          put(`${p}.mlp.shared_expert.gate_proj.weight`, tensor(`${b}.ffn_gate_shexp.weight`));
          put(`${p}.mlp.shared_expert.up_proj.weight`, tensor(`${b}.ffn_up_shexp.weight`));
          put(`${p}.mlp.shared_expert.down_proj.weight`, tensor(`${b}.ffn_down_shexp.weight`));
        }
      }
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
    const config: Record<string, unknown> = {
      architectures: [HF_CLASS[arch]],
      model_type: HF_MODEL_TYPE[arch],
      hidden_size: hidden,
      intermediate_size: hp("feed_forward_length"),
      num_hidden_layers: layers,
      num_attention_heads: heads,
      num_key_value_heads: kvHeads,
      vocab_size: embed.shape[0],
      max_position_embeddings: hp("context_length"),
      rope_theta: hp("rope.freq_base", 10000),
      rms_norm_eps: hp("attention.layer_norm_rms_epsilon"),
      tie_word_embeddings: tie,
      torch_dtype: "float32",
      bos_token_id: vocab.bos,
      eos_token_id: vocab.eos,
    };
    if (file.metadata.has(`${arch}.attention.key_length`)) config.head_dim = hp("attention.key_length");
    if (experts > 0) {
      const perExpert = arch === "llama" || arch === "granitemoe" ? "num_local_experts" : "num_experts";
      config[perExpert] = experts;
      config.num_experts_per_tok = hp("expert_used_count");
    }
    if (arch === "qwen3moe" || arch === "qwen2moe") {
      config.moe_intermediate_size = hp("expert_feed_forward_length");
      config.norm_topk_prob = arch === "qwen3moe";
    }
    if (arch === "qwen2moe") config.shared_expert_intermediate_size = hp("expert_shared_feed_forward_length");
    if (arch === "olmoe") config.norm_topk_prob = false;
    if (arch === "granitemoe") {
      // llama.cpp's names for transformers' multipliers (convert_hf_to_gguf.py, GraniteModel); an
      // absent attention scale is 1/sqrt(head_dim) in llama.cpp, but 1 in transformers.
      config.attention_multiplier = hp(
        "attention.scale",
        1 / Math.sqrt(hp("attention.key_length", hidden / heads)),
      );
      config.embedding_multiplier = hp("embedding_scale", 1);
      config.residual_multiplier = hp("residual_scale", 1);
      config.logits_scaling = hp("logit_scale", 1);
    }
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
