// Small random Mixtral-shaped (or dense Mistral-shaped) GGUF files that llama.cpp can load: the
// llama architecture's metadata, a SentencePiece-style vocabulary, f32 norms and router, and every
// matrix in the requested type, encoded by moec's own schemes. Tests and the benchmarks use them.
// `family` writes the MoE architectures built on it instead (qwen3moe, qwen2moe, olmoe, granitemoe:
// their q/k norms, biases, shared expert and multipliers), usually with a real vocabulary (`tokenizer`).
import { getScheme } from "../quant/index.ts";
import type { QuantScheme } from "../quant/scheme.ts";
import { gaussian, rng } from "../weights.ts";
import { CheckpointError } from "./errors.ts";
import type { GgufValue } from "./gguf-value.ts";
import { gv } from "./gguf-value.ts";
import { type GgufTensorInput, type GgufWriteResult, writeGguf } from "./gguf-write.ts";

/** llama.cpp's `general.architecture` of the file. */
export type RandomFamily = "llama" | "qwen3moe" | "qwen2moe" | "olmoe" | "granitemoe";

export interface RandomMixtralOptions {
  /** Default "llama". */
  family?: RandomFamily;
  /** Width of a head (default hidden / heads); Qwen3's heads are wider than hidden / heads. */
  headDim?: number;
  /** qwen2moe: the shared expert's width (default 2 · ffn). */
  sharedFfn?: number;
  /** granitemoe: embedding_scale, residual_scale, attention.scale, logit_scale. */
  multipliers?: { embedding: number; residual: number; attention: number; logits: number };
  /** The tokenizer.* metadata of a real vocabulary (its token count must be `vocab`); default a random
   * SentencePiece-style one. */
  tokenizer?: [string, GgufValue][];
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  /** 0 for a dense model (one SwiGLU FFN per layer, no router). */
  experts: number;
  topK: number;
  vocab: number;
  /** llama.context_length (default 2048). */
  context?: number;
  ropeTheta?: number;
  eps?: number;
  /** Scheme of the matrices: "f32", "f16", "q8_0", "q4_0", … (any scheme with a ggml type). */
  type: string;
  seed?: number;
  /** Multiplies the output head (default 1): a peakier distribution, but no wider margins relative to rounding. */
  headScale?: number;
  /**
   * Gives every token one successor (a seeded permutation of the vocabulary) and adds to the successor's
   * head row `successorPeak · headScale / √hidden` times the token's unit embedding direction, so the
   * successor's logit rises by about `successorPeak · headScale · cos(h, embedding)`. Greedy decoding then
   * has winners by a margin that is a fixed fraction of the logits, which rounding differences between
   * implementations cannot overturn; attention and the experts still shape the rest (default 0: none).
   */
  successorPeak?: number;
  /**
   * Multiplies the token embeddings (default 1: rows of norm ≈ 1, which the layers' outputs, of norm ≈ √hidden,
   * soon drown). √hidden and more make the token itself dominate the residual stream.
   */
  embedScale?: number;
  /** Multiplies the router (`ffn_gate_inp`), making the chosen experts' weights more unequal (default 1). */
  routerScale?: number;
  /** "merged": `blk.N.ffn_gate_exps.weight`; "per-expert": the older `blk.N.ffn_gate.E.weight`. */
  layout?: "merged" | "per-expert";
  /** Leave out `output.weight`, so the head is tied to `token_embd.weight`. */
  tiedHead?: boolean;
  /** general.name (default "moec random mixtral"). */
  name?: string;
}

/** The pieces' token types, as llama.cpp numbers them. */
export const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

export interface Vocabulary {
  tokens: string[];
  scores: number[];
  types: number[];
  bos: number;
  eos: number;
  unk: number;
}

