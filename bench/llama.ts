// moec against llama.cpp (node-llama-cpp's prebuilt CPU binaries) on the same GGUF files, in one process:
// prefill (a 64-token and a 2048-token prompt) and decode tokens per second (after the short prompt, at position
// 2048 and at 8192), and moec's fraction of llama.cpp's speed. Both keep the KV cache in f16 (their default).
// The bench model is Mixtral-shaped: hidden 512, 8 layers, 8 heads / 2 KV heads, ffn 1408, 8 experts top-2,
// vocab 32000; its random weights are written once per type by moec's writer into the cache directory.
// Run by `npm run bench` after bench/main.ts, or alone: `npx tsx bench/llama.ts [f32 q8_0 q4_0]`.
// A benchmark, not a test: it asserts nothing, it reports.
import { existsSync, mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { table as newTable } from "../cli/color.ts";
import { quantizeGguf, uniformChoice } from "../runtime/checkpoint/quantize.ts";
import { writeRandomMixtralGguf } from "../runtime/checkpoint/random-gguf.ts";
import { getScheme } from "../runtime/quant/registry.ts";
import { argmax, asTokens, getLlamaCpu, loadLlamaCpp, loadMoec } from "../test/llama/engines.ts";
import { benchMemory } from "./memory.ts";

type EvaluateOptions = Extract<import("node-llama-cpp").ControlledEvaluateInputItem, unknown[]>[1];

const BENCH = {
  hidden: 512,
  layers: 8,
  heads: 8,
  kvHeads: 2,
  ffn: 1408,
  experts: 8,
  topK: 2,
  vocab: 32000,
  context: 16384,
  ropeTheta: 1e6,
  eps: 1e-5,
  seed: 2024,
} as const;
export const PROMPT_TOKENS = 64;
const DECODE_TOKENS = 32;
/** Each figure is the best of this many rounds: the machine is shared, and a ratio is what counts. */
const ROUNDS = 3;
/** Decode is also timed this deep into the context, where attention reads a long KV cache; a prompt of this
 * many tokens is the long prefill. */
export const LONG = 2048;
/** And deeper still, where the KV cache is as big as the weights a token reads. */
export const DEEP = 8192;
export const CONTEXT = DEEP + DECODE_TOKENS;
/** Both engines at each thread count; 2 is the comparison the issues set their bars on. */
const THREADS = [1, 2] as const;

/** The bench model's file for one weight type, written on first use into the user's cache directory. */
export function benchModelPath(type: string): string {
  const dir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "moec");
  const file = join(
    dir,
    `bench-${type}-h${BENCH.hidden}-l${BENCH.layers}-e${BENCH.experts}-v${BENCH.vocab}-c${BENCH.context}-s${BENCH.seed}.gguf`,
  );
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    process.stderr.write(`writing the ${type} bench model to ${file}\n`);
    if (getScheme(type).blockSize <= 32) {
      writeRandomMixtralGguf(file, { ...BENCH, type, name: `moec bench (${type}, random weights)` });
    } else {
      // ffn 1408 is not a multiple of the k-quants' 256: quantize the f32 model as llama.cpp would, the
      // down projections falling back to a scheme whose block fits (q4_k → q5_0).
      quantizeGguf(benchModelPath("f32"), file, { choose: uniformChoice(type) });
    }
  }
  return file;
}

/** A fixed prompt of ordinary pieces (no BOS/EOS/byte tokens), the same for both engines. */
const prompt = Array.from({ length: PROMPT_TOKENS }, (_, i) => 300 + ((i * 7919) % 30000));
/** The long prompt: LONG tokens of the same kind. */
const longPrompt = Array.from({ length: LONG }, (_, i) => 300 + ((i * 7919) % 30000));

export interface Speed {
  prefill: number;
  decode: number;
  /** Decode at position LONG. */
  long: number;
  /** Prefill of the LONG-token prompt, and decode at position DEEP (0 when the run leaves them out). */
  prefillLong: number;
  deep: number;
}

