// Builds the tokenizer from a GGUF file's metadata, reading the keys llama.cpp reads (llama_vocab::load)
// with its defaults: `tokenizer.ggml.model` "llama" is SentencePiece (spm.ts), "gpt2" and "gemma4"
// byte-level / SentencePiece-style BPE (bpe.ts) with the pre-tokenizer `tokenizer.ggml.pre` names, "bert"
// WordPiece (wpm.ts).
import { CheckpointError } from "../checkpoint/errors.ts";
import { type GgufValue, plainValue } from "../checkpoint/gguf-value.ts";
import { BpeTokenizer } from "./bpe.ts";
import { type SpmDataField, SpmTokenizer, TokenizerDataError } from "./spm.ts";
import type { Tokenizer } from "./tokenizer.ts";
import { UgmTokenizer } from "./ugm.ts";
import { WpmTokenizer } from "./wpm.ts";

export const TOKENIZER_KEYS = {
  model: "tokenizer.ggml.model",
  tokens: "tokenizer.ggml.tokens",
  scores: "tokenizer.ggml.scores",
  types: "tokenizer.ggml.token_type",
  bos: "tokenizer.ggml.bos_token_id",
  eos: "tokenizer.ggml.eos_token_id",
  unk: "tokenizer.ggml.unknown_token_id",
  addBos: "tokenizer.ggml.add_bos_token",
  addEos: "tokenizer.ggml.add_eos_token",
  addSpacePrefix: "tokenizer.ggml.add_space_prefix",
  merges: "tokenizer.ggml.merges",
  pre: "tokenizer.ggml.pre",
} as const satisfies Record<SpmDataField | "model" | "addSpacePrefix", string>;

const INTEGER_TYPES = new Set(["u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64"]);

/** llama.cpp's defaults for an SPM ("llama") vocabulary when the id keys are absent. */
const DEFAULT_IDS = { bos: 1, eos: 2, unk: 0 } as const;

/** The tokenizer models moec reads (`tokenizer.ggml.model`). */
export const TOKENIZER_MODELS = ["llama", "gpt2", "gemma4", "bert", "t5"] as const;

