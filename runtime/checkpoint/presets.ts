// llama.cpp's quantization presets (`llama-quantize IN OUT Q4_K_M`): which ggml type each tensor of a
// model gets, decided as llama.cpp's src/llama-quant.cpp decides it (`tensor_allows_quantization`,
// `llama_tensor_get_type_impl`, `tensor_type_fallback`, in the order of `llama_model_loader`'s
// `weights_map`, whose counters some rules read), and the `general.file_type` it writes. This is the
// rule set for the presets whose types moec has schemes for (the k-quants, the legacy 32-blocks and the
// floats); the i-quant, ternary and MXFP4 presets are not offered. llama.cpp's imatrix-dependent rules
// never apply (moec has no importance matrix), nor do its `--pure`, `--tensor-type` and
// `--output-tensor-type` options. test/fixtures/llama-quantize-presets.json holds llama-quantize's own
// choices for small Mixtral, MoE and dense shapes; presets.test.ts checks these rules against every one.
import { schemeByGgmlType } from "../quant/registry.ts";
import { CheckpointError } from "./errors.ts";
import type { GgufFile } from "./gguf-read.ts";
import { ggmlTypeName } from "./gguf-types.ts";
import type { GgufValue } from "./gguf-value.ts";
import type { QuantizeOptions, TensorChoice } from "./quantize.ts";

/** The ggml type ids the presets reach (ggml.h). */
export const GGML = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q4_1: 3,
  Q5_0: 6,
  Q5_1: 7,
  Q8_0: 8,
  Q2_K: 10,
  Q3_K: 11,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  BF16: 30,
} as const;

/** Elements per block of those types (ggml's `blck_size`). */
const BLOCK: Readonly<Record<number, number>> = {
  [GGML.F32]: 1,
  [GGML.F16]: 1,
  [GGML.BF16]: 1,
  [GGML.Q4_0]: 32,
  [GGML.Q4_1]: 32,
  [GGML.Q5_0]: 32,
  [GGML.Q5_1]: 32,
  [GGML.Q8_0]: 32,
  [GGML.Q2_K]: 256,
  [GGML.Q3_K]: 256,
  [GGML.Q4_K]: 256,
  [GGML.Q5_K]: 256,
  [GGML.Q6_K]: 256,
};

const blockOf = (type: number): number => {
  const b = BLOCK[type];
  if (b === undefined) throw new Error(`presets: no block size for ggml type ${type}`);
  return b;
};

const isQuantized = (type: number) => type !== GGML.F32 && type !== GGML.F16 && type !== GGML.BF16;

/** llama.h's LLAMA_FTYPE_* of the presets offered. */
export const FTYPE = {
  ALL_F32: 0,
  MOSTLY_F16: 1,
  MOSTLY_Q4_0: 2,
  MOSTLY_Q4_1: 3,
  MOSTLY_Q8_0: 7,
  MOSTLY_Q5_0: 8,
  MOSTLY_Q5_1: 9,
  MOSTLY_Q2_K: 10,
  MOSTLY_Q3_K_S: 11,
  MOSTLY_Q3_K_M: 12,
  MOSTLY_Q3_K_L: 13,
  MOSTLY_Q4_K_S: 14,
  MOSTLY_Q4_K_M: 15,
  MOSTLY_Q5_K_S: 16,
  MOSTLY_Q5_K_M: 17,
  MOSTLY_Q6_K: 18,
  MOSTLY_BF16: 32,
} as const;

export interface Preset {
  /** llama-quantize's name: "Q4_K_M". */
  name: string;
  /** The LLAMA_FTYPE written as `general.file_type`. */
  ftype: number;
  /** `llama_ftype_get_default_type`: the type a tensor gets when no rule says otherwise. */
  defaultType: number;
}

const P = (name: string, ftype: number, defaultType: number): Preset => ({ name, ftype, defaultType });