const SPACE = "\u2581";
const LETTERS = "etaoinshrdlcumwfgypbvkjxqz";
const MORE_SINGLES = `${LETTERS.toUpperCase()}0123456789.,!?'-:;()"`;
const WORDS = [
  "the",
  "and",
  "of",
  "to",
  "in",
  "is",
  "it",
  "that",
  "was",
  "for",
  "on",
  "with",
  "as",
  "he",
  "she",
  "they",
  "be",
  "at",
  "by",
  "this",
  "have",
  "from",
  "or",
  "one",
  "had",
  "not",
  "but",
  "what",
  "all",
  "were",
  "when",
  "we",
  "there",
  "can",
  "an",
  "your",
  "which",
  "their",
  "said",
  "if",
];

/**
 * A SentencePiece-style vocabulary of exactly `size` pieces: `<unk>`, `<s>`, `</s>`, the 256 byte
 * pieces `<0x00>`…`<0xFF>`, `▁` and the lower-case letters, a few common words with the leading-space
 * mark `▁` (each after the prefixes it merges from), other characters, more words, then longer letter
 * strings, so that every piece, wherever the list is cut, can be reached by merging two earlier ones.
 * Scores fall with the index: earlier pieces merge first. Text outside the pieces falls back to bytes.
 */
export function randomVocabulary(size: number): Vocabulary {
  const tokens = ["<unk>", "<s>", "</s>"];
  const types: number[] = [TOKEN_TYPE.unknown, TOKEN_TYPE.control, TOKEN_TYPE.control];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(TOKEN_TYPE.byte);
  }
  const minimum = tokens.length + 1;
  if (!Number.isInteger(size) || size < minimum) {
    throw new RangeError(`a random vocabulary needs at least ${minimum} pieces, asked for ${size}`);
  }
  const seen = new Set(tokens);
  const pieces: string[] = [];
  const add = (p: string) => {
    if (seen.has(p) || tokens.length + pieces.length >= size) return;
    seen.add(p);
    pieces.push(p);
  };
  const words = (list: string[]) => {
    for (const w of list) {
      const word = SPACE + w;
      for (let n = 2; n <= word.length; n++) add(word.slice(0, n));
    }
  };
  for (const c of SPACE + LETTERS) add(c);
  words(WORDS.slice(0, 8));
  for (const c of MORE_SINGLES) add(c);
  words(WORDS.slice(8));
  // Then every letter string of length 2, 3, … with and without `▁`, until the vocabulary is full.
  let level = [""];
  while (tokens.length + pieces.length < size) {
    const next: string[] = [];
    for (const p of level) for (const c of LETTERS) next.push(p + c);
    for (const p of next) {
      if (p.length >= 2) add(p);
      add(SPACE + p);
    }
    level = next;
  }
  const scores = tokens.map(() => 0);
  for (let i = 0; i < pieces.length; i++) {
    tokens.push(pieces[i]!);
    types.push(TOKEN_TYPE.normal);
    scores.push(-i);
  }
  return { tokens, scores, types, bos: 1, eos: 2, unk: 0 };
}

/** llama.cpp's general.file_type (LLAMA_FTYPE_*) for a uniform file of this type. */
export const FILE_TYPE: Record<string, number> = {
  f32: 0,
  f16: 1,
  q4_0: 2,
  q4_1: 3,
  q8_0: 7,
  q5_0: 8,
  q5_1: 9,
  q2_k: 10,
  q3_k: 12,
  q4_k: 15,
  q5_k: 17,
  q6_k: 18,
  bf16: 32,
};

/** The metadata llama.cpp reads to load a llama-architecture model (Mistral, Mixtral), or one of the
 * families built on it under its own prefix. */