export function tokenizerFromGguf(metadata: ReadonlyMap<string, GgufValue>, file: string): Tokenizer {
  const fail = (key: string, problem: string): never => {
    throw new CheckpointError({ file, what: key, whatKind: "key", problem });
  };
  const get = (key: string): GgufValue | undefined => metadata.get(key);

  const model = get(TOKENIZER_KEYS.model);
  if (model === undefined) fail(TOKENIZER_KEYS.model, "missing: the file has no tokenizer");
  if (model!.type !== "string") fail(TOKENIZER_KEYS.model, `must be a string, not ${describe(model!)}`);
  const modelName = plainValue(model!) as string;
  if (!(TOKENIZER_MODELS as readonly string[]).includes(modelName)) {
    fail(
      TOKENIZER_KEYS.model,
      `tokenizer model ${JSON.stringify(modelName)} is not supported (only "llama", SentencePiece; "gpt2", byte-level BPE; "gemma4"; "bert", WordPiece; "t5", Unigram)`,
    );
  }
  const bpe = modelName === "gpt2" || modelName === "gemma4";
  const wpm = modelName === "bert";
  const ugm = modelName === "t5";

  const tokensValue = get(TOKENIZER_KEYS.tokens);
  if (tokensValue === undefined) fail(TOKENIZER_KEYS.tokens, "missing: the file has no vocabulary");
  if (tokensValue!.type !== "array" || tokensValue!.of !== "string") {
    fail(TOKENIZER_KEYS.tokens, `must be an array of strings, not ${describe(tokensValue!)}`);
  }
  const tokens = plainValue(tokensValue!) as string[];
  const n = tokens.length;
  if (n === 0) fail(TOKENIZER_KEYS.tokens, "the vocabulary is empty");

  // Scores: f32 or i32, at least one per token (llama.cpp ignores extra entries); absent → 0.
  let scores: number[] = new Array<number>(n).fill(0);
  const scoresValue = get(TOKENIZER_KEYS.scores);
  if (scoresValue !== undefined) {
    if (scoresValue.type !== "array" || (scoresValue.of !== "f32" && scoresValue.of !== "i32")) {
      fail(TOKENIZER_KEYS.scores, `must be an array of f32 or i32, not ${describe(scoresValue)}`);
    }
    const all = plainValue(scoresValue) as number[];
    if (all.length < n) fail(TOKENIZER_KEYS.scores, `${all.length} scores for ${n} tokens`);
    scores = all.slice(0, n);
  }

  // Token types: i32, at least one per token; absent → every token normal.
  let types: number[] = new Array<number>(n).fill(1);
  const typesValue = get(TOKENIZER_KEYS.types);
  if (typesValue !== undefined) {
    if (typesValue.type !== "array" || typesValue.of !== "i32") {
      fail(TOKENIZER_KEYS.types, `must be an array of i32, not ${describe(typesValue)}`);
    }
    const all = plainValue(typesValue) as number[];
    if (all.length < n) fail(TOKENIZER_KEYS.types, `${all.length} token types for ${n} tokens`);
    types = all.slice(0, n);
  }

  const defaults: Record<string, number | undefined> = ugm
    ? { eos: 1, unk: 2 }
    : wpm
      ? { bos: 101, unk: 100, sep: 102 }
      : bpe
        ? modelName === "gpt2"
          ? { bos: 11, eos: 11 }
          : {}
        : DEFAULT_IDS;
  const id = (field: "bos" | "eos" | "unk" | "eot" | "eom" | "sep"): number | undefined => {
    const key =
      field === "eot" || field === "eom"
        ? `tokenizer.ggml.${field}_token_id`
        : field === "sep"
          ? "tokenizer.ggml.seperator_token_id"
          : TOKENIZER_KEYS[field];
    const v = get(key);
    const fallback = () => {
      const d = defaults[field];
      return d !== undefined && d < n ? d : undefined;
    };
    if (v === undefined) return fallback();
    if (!INTEGER_TYPES.has(v.type)) fail(key, `must be an integer, not ${describe(v)}`);
    const x = plainValue(v);
    // -1 (0xFFFFFFFF as u32) is how converters write "no such token"; llama.cpp then keeps its default.
    if (x === -1 || x === 0xffffffff || x === -1n || x === 0xffffffffffffffffn) return fallback();
    if (typeof x !== "number" || x < 0 || x >= n) {
      fail(key, `token id ${x} is outside the vocabulary (0..${n - 1})`);
    }
    return x as number;
  };

  const flag = (key: string, fallback: boolean): boolean => {
    const v = get(key);
    if (v === undefined) return fallback;
    if (v.type !== "bool") fail(key, `must be a bool, not ${describe(v)}`);
    return plainValue(v!) as boolean;
  };

  const flagOrUndefined = (key: string): boolean | undefined =>
    get(key) === undefined ? undefined : flag(key, false);
  const stringKey = (key: string): string | undefined => {
    const v = get(key);
    if (v === undefined) return undefined;
    if (v.type !== "string") fail(key, `must be a string, not ${describe(v)}`);
    return plainValue(v) as string;
  };

  if (ugm) {
    const cmKey = "tokenizer.ggml.precompiled_charsmap";
    const cm = get(cmKey);
    if (cm !== undefined && (cm.type !== "array" || (cm.of !== "u8" && cm.of !== "i8"))) {
      fail(cmKey, `must be an array of u8 or i8, not ${describe(cm)}`);
    }
    try {
      return new UgmTokenizer({
        tokens,
        scores,
        types,
        charsmap: cm === undefined ? undefined : Uint8Array.from(plainValue(cm) as number[], (x) => x & 0xff),
        bos: id("bos"),
        eos: id("eos"),
        unk: id("unk"),
        addBos: flagOrUndefined(TOKENIZER_KEYS.addBos),
        addEos: flagOrUndefined(TOKENIZER_KEYS.addEos),
        addSpacePrefix: flagOrUndefined(TOKENIZER_KEYS.addSpacePrefix),
        removeExtraSpaces: flagOrUndefined("tokenizer.ggml.remove_extra_whitespaces"),
        modelName: stringKey("general.name"),
        pre: stringKey(TOKENIZER_KEYS.pre),
        architecture: stringKey("general.architecture"),
      });
    } catch (e) {
      if (e instanceof TokenizerDataError)
        fail(e.field === "tokens" && /charsmap/.test(e.message) ? cmKey : TOKENIZER_KEYS[e.field], e.message);
      throw e;
    }
  }

  if (wpm) {
    const lowercase = flagOrUndefined("tokenizer.ggml.normalizer.lowercase");
    try {
      return new WpmTokenizer({
        tokens,
        types: typesValue === undefined ? undefined : types,
        bos: id("bos"),
        eos: id("eos"),
        unk: id("unk"),
        sep: id("sep"),
        addBos: flagOrUndefined(TOKENIZER_KEYS.addBos),
        addSpacePrefix: flagOrUndefined(TOKENIZER_KEYS.addSpacePrefix),
        lowercase,
        stripAccents: flagOrUndefined("tokenizer.ggml.normalizer.strip_accents") ?? lowercase,
        modelName: stringKey("general.name"),
        pre: stringKey(TOKENIZER_KEYS.pre),
        architecture: stringKey("general.architecture"),
      });
    } catch (e) {
      if (e instanceof TokenizerDataError) fail(TOKENIZER_KEYS[e.field], e.message);
      throw e;
    }
  }

  if (bpe) {
    const mergesValue = get(TOKENIZER_KEYS.merges);
    if (mergesValue === undefined) fail(TOKENIZER_KEYS.merges, "missing: a BPE vocabulary needs its merges");
    if (mergesValue!.type !== "array" || mergesValue!.of !== "string") {
      fail(TOKENIZER_KEYS.merges, `must be an array of strings, not ${describe(mergesValue!)}`);
    }
    try {
      return new BpeTokenizer({
        tokens,
        types: typesValue === undefined ? undefined : types,
        merges: plainValue(mergesValue!) as string[],
        pre: stringKey(TOKENIZER_KEYS.pre),
        model: modelName as "gpt2" | "gemma4",
        bos: id("bos"),
        eos: id("eos"),
        unk: id("unk"),
        eot: id("eot"),
        eom: id("eom"),
        addBos: flagOrUndefined(TOKENIZER_KEYS.addBos),
        addEos: flagOrUndefined(TOKENIZER_KEYS.addEos),
        addSpacePrefix: flagOrUndefined(TOKENIZER_KEYS.addSpacePrefix),
        modelName: stringKey("general.name"),
        architecture: stringKey("general.architecture"),
      });
    } catch (e) {
      if (e instanceof TokenizerDataError) fail(TOKENIZER_KEYS[e.field], e.message);
      throw e;
    }
  }

  const data = {
    tokens,
    scores,
    types,
    bos: id("bos"),
    eos: id("eos"),
    unk: id("unk"),
    addBos: flag(TOKENIZER_KEYS.addBos, true),
    addEos: flag(TOKENIZER_KEYS.addEos, false),
    addSpacePrefix: flag(TOKENIZER_KEYS.addSpacePrefix, true),
    // llama.cpp never falls back to the unknown token: text needing a missing byte token fails.
    unkFallback: false,
    eot: id("eot"),
    eom: id("eom"),
    modelName: stringKey("general.name"),
    pre: stringKey(TOKENIZER_KEYS.pre),
    architecture: stringKey("general.architecture"),
  };
  try {
    return new SpmTokenizer(data);
  } catch (e) {
    if (e instanceof TokenizerDataError) fail(TOKENIZER_KEYS[e.field], e.message);
    throw e;
  }
}

function describe(v: GgufValue): string {
  return v.type === "array" ? `an array of ${v.of}` : v.type;
}