/** The best of several rounds. */
function best(rounds: Speed[]): Speed {
  const most = (k: keyof Speed) => Math.max(...rounds.map((r) => r[k]));
  return {
    prefill: most("prefill"),
    decode: most("decode"),
    long: most("long"),
    prefillLong: most("prefillLong"),
    deep: most("deep"),
  };
}

/** What a bench run times beyond the short prompt and the decode at LONG. */
export interface BenchOptions {
  /** The LONG-token prefill and the decode at DEEP (the file's context must hold DEEP + 32; default true). */
  deep?: boolean;
}

interface Engine {
  /** Prefill the prompt into an empty cache, then decode greedily after it. */
  round(): Promise<Speed>;
  close(): Promise<void>;
}

async function moecEngine(path: string, threads: number, deep: boolean): Promise<Engine> {
  // moec's default f16 cache, as llama.cpp's.
  const m = await loadMoec(path, deep ? CONTEXT : LONG + DECODE_TOKENS, { threads, kvType: "f16" });
  const model = m.model;
  for (let p = 0; p < 4; p++) model.step(prompt[p]!, p); // warm-up: JIT
  model.prefill(prompt.slice(0, 8));
  return {
    async round() {
      // Positions are written in order, so a round simply overwrites the previous round's cache.
      let t = performance.now();
      // The batched prefill, as `moec run` feeds a prompt.
      let logits: Float32Array = model.prefill(prompt, 0);
      const prefill = prompt.length / ((performance.now() - t) / 1000);
      t = performance.now();
      for (let i = 0; i < DECODE_TOKENS; i++) logits = model.step(argmax(logits), prompt.length + i);
      const decode = DECODE_TOKENS / ((performance.now() - t) / 1000);
      let prefillLong = 0;
      if (deep) {
        t = performance.now();
        logits = model.prefill(longPrompt, 0);
        prefillLong = LONG / ((performance.now() - t) / 1000);
      }
      // Attention's cost depends on the position, not on what the cache holds: decode straight at LONG (after
      // the long prompt, when it ran) and at DEEP.
      const at = (p0: number) => {
        const t0 = performance.now();
        for (let i = 0; i < DECODE_TOKENS; i++) logits = model.step(argmax(logits), p0 + i);
        return DECODE_TOKENS / ((performance.now() - t0) / 1000);
      };
      const long = at(LONG);
      return { prefill, decode, long, prefillLong, deep: deep ? at(DEEP) : 0 };
    },
    async close() {
      m.model.close();
      m.close();
    },
  };
}

async function llamaEngine(path: string, threads: number, deep: boolean): Promise<Engine> {
  // llama.cpp's defaults (f16 KV cache, flash attention as it decides) but for the threads and context.
  const contextSize = deep ? CONTEXT : LONG + DECODE_TOKENS;
  const l = await loadLlamaCpp(path, { contextSize, threads, kvType: "F16" });
  const seq = l.sequence;
  const next: EvaluateOptions = { generateNext: { token: true, options: { temperature: 0 } } };
  const run = async (tokens: readonly number[]): Promise<number> => {
    const ids = asTokens(tokens);
    const out = await seq.controlledEvaluate(ids.map((t, i) => (i === ids.length - 1 ? [t, next] : t)));
    const token = out.at(-1)?.next.token;
    if (token === undefined || token === null) throw new Error("llama.cpp returned no token");
    return token;
  };
  await run(prompt.slice(0, 8)); // warm-up
  return {
    async round() {
      await seq.clearHistory();
      let t = performance.now();
      let token = await run(prompt);
      const prefill = prompt.length / ((performance.now() - t) / 1000);
      t = performance.now();
      for (let i = 0; i < DECODE_TOKENS; i++) token = await run([token]);
      const decode = DECODE_TOKENS / ((performance.now() - t) / 1000);
      // The long prompt (timed when the run includes it), then decode at LONG; then fill the cache to DEEP
      // (untimed) and decode there.
      await seq.clearHistory();
      t = performance.now();
      token = await run(longPrompt);
      const prefillLong = deep ? LONG / ((performance.now() - t) / 1000) : 0;
      const decodeHere = async () => {
        const t0 = performance.now();
        for (let i = 0; i < DECODE_TOKENS; i++) token = await run([token]);
        return DECODE_TOKENS / ((performance.now() - t0) / 1000);
      };
      const long = await decodeHere();
      if (!deep) return { prefill, decode, long, prefillLong, deep: 0 };
      // The cache holds LONG + DECODE_TOKENS positions: fill it up to DEEP.
      const filler = Array.from({ length: DEEP - LONG - DECODE_TOKENS }, (_, i) => longPrompt[i % LONG]!);
      token = await run(filler);
      return { prefill, decode, long, prefillLong, deep: await decodeHere() };
    },
    close: () => l.dispose(),
  };
}