export function mixtralMetadata(o: RandomMixtralOptions, vocab: Vocabulary): [string, GgufValue][] {
  const arch = o.family ?? "llama";
  const headDim = o.headDim ?? o.hidden / o.heads;
  const md: [string, GgufValue][] = [
    ["general.architecture", gv.str(arch)],
    ["general.name", gv.str(o.name ?? "moec random mixtral")],
    ["general.alignment", gv.u32(32)],
  ];
  const ft = FILE_TYPE[o.type];
  if (ft !== undefined) md.push(["general.file_type", gv.u32(ft)]);
  const k = (key: string) => `${arch}.${key}`;
  md.push(
    [k("vocab_size"), gv.u32(o.vocab)],
    [k("context_length"), gv.u32(o.context ?? 2048)],
    [k("embedding_length"), gv.u32(o.hidden)],
    [k("block_count"), gv.u32(o.layers)],
    [k("feed_forward_length"), gv.u32(o.ffn)],
    [k("attention.head_count"), gv.u32(o.heads)],
    [k("attention.head_count_kv"), gv.u32(o.kvHeads)],
    [k("rope.dimension_count"), gv.u32(headDim)],
    [k("rope.freq_base"), gv.f32(o.ropeTheta ?? 10000)],
    [k("attention.layer_norm_rms_epsilon"), gv.f32(o.eps ?? 1e-5)],
  );
  if (o.headDim !== undefined)
    md.push([k("attention.key_length"), gv.u32(headDim)], [k("attention.value_length"), gv.u32(headDim)]);
  if (o.experts > 0) {
    md.push([k("expert_count"), gv.u32(o.experts)], [k("expert_used_count"), gv.u32(o.topK)]);
  }
  if (arch === "qwen3moe" || arch === "qwen2moe") md.push([k("expert_feed_forward_length"), gv.u32(o.ffn)]);
  if (arch === "qwen2moe")
    md.push([k("expert_shared_feed_forward_length"), gv.u32(o.sharedFfn ?? 2 * o.ffn)]);
  if (arch === "granitemoe" && o.multipliers) {
    const m = o.multipliers;
    md.push(
      [k("embedding_scale"), gv.f32(m.embedding)],
      [k("residual_scale"), gv.f32(m.residual)],
      [k("attention.scale"), gv.f32(m.attention)],
      [k("logit_scale"), gv.f32(m.logits)],
    );
  }
  if (o.tokenizer) return [...md, ...o.tokenizer];
  md.push(
    ["tokenizer.ggml.model", gv.str("llama")],
    ["tokenizer.ggml.tokens", gv.strings(vocab.tokens)],
    ["tokenizer.ggml.scores", gv.f32s(vocab.scores)],
    ["tokenizer.ggml.token_type", gv.i32s(vocab.types)],
    ["tokenizer.ggml.bos_token_id", gv.u32(vocab.bos)],
    ["tokenizer.ggml.eos_token_id", gv.u32(vocab.eos)],
    ["tokenizer.ggml.unknown_token_id", gv.u32(vocab.unk)],
    ["tokenizer.ggml.add_bos_token", gv.bool(true)],
    ["tokenizer.ggml.add_eos_token", gv.bool(false)],
  );
  return md;
}

function checkOptions(path: string, o: RandomMixtralOptions, scheme: QuantScheme): void {
  const fail = (problem: string): never => {
    throw new CheckpointError({ file: path, problem });
  };
  for (const k of ["hidden", "layers", "heads", "kvHeads", "ffn", "vocab"] as const) {
    if (!Number.isInteger(o[k]) || o[k] <= 0) fail(`${k} must be a positive integer, not ${o[k]}`);
  }
  if (!Number.isInteger(o.experts) || o.experts < 0) fail(`experts must be 0 or more, not ${o.experts}`);
  if (o.experts > 0 && (!Number.isInteger(o.topK) || o.topK < 1 || o.topK > o.experts)) {
    fail(`topK must be from 1 to experts (${o.experts}), not ${o.topK}`);
  }
  if (
    o.headDim !== undefined ? o.headDim % 2 !== 0 : o.hidden % o.heads !== 0 || (o.hidden / o.heads) % 2 !== 0
  ) {
    fail(`hidden ${o.hidden} must split into ${o.heads} heads of an even size`);
  }
  const tokens = o.tokenizer?.find(([key]) => key === "tokenizer.ggml.tokens")?.[1];
  if (o.tokenizer && (tokens?.type !== "array" || tokens.value.length !== o.vocab))
    fail(
      `the tokenizer has ${tokens?.type === "array" ? tokens.value.length : "no"} tokens, but vocab is ${o.vocab}`,
    );
  if (o.heads % o.kvHeads !== 0) fail(`heads ${o.heads} must be a multiple of kvHeads ${o.kvHeads}`);
  for (const [what, row] of [
    ["hidden", o.hidden],
    ["ffn", o.ffn],
  ] as const) {
    if (row % scheme.blockSize !== 0) {
      fail(`${what} ${row} is not a multiple of the ${scheme.name} block size ${scheme.blockSize}`);
    }
  }
}