/** The presets, in llama-quantize's order of its list. */
export const PRESETS: readonly Preset[] = [
  P("Q4_0", FTYPE.MOSTLY_Q4_0, GGML.Q4_0),
  P("Q4_1", FTYPE.MOSTLY_Q4_1, GGML.Q4_1),
  P("Q5_0", FTYPE.MOSTLY_Q5_0, GGML.Q5_0),
  P("Q5_1", FTYPE.MOSTLY_Q5_1, GGML.Q5_1),
  P("Q2_K", FTYPE.MOSTLY_Q2_K, GGML.Q2_K),
  P("Q3_K_S", FTYPE.MOSTLY_Q3_K_S, GGML.Q3_K),
  P("Q3_K_M", FTYPE.MOSTLY_Q3_K_M, GGML.Q3_K),
  P("Q3_K_L", FTYPE.MOSTLY_Q3_K_L, GGML.Q3_K),
  P("Q4_K_S", FTYPE.MOSTLY_Q4_K_S, GGML.Q4_K),
  P("Q4_K_M", FTYPE.MOSTLY_Q4_K_M, GGML.Q4_K),
  P("Q5_K_S", FTYPE.MOSTLY_Q5_K_S, GGML.Q5_K),
  P("Q5_K_M", FTYPE.MOSTLY_Q5_K_M, GGML.Q5_K),
  P("Q6_K", FTYPE.MOSTLY_Q6_K, GGML.Q6_K),
  P("Q8_0", FTYPE.MOSTLY_Q8_0, GGML.Q8_0),
  P("F16", FTYPE.MOSTLY_F16, GGML.F16),
  P("BF16", FTYPE.MOSTLY_BF16, GGML.BF16),
  P("F32", FTYPE.ALL_F32, GGML.F32),
];

/** llama-quantize's aliases: the bare k-quant names mean the _M mixes. */
const ALIASES: Readonly<Record<string, string>> = { Q3_K: "Q3_K_M", Q4_K: "Q4_K_M", Q5_K: "Q5_K_M" };

/** llama-quantize's presets moec has no schemes for (i-quants, ternary, MXFP4, …). */
export const PRESETS_WITHOUT_SCHEMES: readonly string[] = [
  "Q1_0",
  "Q2_0",
  "Q2_K_S",
  "IQ1_S",
  "IQ1_M",
  "IQ2_XXS",
  "IQ2_XS",
  "IQ2_S",
  "IQ2_M",
  "IQ3_XXS",
  "IQ3_XS",
  "IQ3_S",
  "IQ3_M",
  "IQ4_NL",
  "IQ4_XS",
  "TQ1_0",
  "TQ2_0",
  "MXFP4_MOE",
];

/** The preset of this name, in any case (aliases included), or undefined. */
export function findPreset(name: string): Preset | undefined {
  const up = name.toUpperCase();
  const want = ALIASES[up] ?? up;
  return PRESETS.find((p) => p.name === want);
}

/** The preset whose LLAMA_FTYPE this is (as `general.file_type` holds it), or undefined. */
export function presetByFileType(ftype: number): Preset | undefined {
  return PRESETS.find((p) => p.ftype === ftype);
}

/** What llama.cpp reads of the model's hyperparameters to choose types. */
export interface PresetModel {
  /** `general.architecture`. */
  arch: string;
  /** `<arch>.block_count`. */
  nLayer: number;
  /** `<arch>.expert_count` (0 for a dense model). */
  nExpert: number;
  /** Heads and KV heads of layer 0 (`n_gqa()` is their ratio). */
  nHead: number;
  nHeadKv: number;
  /** `<arch>.vocab_size`, else the tokenizer's length (0 if neither). */
  nVocab: number;
}

export class PresetError extends Error {
  override readonly name = "PresetError";
}

function num(v: GgufValue | undefined, index = 0): number | undefined {
  if (v === undefined) return undefined;
  if (v.type === "array") {
    const x = v.value[index];
    return typeof x === "number" || typeof x === "bigint" ? Number(x) : undefined;
  }
  return typeof v.value === "number" || typeof v.value === "bigint" ? Number(v.value) : undefined;
}

/** The hyperparameters from a GGUF's metadata, as llama.cpp's loader reads them. */
export function presetModelFromMetadata(md: ReadonlyMap<string, GgufValue>): PresetModel {
  const archV = md.get("general.architecture");
  if (archV?.type !== "string") throw new PresetError("the file has no string general.architecture");
  const arch = archV.value;
  const nLayer = num(md.get(`${arch}.block_count`));
  if (nLayer === undefined) throw new PresetError(`the file has no ${arch}.block_count`);
  const nHead = num(md.get(`${arch}.attention.head_count`)) ?? 0;
  const nHeadKv = num(md.get(`${arch}.attention.head_count_kv`)) ?? nHead;
  const tokens = md.get("tokenizer.ggml.tokens");
  const nVocab = num(md.get(`${arch}.vocab_size`)) ?? (tokens?.type === "array" ? tokens.value.length : 0);
  return { arch, nLayer, nExpert: num(md.get(`${arch}.expert_count`)) ?? 0, nHead, nHeadKv, nVocab };
}

/** A tensor as the rules see it: its name, ggml dims (dims[0] is the row length) and current ggml type. */
export interface PresetTensor {
  name: string;
  dims: readonly number[];
  type: number;
}

