// moec and llama.cpp (through node-llama-cpp's low-level sequence API) on one GGUF file: the logits at
// every position of a prompt, then greedy decoding with the logits of every step. Shared by the
// llama.cpp comparison tests and `bench/llama.ts`.
import { loadForRun } from "../../cli/model-source.ts";
import { compileModel } from "../../compiler/compile.ts";
import { importGguf } from "../../compiler/import.ts";
import type { CheckedQuant } from "../../compiler/lang/check.ts";
import { compileSource } from "../../compiler/lang/frontend.ts";
import { pickModel, pickQuant } from "../../compiler/select.ts";
import { type GgufFile, openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import { GgufWeights } from "../../runtime/checkpoint/gguf-weights.ts";
import type { RandomMixtralOptions } from "../../runtime/checkpoint/random-gguf.ts";
import type { KvType } from "../../runtime/kv-type.ts";
import { type CompiledModule, importModuleSource, ModelInstance } from "../../runtime/model.ts";
import { tokenizerFromGguf } from "../../runtime/tokenizer/from-gguf.ts";
import type { Tokenizer } from "../../runtime/tokenizer/tokenizer.ts";
import { ggmlVariant, mappedQuant, registerGgmlVariants } from "./ggml-numerics.ts";

/** One run: `logits[p]` predicts the token after position p (prompt positions, then generated ones). */
export interface Trace {
  tokens: number[];
  logits: Float32Array[];
}

export function argmax(l: Float32Array): number {
  let best = 0;
  for (let j = 1; j < l.length; j++) if (l[j]! > l[best]!) best = j;
  return best;
}

export interface MoecModel {
  tokenizer: Tokenizer;
  model: ModelInstance;
  close(): void;
}

/** Compiles with the ggml-arithmetic variants of the file's q8_0/q4_0/f16 weights (ggml-numerics.ts). */
async function compileGgml(
  file: GgufFile,
  maxContext: number,
  kvType?: KvType,
): Promise<{ module: CompiledModule; weights: GgufWeights }> {
  const spec = compileSource(importGguf(file).source, `${file.path}.moe`);
  const model = pickModel(spec);
  registerGgmlVariants();
  const quant = mappedQuant(pickQuant(spec, model, undefined, true) as CheckedQuant, model, ggmlVariant);
  const compiled = compileModel(spec, model, { quant, maxContext, kvType });
  const module = await importModuleSource(compiled.files["model.js"]!);
  // The file holds the stock types; the variants read the same bytes.
  const stock = compiled.manifest.weights.map((w) => ({ ...w, scheme: w.scheme.replace(/_ggml$/, "") }));
  return { module, weights: new GgufWeights(file, { weights: stock }) };
}

/**
 * The model `moec run --weights FILE` runs: the architecture imported from the file's metadata,
 * compiled in memory, each weight in its type in the file. With `ggml: true`, the q8_0, q4_0 and
 * f16 weights use the test-only variants that round activations the way ggml does. The KV cache is f32
 * unless `kvType` says otherwise, as the comparisons' llama.cpp contexts keep theirs (loadLlamaCpp).
 */
export async function loadMoec(
  path: string,
  maxContext: number,
  opts: { ggml?: boolean; threads?: number; kvType?: KvType } = {},
): Promise<MoecModel> {
  const threads = opts.threads ?? 1;
  const kvType = opts.kvType ?? "f32";
  if (!opts.ggml) {
    const loaded = await loadForRun(undefined, path, { maxContext, kvType });
    return {
      tokenizer: loaded.tokenizer,
      model: new ModelInstance(loaded.module, loaded.weights, { threads }),
      close: loaded.close,
    };
  }
  const file = openGguf(path);
  try {
    const { module, weights } = await compileGgml(file, maxContext, kvType);
    return {
      tokenizer: tokenizerFromGguf(file.metadata, path),
      model: new ModelInstance(module, weights, { threads }),
      close: () => file.close(),
    };
  } catch (e) {
    file.close();
    throw e;
  }
}

/** Feeds `prompt` one token at a time, then decodes `n` tokens greedily. */
export function moecGreedy(m: ModelInstance, prompt: readonly number[], n: number): Trace {
  const logits: Float32Array[] = [];
  const tokens: number[] = [];
  let pos = 0;
  for (const t of prompt) logits.push(m.step(t, pos++).slice());
  for (let i = 0; i < n; i++) {
    const next = argmax(logits.at(-1)!);
    tokens.push(next);
    if (i + 1 < n) logits.push(m.step(next, pos++).slice());
  }
  return { tokens, logits };
}

/** The prompt through the batched prefill (`moec run`'s path), then `n` greedy tokens; the logits are the
 * last prompt position's and each decoded token's. */
export function moecGreedyBatched(m: ModelInstance, prompt: readonly number[], n: number): Trace {
  const logits: Float32Array[] = [m.prefill(prompt, 0).slice()];
  const tokens: number[] = [];
  let pos = prompt.length;
  for (let i = 0; i < n; i++) {
    const next = argmax(logits.at(-1)!);
    tokens.push(next);
    if (i + 1 < n) logits.push(m.step(next, pos++).slice());
  }
  return { tokens, logits };
}

type NodeLlamaCpp = typeof import("node-llama-cpp");
type EvaluateItem = import("node-llama-cpp").ControlledEvaluateInputItem;
/** node-llama-cpp's token ids are branded numbers. */
export type Token = import("node-llama-cpp").Token;
export const asTokens = (ids: readonly number[]): Token[] => ids as Token[];
type Llama = Awaited<ReturnType<NodeLlamaCpp["getLlama"]>>;
type LlamaModel = Awaited<ReturnType<Llama["loadModel"]>>;
type LlamaContext = Awaited<ReturnType<LlamaModel["createContext"]>>;
type LlamaSequence = ReturnType<LlamaContext["getSequence"]>;

let llamaPromise: Promise<Llama> | undefined;

/**
 * node-llama-cpp's prebuilt CPU binaries from npm: never a local build, never a GPU. maxThreads 0 makes
 * each context use exactly the threads it asks for.
 */
export function getLlamaCpu(): Promise<Llama> {
  llamaPromise ??= (async () => {
    const lib = await import("node-llama-cpp");
    return lib.getLlama({ gpu: false, build: "never", logLevel: lib.LlamaLogLevel.error, maxThreads: 0 });
  })();
  return llamaPromise;
}

export interface LlamaCppOptions {
  contextSize: number;
  threads: number;
  /** K and V cache type; "F32" (default) removes llama.cpp's default f16 rounding of K and V. A quantized
   * V cache needs flash attention, which then is on. */
  kvType?: "F32" | "F16" | "Q8_0";
  batchSize?: number;
}

/** moec's name for a llama.cpp cache type. */
export function moecKvType(t: LlamaCppOptions["kvType"]): KvType {
  return t === "F16" ? "f16" : t === "Q8_0" ? "q8_0" : "f32";
}

export interface LlamaCppModel {
  model: LlamaModel;
  context: LlamaContext;
  /** The context's one sequence; every run starts by clearing it. */
  sequence: LlamaSequence;
  dispose(): Promise<void>;
}

export async function loadLlamaCpp(path: string, o: LlamaCppOptions): Promise<LlamaCppModel> {
  const llama = await getLlamaCpu();
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const kv = o.kvType ?? "F32";
  try {
    const context = await model.createContext({
      contextSize: o.contextSize,
      batchSize: o.batchSize ?? Math.min(o.contextSize, 512),
      sequences: 1,
      threads: o.threads,
      flashAttention: kv === "Q8_0",
      experimentalKvCacheKeyType: kv,
      experimentalKvCacheValueType: kv,
    });
    return {
      model,
      context,
      sequence: context.getSequence(),
      async dispose() {
        await context.dispose();
        await model.dispose();
      },
    };
  } catch (e) {
    await model.dispose();
    throw e;
  }
}

const withLogits = (t: number): EvaluateItem => [t as Token, { generateNext: { logits: true } }];

function denseLogits(map: Map<number, number> | undefined, vocab: number): Float32Array {
  if (!map || map.size !== vocab) throw new Error(`llama.cpp gave ${map?.size ?? 0} logits, not ${vocab}`);
  const out = new Float32Array(vocab);
  for (const [k, v] of map) out[k] = v;
  return out;
}

/** llama.cpp's raw logits at every prompt position (one batch), then greedy decoding one token per call. */
export async function llamaGreedy(
  m: LlamaCppModel,
  prompt: readonly number[],
  n: number,
  vocab: number,
): Promise<Trace> {
  const seq = m.sequence;
  await seq.clearHistory();
  const first = await seq.controlledEvaluate(prompt.map(withLogits));
  const logits = first.map((o) => denseLogits(o?.next.logits, vocab));
  const tokens: number[] = [];
  for (let i = 0; i < n; i++) {
    const next = argmax(logits.at(-1)!);
    tokens.push(next);
    if (i + 1 < n) {
      const out = await seq.controlledEvaluate([withLogits(next)]);
      logits.push(denseLogits(out[0]?.next.logits, vocab));
    }
  }
  return { tokens, logits };
}

// ---------------------------------------------------------------- comparing the two on one file

/**
 * How the comparison tests shape a random file so that greedy decoding is decisive under rounding
 * differences (see compare.test.ts): every token raises one successor's logit by `peak` times its
 * cosine with the hidden state, embeddings of rms `embedRms` make the token the main part of the
 * residual stream (expert choices rarely near a tie), and a router scaled by 4 makes the chosen
 * experts' weights unequal.
 */
export function decisiveShape(hidden: number, embedRms = 4, peak = 12): Partial<RandomMixtralOptions> {
  return { headScale: 1, successorPeak: peak, embedScale: embedRms * Math.sqrt(hidden), routerScale: 4 };
}

export function softmax(l: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of l) max = Math.max(max, v);
  let z = 0;
  for (const v of l) z += Math.exp(v - max);
  return Float64Array.from(l, (v) => Math.exp(v - max) / z);
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

/**
 * Positions at which both runs were fed the same tokens: the prompt's and those after the common
 * prefix of the `generated` greedy tokens.
 */
export function comparable(promptLength: number, generated: number, a: Trace, b: Trace): number {
  let same = 0;
  while (same < generated && a.tokens[same] === b.tokens[same]) same++;
  return Math.min(promptLength + same, a.logits.length, b.logits.length);
}

/** moec's trace against llama.cpp's, at every comparable position. */
export interface Agreement {
  /** Over the generated steps: llama.cpp's top logit minus its second. */
  minMargin: number;
  /** Per compared position: the largest |Δlogit|, and over llama.cpp's top 5 the largest |Δp| and |Δ ln p|. */
  logit: number[];
  dp: number[];
  dlogp: number[];
}

export function agreement(promptLength: number, generated: number, ours: Trace, theirs: Trace): Agreement {
  const m: Agreement = { minMargin: Infinity, logit: [], dp: [], dlogp: [] };
  const n = comparable(promptLength, generated, ours, theirs);
  for (let p = 0; p < n; p++) {
    const a = ours.logits[p]!;
    const b = theirs.logits[p]!;
    m.logit.push(maxAbsDiff(a, b));
    if (p >= promptLength - 1) {
      const sorted = Float32Array.from(b).sort().reverse();
      m.minMargin = Math.min(m.minMargin, sorted[0]! - sorted[1]!);
    }
    const pa = softmax(a);
    const pb = softmax(b);
    let dp = 0;
    let dlogp = 0;
    for (const t of [...pb.keys()].sort((x, y) => pb[y]! - pb[x]!).slice(0, 5)) {
      dp = Math.max(dp, Math.abs(pa[t]! - pb[t]!));
      dlogp = Math.max(dlogp, Math.abs(Math.log(pa[t]!) - Math.log(pb[t]!)));
    }
    m.dp.push(dp);
    m.dlogp.push(dlogp);
  }
  return m;
}

/** Both engines on one file: the prompt as each tokenizes it, and `generate` greedy tokens from moec's ids. */
export interface BothRuns {
  prompt: number[];
  llamaPrompt: number[];
  ours: Trace;
  /** The same model with the prompt through the batched prefill. */
  batched: Trace;
  theirs: Trace;
}

export async function runBoth(
  path: string,
  o: { text: string; generate: number; vocab: number } & LlamaCppOptions,
): Promise<BothRuns> {
  // moec stores the KV cache as llama.cpp does here: f32 unless the comparison asks for f16 or q8_0.
  const moec = await loadMoec(path, o.contextSize, { kvType: moecKvType(o.kvType) });
  try {
    const llama = await loadLlamaCpp(path, o);
    try {
      const prompt = moec.tokenizer.encode(o.text, { addBos: true });
      const bos = llama.model.tokens.bos;
      const llamaPrompt = [
        ...(llama.model.tokens.shouldPrependBosToken && bos !== null ? [bos] : []),
        ...llama.model.tokenize(o.text),
      ];
      const ours = moecGreedy(moec.model, prompt, o.generate);
      const batched = moecGreedyBatched(moec.model, prompt, o.generate);
      const theirs = await llamaGreedy(llama, prompt, o.generate, o.vocab);
      return { prompt, llamaPrompt, ours, batched, theirs };
    } finally {
      await llama.dispose();
    }
  } finally {
    moec.close();
  }
}