/** See `successorPeak`. Its own random stream, so the other tensors do not change with it. */
function addSuccessors(head: Float32Array, embedding: Float32Array, o: RandomMixtralOptions): void {
  const rand = rng(((o.seed ?? 1) ^ 0x5eed) >>> 0);
  const next = [...Array(o.vocab).keys()];
  for (let i = o.vocab - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [next[i], next[j]] = [next[j]!, next[i]!];
  }
  const h = o.hidden;
  for (let t = 0; t < o.vocab; t++) {
    let norm = 0;
    for (let i = 0; i < h; i++) norm += embedding[t * h + i]! ** 2;
    const k = (o.successorPeak! * (o.headScale ?? 1)) / Math.sqrt(h * norm);
    const row = next[t]! * h;
    for (let i = 0; i < h; i++) head[row + i]! += k * embedding[t * h + i]!;
  }
}

/**
 * Writes a random llama-architecture GGUF (atomically). Matrices ~ N(0, 1/in), norms ~ 1 + N(0, 0.1²),
 * the output head times `headScale`; `embedScale`, `routerScale` and `successorPeak` shape the embeddings,
 * the router and the head when given. The values depend only on the sizes, the seed and those options,
 * not on the layout, so the per-expert and merged files of one seed hold the same numbers.
 */