export interface PresetChoice {
  name: string;
  /** The ggml type the tensor is written as. */
  type: number;
  /** The tensor is not quantized (a vector, a norm, the router, …): it keeps its type; why. */
  kept?: string;
  /** Rows did not fill the blocks of the type the rules chose: that type and what llama.cpp did. */
  fellBack?: { from: number; why: string };
}

type Category =
  | "output"
  | "token_embd"
  | "attn_qkv"
  | "attn_kv_b"
  | "attn_v"
  | "attn_k"
  | "attn_q"
  | "attn_output"
  | "ffn_up"
  | "ffn_gate"
  | "ffn_down"
  | "other";

/** `tensor_get_category`. */
function category(name: string): Category {
  if (name === "output.weight") return "output";
  if (name === "token_embd.weight" || name === "per_layer_token_embd.weight") return "token_embd";
  if (name.includes("attn_qkv.weight")) return "attn_qkv";
  if (name.includes("attn_kv_b.weight")) return "attn_kv_b";
  if (name.includes("attn_v.weight")) return "attn_v";
  if (name.includes("attn_k.weight")) return "attn_k";
  if (name.includes("attn_q.weight")) return "attn_q";
  if (name.includes("attn_output.weight")) return "attn_output";
  if (name.includes("ffn_up")) return "ffn_up";
  if (name.includes("ffn_gate")) return "ffn_gate";
  if (name.includes("ffn_down")) return "ffn_down";
  return "other";
}

const isAttnVLike = (c: Category) => c === "attn_v" || c === "attn_qkv" || c === "attn_kv_b";

/** `ggml_n_dims`: the number of dimensions up to the last one above 1. */
function nDims(dims: readonly number[]): number {
  for (let i = dims.length - 1; i >= 1; i--) if (dims[i]! > 1) return i + 1;
  return 1;
}

/** Name pieces `tensor_allows_quantization` leaves unquantized (besides norms and output options). */
const NOT_QUANTIZED = [
  "ffn_gate_inp.weight",
  "ffn_gate_tid2eid.weight",
  "altup",
  "laurel",
  "per_layer_model_proj",
  "ssm_conv1d",
  "shortconv.conv.weight",
  "indexer.k_proj.weight",
  "indexer.q_proj.weight",
  "time_mix_first.weight",
  "time_mix_w0.weight",
  "time_mix_w1.weight",
  "time_mix_w2.weight",
  "time_mix_v0.weight",
  "time_mix_v1.weight",
  "time_mix_v2.weight",
  "time_mix_a0.weight",
  "time_mix_a1.weight",
  "time_mix_a2.weight",
  "time_mix_g1.weight",
  "time_mix_g2.weight",
  "time_mix_decay_w1.weight",
  "time_mix_decay_w2.weight",
  "time_mix_lerp_fused.weight",
  "attn_rel_b.weight",
  ".position_embd",
  "sam.pos_embd",
  "sam.neck.",
  "sam.net_",
  ".rel_pos",
  ".patch_embd",
  ".patch_merger",
  "a.rvq.codebook",
  "mm.a.code_embd",
];

/** `tensor_allows_quantization`: undefined when the tensor is quantized, else why not. */
export function notQuantizedWhy(name: string, dims: readonly number[]): string | undefined {
  if (nDims(dims) < 2) return "a vector (norm or bias)";
  if (!name.endsWith("weight")) return "not a weight";
  if (name.includes("_norm.weight")) return "a norm";
  if (name.includes("ffn_gate_inp.weight")) return "the MoE router";
  if (name === "position_embd.weight" || name === "token_types.weight")
    return "position or token-type embeddings";
  for (const piece of NOT_QUANTIZED) if (name.includes(piece)) return `llama.cpp does not quantize ${piece}`;
  return undefined;
}

/** `sscanf(name, "blk.%d.", &layer)`: the layer number, or undefined. */
function layerOf(name: string): number | undefined {
  const m = /^blk\.([+-]?\d+)/.exec(name);
  return m ? Number(m[1]) : undefined;
}

const utf8 = new TextEncoder();

