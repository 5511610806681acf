// The library's options: the same as `moec run`'s flags, with the same defaults (the CLI reads its
// defaults from here), checked before anything loads or generates.
import { InvalidOptionError } from "./errors.ts";

export type Backend = "cpu" | "webgpu" | "gpujs";

export interface LoadOptions {
  /** The checkpoint, when the model argument is a spec or a compiled directory (`--weights`). */
  weights?: string;
  /** Max context in tokens (`--context`; default the model's). */
  context?: number;
  /** Scheme of every matrix for a safetensors checkpoint (`--quant`, default f32). */
  quant?: string;
  /** Threads for the kernels (`--threads`; default every core). */
  threads?: number;
  /** Device memory budget, bytes or a size such as "512MiB" (`--vram`). */
  vram?: number | string;
  /** Host memory for offloaded experts (`--host-memory`). */
  hostMemory?: number | string;
  /** Expert cache eviction (`--policy`, default lru). */
  policy?: "lru" | "lfu";
  /** Load the next layer's guessed experts ahead of use (default true; `--no-prefetch`). */
  prefetch?: boolean;
  /** The KV caches' element type (`--kv-type`: f32, f16 or q8_0; default f16, as llama.cpp). */
  kvType?: "f32" | "f16" | "q8_0";
  /** `--backend` (default cpu). A GPU backend steps its `parallel` sequences one after another. */
  backend?: Backend;
  /** Sequences generated at once, each with its own KV cache (`moec serve --parallel`, default 1). */
  parallel?: number;
  /** Calls allowed to wait for a free sequence before QueueFullError (default 64). */
  maxQueue?: number;
  /** A Jinja chat template to use instead of (or where there is none, as) the model's own. */
  chatTemplate?: string;
  /** Cancels the load. */
  signal?: AbortSignal;
}

export interface GenerateOptions {
  /** Tokens to generate at most (`-n`, default 64). */
  maxTokens?: number;
  /** 0 is greedy (default 0.8). */
  temperature?: number;
  /** Keep the k most likely tokens, 0 for all (default 40). */
  topK?: number;
  /** Keep the smallest set whose probability reaches p (default 0.95). */
  topP?: number;
  /** Drop tokens below p × the best one's probability (default 0.05). */
  minP?: number;
  /** Divide the logits of recent tokens by this (default 1: off). */
  repeatPenalty?: number;
  /** Makes sampling reproducible (default 0). */
  seed?: number;
  /** Strings that end generation; the text is cut before them. */
  stop?: readonly string[];
  /** Stops the generation: the call rejects (or the stream throws) an AbortError. */
  signal?: AbortSignal;
}

/** `moec run`'s defaults, for the CLI's flags and the library alike. */
export const GENERATE_DEFAULTS = {
  maxTokens: 64,
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  repeatPenalty: 1,
  seed: 0,
} as const;

export const DEFAULT_MAX_QUEUE = 64;

export type CheckedGenerate = Required<Omit<GenerateOptions, "signal" | "stop">> & {
  stop: string[];
  signal: AbortSignal | undefined;
};

type Rule = { integer?: boolean; min?: number; max?: number; above?: number; below?: number };

/** A number option: its value, or InvalidOptionError saying what was expected and what was found. */
export function checkNumber(option: string, value: unknown, rule: Rule = {}): number {
  const expected = [
    rule.integer ? "a whole number" : "a number",
    rule.min !== undefined ? `≥ ${rule.min}` : "",
    rule.above !== undefined ? `> ${rule.above}` : "",
    rule.max !== undefined ? `≤ ${rule.max}` : "",
    rule.below !== undefined ? `< ${rule.below}` : "",
  ]
    .filter(Boolean)
    .join(" ");
  const ok =
    typeof value === "number" &&
    Number.isFinite(value) &&
    (!rule.integer || Number.isInteger(value)) &&
    (rule.min === undefined || value >= rule.min) &&
    (rule.max === undefined || value <= rule.max) &&
    (rule.above === undefined || value > rule.above) &&
    (rule.below === undefined || value < rule.below);
  if (!ok)
    throw new InvalidOptionError(option, `expected ${expected}, found ${JSON.stringify(value) ?? value}`);
  return value as number;
}

/** The generation options with defaults filled in, each checked. */
export function checkGenerate(o: GenerateOptions = {}): CheckedGenerate {
  const d = GENERATE_DEFAULTS;
  const num = (k: keyof typeof d, rule: Rule) => checkNumber(k, o[k] ?? d[k], rule);
  const stop = o.stop ?? [];
  if (!Array.isArray(stop) || stop.some((s) => typeof s !== "string")) {
    throw new InvalidOptionError("stop", "expected an array of strings");
  }
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) {
    throw new InvalidOptionError("signal", "expected an AbortSignal");
  }
  return {
    maxTokens: num("maxTokens", { integer: true, min: 1 }),
    temperature: num("temperature", { min: 0 }),
    topK: num("topK", { integer: true, min: 0 }),
    topP: num("topP", { above: 0, max: 1 }),
    minP: num("minP", { min: 0, below: 1 }),
    repeatPenalty: num("repeatPenalty", { above: 0 }),
    seed: num("seed", { integer: true }),
    stop: stop.filter((s) => s !== ""),
    signal: o.signal,
  };
}