export function writeRandomMixtralGguf(path: string, o: RandomMixtralOptions): GgufWriteResult {
  const scheme = getScheme(o.type);
  if (scheme.ggmlType === undefined) {
    throw new CheckpointError({ file: path, problem: `scheme ${scheme.name} has no GGUF type` });
  }
  checkOptions(path, o, scheme);
  const f32 = getScheme("f32");
  const rand = rng(o.seed ?? 1);
  const g = gaussian(rand);
  const headDim = o.headDim ?? o.hidden / o.heads;
  const family = o.family ?? "llama";
  const tensors: GgufTensorInput[] = [];

  /** `shape` in spec order ([out, in], experts first); stored with dims reversed. A vector is a norm
   * (1 + N(0, 0.1²)) unless `plain`: a bias or a gate, drawn like a matrix row. */
  const values = (shape: number[], scale = 1, plain = false): Float32Array => {
    const n = shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    const vector = shape.length === 1 && !plain;
    const std = vector ? 0.1 : scale / Math.sqrt(shape.at(-1)!);
    for (let i = 0; i < n; i++) out[i] = (vector ? 1 : 0) + std * g();
    return out;
  };
  const encode = (s: QuantScheme, v: Float32Array): Uint8Array => {
    const out = new Uint8Array((v.length / s.blockSize) * s.blockBytes);
    s.encode(v, out);
    return out;
  };
  const add = (name: string, shape: number[], s: QuantScheme, scale = 1, v = values(shape, scale)) => {
    tensors.push({
      name,
      dims: [...shape].reverse(),
      type: s.ggmlType!,
      data: encode(s, v),
    });
  };
  const addExperts = (merged: string, single: (e: number) => string, shape: number[]) => {
    const v = values([o.experts, ...shape]);
    if (o.layout === "per-expert") {
      const per = shape[0]! * shape[1]!;
      for (let e = 0; e < o.experts; e++) {
        tensors.push({
          name: single(e),
          dims: [...shape].reverse(),
          type: scheme.ggmlType!,
          data: encode(scheme, v.subarray(e * per, (e + 1) * per)),
        });
      }
    } else {
      tensors.push({
        name: merged,
        dims: [...shape].reverse().concat(o.experts),
        type: scheme.ggmlType!,
        data: encode(scheme, v),
      });
    }
  };

  const embedding = values([o.vocab, o.hidden], o.embedScale ?? 1);
  add("token_embd.weight", [o.vocab, o.hidden], scheme, 1, embedding);
  for (let i = 0; i < o.layers; i++) {
    const b = `blk.${i}`;
    add(`${b}.attn_norm.weight`, [o.hidden], f32);
    for (const [p, heads] of [
      ["q", o.heads],
      ["k", o.kvHeads],
      ["v", o.kvHeads],
    ] as const) {
      add(`${b}.attn_${p}.weight`, [heads * headDim, o.hidden], scheme);
      if (family === "qwen2moe")
        add(`${b}.attn_${p}.bias`, [heads * headDim], f32, 1, values([heads * headDim], 1, true));
    }
    if (family === "qwen3moe") {
      add(`${b}.attn_q_norm.weight`, [headDim], f32);
      add(`${b}.attn_k_norm.weight`, [headDim], f32);
    }
    if (family === "olmoe") {
      add(`${b}.attn_q_norm.weight`, [o.heads * headDim], f32);
      add(`${b}.attn_k_norm.weight`, [o.kvHeads * headDim], f32);
    }
    add(`${b}.attn_output.weight`, [o.hidden, o.heads * headDim], scheme);
    add(`${b}.ffn_norm.weight`, [o.hidden], f32);
    if (o.experts > 0) {
      add(`${b}.ffn_gate_inp.weight`, [o.experts, o.hidden], f32, o.routerScale ?? 1);
      addExperts(`${b}.ffn_gate_exps.weight`, (e) => `${b}.ffn_gate.${e}.weight`, [o.ffn, o.hidden]);
      addExperts(`${b}.ffn_down_exps.weight`, (e) => `${b}.ffn_down.${e}.weight`, [o.hidden, o.ffn]);
      addExperts(`${b}.ffn_up_exps.weight`, (e) => `${b}.ffn_up.${e}.weight`, [o.ffn, o.hidden]);
      if (family === "qwen2moe") {
        const sh = o.sharedFfn ?? 2 * o.ffn;
        add(`${b}.ffn_gate_inp_shexp.weight`, [o.hidden], f32, 1, values([o.hidden], 1, true));
        add(`${b}.ffn_gate_shexp.weight`, [sh, o.hidden], scheme);
        add(`${b}.ffn_up_shexp.weight`, [sh, o.hidden], scheme);
        add(`${b}.ffn_down_shexp.weight`, [o.hidden, sh], scheme);
      }
    } else {
      add(`${b}.ffn_gate.weight`, [o.ffn, o.hidden], scheme);
      add(`${b}.ffn_down.weight`, [o.hidden, o.ffn], scheme);
      add(`${b}.ffn_up.weight`, [o.ffn, o.hidden], scheme);
    }
  }
  add("output_norm.weight", [o.hidden], f32);
  if (!o.tiedHead) {
    const head = values([o.vocab, o.hidden], o.headScale ?? 1);
    if (o.successorPeak) addSuccessors(head, embedding, o);
    add("output.weight", [o.vocab, o.hidden], scheme, 1, head);
  }

  const vocab = o.tokenizer
    ? { tokens: [], scores: [], types: [], bos: 0, eos: 0, unk: 0 }
    : randomVocabulary(o.vocab);
  return writeGguf(path, { metadata: mixtralMetadata(o, vocab), tensors });
}