/** `llama_model_loader::weight_name_comparer`: by layer (tensors outside a layer first), then by name's bytes. */
export function llamaTensorOrder(a: string, b: string): number {
  const la = layerOf(a) ?? -1;
  const lb = layerOf(b) ?? -1;
  if (la !== lb) return la - lb;
  const x = utf8.encode(a);
  const y = utf8.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

const typeName = (t: number) => ggmlTypeName(t) ?? `type ${t}`;

/**
 * Every tensor's type under `preset`, as llama.cpp's `llama_model_quantize` chooses it, in the input's order.
 * Throws PresetError where llama.cpp throws (an expert tensor whose name has no layer in range).
 */
export function presetTypes(
  preset: Preset,
  model: PresetModel,
  tensors: readonly PresetTensor[],
): PresetChoice[] {
  const ftype = preset.ftype;
  const F = FTYPE;
  const falcon = model.arch === "falcon";
  const nExpert = model.nExpert;
  const nGqa = model.nHeadKv > 0 ? Math.trunc(model.nHead / model.nHeadKv) : 0;
  // llama.cpp's LLM_TYPE_70B, which only the llama architecture's 80-layer grouped-query shape gets.
  const is70B =
    model.arch === "llama" && nExpert !== 8 && model.nLayer === 80 && model.nHead !== model.nHeadKv;

  const ordered = [...tensors].sort((a, b) => llamaTensorOrder(a.name, b.name));
  // init_quantize_state_counters
  const nAttentionWv = ordered.filter((t) => isAttnVLike(category(t.name))).length;
  const hasTiedEmbeddings = !ordered.some((t) => t.name === "output.weight");
  const nFfn = model.nLayer;
  let iAttentionWv = 0;
  let iFfnDown = 0;
  let iFfnGate = 0;
  let iFfnUp = 0;

  const div = (a: number, b: number) => Math.trunc(a / b);
  const useMoreBits = (i: number, n: number) =>
    i < div(n, 8) || i >= div(7 * n, 8) || (i - div(n, 8)) % 3 === 2;
  /** `layer_info`: an MoE model's layer comes from the tensor's name, a dense model's from the counter. */
  const layerInfo = (counter: number, n: number, name: string): number => {
    if (Math.max(1, nExpert) <= 1) return counter;
    const i = layerOf(name);
    if (i === undefined) throw new PresetError(`failed to determine the layer of tensor ${name}`);
    if (i < 0 || i >= n) throw new PresetError(`bad layer ${i} for tensor ${name}: must be in [0, ${n})`);
    return i;
  };

  /** `llama_tensor_get_type_impl`, the branches that the offered presets reach. */
  const impl = (t: PresetTensor, start: number, cat: Category): number => {
    let type = start;
    if (cat === "output" || (hasTiedEmbeddings && cat === "token_embd")) {
      if (falcon || t.dims[0]! % blockOf(type) !== 0) type = GGML.Q8_0;
      else if (type !== GGML.Q8_0) type = GGML.Q6_K;
    } else if (cat === "token_embd") {
      // Only the i-quant, ternary and Q2_0 presets change the token embeddings.
    } else if (isAttnVLike(cat)) {
      if (ftype === F.MOSTLY_Q2_K) type = nGqa >= 4 ? GGML.Q4_K : GGML.Q3_K;
      else if (ftype === F.MOSTLY_Q3_K_M) type = iAttentionWv < 2 ? GGML.Q5_K : GGML.Q4_K;
      else if (ftype === F.MOSTLY_Q3_K_L) type = GGML.Q5_K;
      else if (
        (ftype === F.MOSTLY_Q4_K_M || ftype === F.MOSTLY_Q5_K_M) &&
        useMoreBits(iAttentionWv, nAttentionWv)
      )
        type = GGML.Q6_K;
      else if (ftype === F.MOSTLY_Q4_K_S && iAttentionWv < 4) type = GGML.Q5_K;
      if (is70B && (type === GGML.Q3_K || type === GGML.Q4_K)) type = GGML.Q5_K;
      if (nExpert === 8) type = GGML.Q8_0;
      iAttentionWv++;
    } else if (cat === "attn_k") {
      if (nExpert === 8) type = GGML.Q8_0;
    } else if (cat === "attn_q") {
      // Only IQ3_XS and IQ3_XXS change attn_q.
    } else if (cat === "ffn_down") {
      const i = layerInfo(iFfnDown, nFfn, t.name);
      const n = nFfn;
      if (ftype === F.MOSTLY_Q2_K) type = GGML.Q3_K;
      else if (ftype === F.MOSTLY_Q3_K_M) {
        type = i < div(n, 16) ? GGML.Q5_K : !falcon || useMoreBits(i, n) ? GGML.Q4_K : GGML.Q3_K;
      } else if (ftype === F.MOSTLY_Q3_K_L) type = falcon ? GGML.Q4_K : GGML.Q5_K;
      else if (ftype === F.MOSTLY_Q4_K_M) {
        if (falcon) type = i < div(n, 16) ? GGML.Q6_K : useMoreBits(i, n) ? GGML.Q5_K : GGML.Q4_K;
        else if (useMoreBits(i, n)) type = GGML.Q6_K;
      } else if (ftype === F.MOSTLY_Q5_K_M && useMoreBits(i, n)) type = GGML.Q6_K;
      else if (ftype === F.MOSTLY_Q4_K_S && !falcon && i < div(n, 8)) type = GGML.Q5_K;
      iFfnDown++;
    } else if (cat === "attn_output") {
      if (!falcon) {
        if (nExpert === 8) {
          if (
            ftype === F.MOSTLY_Q2_K ||
            ftype === F.MOSTLY_Q3_K_S ||
            ftype === F.MOSTLY_Q3_K_M ||
            ftype === F.MOSTLY_Q4_K_S ||
            ftype === F.MOSTLY_Q4_K_M
          )
            type = GGML.Q5_K;
        } else if (ftype === F.MOSTLY_Q2_K) type = GGML.Q3_K;
        else if (ftype === F.MOSTLY_Q3_K_M) type = GGML.Q4_K;
        else if (ftype === F.MOSTLY_Q3_K_L) type = GGML.Q5_K;
      } else if (ftype === F.MOSTLY_Q3_K_L) type = GGML.Q4_K;
    } else if (cat === "ffn_gate") {
      layerInfo(iFfnGate, nFfn, t.name);
      iFfnGate++;
    } else if (cat === "ffn_up") {
      layerInfo(iFfnUp, nFfn, t.name);
      iFfnUp++;
    }
    return type;
  };

  /** `tensor_type_fallback`. */
  const fallback = (t: PresetTensor, want: number): { type: number; from: number; why: string } => {
    const row = t.dims[0]!;
    let to: number;
    switch (want) {
      case GGML.Q2_K:
      case GGML.Q3_K:
        to = GGML.Q4_0;
        break;
      case GGML.Q4_K:
        to = GGML.Q5_0;
        break;
      case GGML.Q5_K:
        to = GGML.Q5_1;
        break;
      case GGML.Q6_K:
        to = GGML.Q8_0;
        break;
      default:
        to = want; // already a 32-block type: the check below makes it f16
    }
    let why = `rows of ${row} do not fill ${typeName(want)}'s blocks of ${blockOf(want)}`;
    if (row % blockOf(to) !== 0) {
      why += to === want ? "" : ` nor ${typeName(to)}'s of ${blockOf(to)}`;
      to = GGML.F16;
    }
    return { type: to, from: want, why };
  };

  const byName = new Map<string, PresetChoice>();
  for (const t of ordered) {
    const kept = notQuantizedWhy(t.name, t.dims);
    if (kept !== undefined) {
      byName.set(t.name, { name: t.name, type: t.type, kept });
      continue;
    }
    let type = preset.defaultType;
    if (!isQuantized(type)) {
      byName.set(t.name, { name: t.name, type });
      continue;
    }
    type = impl(t, type, category(t.name));
    if (t.dims[0]! % blockOf(type) !== 0) {
      const fb = fallback(t, type);
      byName.set(t.name, { name: t.name, type: fb.type, fellBack: { from: fb.from, why: fb.why } });
    } else byName.set(t.name, { name: t.name, type });
  }
  return tensors.map((t) => byName.get(t.name)!);
}

/**
 * What `moec quantize --preset` hands quantizeGguf: each tensor's scheme as llama.cpp chooses it (already
 * fallen back where rows do not fill the blocks, with a note saying so) and the preset's file type.
 */
export function presetQuantizeOptions(
  file: GgufFile,
  preset: Preset,
): Pick<QuantizeOptions, "choose" | "fileType"> {
  let choices: PresetChoice[];
  try {
    choices = presetTypes(preset, presetModelFromMetadata(file.metadata), file.tensors);
  } catch (e) {
    if (e instanceof PresetError)
      throw new CheckpointError({ file: file.path, problem: `preset ${preset.name}: ${e.message}` });
    throw e;
  }
  const byName = new Map(choices.map((c) => [c.name, c]));
  return {
    fileType: preset.ftype,
    choose: (t): TensorChoice => {
      const c = byName.get(t.name)!;
      if (c.kept !== undefined) return { keep: true, why: `kept: ${c.kept}` };
      const scheme = schemeByGgmlType(c.type);
      if (!scheme)
        throw new CheckpointError({
          file: file.path,
          what: t.name,
          whatKind: "tensor",
          problem: `preset ${preset.name} chose ${typeName(c.type)}, which moec has no scheme for`,
        });
      const note = c.fellBack
        ? `fell back: ${c.fellBack.why} → ${typeName(c.type)} (as llama.cpp)`
        : undefined;
      return { scheme: scheme.name, explicit: true, rule: `preset ${preset.name}`, note };
    },
  };
}