/** moec and llama.cpp at each thread count on one file, their rounds interleaved so all see the same machine. */
export async function benchFile(
  path: string,
  { deep = true }: BenchOptions = {},
): Promise<{ moec: Speed[]; llama: Speed[] }> {
  const engines: Engine[] = [];
  try {
    for (const threads of THREADS) engines.push(await moecEngine(path, threads, deep));
    for (const threads of THREADS) engines.push(await llamaEngine(path, threads, deep));
    const rounds: Speed[][] = engines.map(() => []);
    for (let r = 0; r < ROUNDS; r++) {
      for (const [i, e] of engines.entries()) rounds[i]!.push(await e.round());
    }
    const all = rounds.map(best);
    return { moec: all.slice(0, THREADS.length), llama: all.slice(THREADS.length) };
  } finally {
    for (const e of engines) await e.close();
  }
}

export async function benchAgainstLlama(types: readonly string[]): Promise<void> {
  await getLlamaCpu();
  const head = [
    "type",
    "threads",
    "decode moec",
    "llama.cpp",
    "ratio",
    `decode @${LONG} moec`,
    "llama.cpp",
    "ratio",
    `decode @${DEEP} moec`,
    "llama.cpp",
    "ratio",
    "prefill moec",
    "llama.cpp",
    "ratio",
    `prefill ${LONG} moec`,
    "llama.cpp",
    "ratio",
  ];
  const table = newTable({ head, style: { head: [] } });
  for (const type of types) {
    const { moec, llama } = await benchFile(benchModelPath(type));
    THREADS.forEach((threads, i) => {
      const m = moec[i]!;
      const l = llama[i]!;
      const three = (k: keyof Speed) => [m[k].toFixed(1), l[k].toFixed(1), `${(m[k] / l[k]).toFixed(2)}×`];
      table.push([
        type,
        threads,
        ...three("decode"),
        ...three("long"),
        ...three("deep"),
        ...three("prefill"),
        ...three("prefillLong"),
      ]);
    });
  }
  console.log(
    `moec vs llama.cpp on the bench model (hidden ${BENCH.hidden}, ${BENCH.layers} layers, ${BENCH.heads} heads / ` +
      `${BENCH.kvHeads} KV, ffn ${BENCH.ffn}, ${BENCH.experts} experts top-${BENCH.topK}, vocab ${BENCH.vocab}), ` +
      `the same GGUF files, tokens per second;\neach figure is the best of ${ROUNDS} rounds, the engines' rounds ` +
      `interleaved. Ratio = moec / llama.cpp. Decode: ${DECODE_TOKENS} greedy tokens after a ${PROMPT_TOKENS}-token ` +
      `prompt, and again at positions ${LONG} and ${DEEP}, both with f16 KV caches. Prefill: the ${PROMPT_TOKENS}-token ` +
      `and the ${LONG}-token prompt through the first token's logits (moec's batched prefill, llama.cpp's batches).`,
  );
  console.log(table.toString());
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const args = process.argv.slice(2);
  const types = args.length ? args : ["f32", "q8_0", "q4_0", "q4_k"];
  await benchAgainstLlama(types);
  benchMemory(
    types.map((type) => ({ type, path: benchModelPath(type) })),
    CONTEXT,
  );
}
