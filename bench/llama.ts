// moec against llama.cpp (node-llama-cpp's prebuilt CPU binaries) on the same GGUF files, in one process:
// prefill (a 64-token prompt) and decode tokens per second, and moec's fraction of llama.cpp's speed.
// The bench model is Mixtral-shaped: hidden 512, 8 layers, 8 heads / 2 KV heads, ffn 1408, 8 experts top-2,
// vocab 32000; its random weights are written once per type by moec's writer into the cache directory.
// Run by `npm run bench` after bench/main.ts, or alone: `npx tsx bench/llama.ts [f32 q8_0 q4_0]`.
// A benchmark, not a test: it asserts nothing, it reports.
import { existsSync, mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import Table from "cli-table3";
import { writeRandomMixtralGguf } from "../runtime/checkpoint/random-gguf.ts";
import { argmax, asTokens, getLlamaCpu, loadLlamaCpp, loadMoec } from "../test/llama/engines.ts";

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
  context: 4096,
  ropeTheta: 1e6,
  eps: 1e-5,
  seed: 2024,
} as const;
const PROMPT_TOKENS = 64;
const DECODE_TOKENS = 32;
/** Each figure is the best of this many rounds: the machine is shared, and a ratio is what counts. */
const ROUNDS = 3;
const CONTEXT = 256;
/** 2 threads is the comparison the issue asks for; 1 thread matches moec's single thread. */
const LLAMA_THREADS = [2, 1] as const;

/** The bench model's file for one weight type, written on first use into the user's cache directory. */
export function benchModelPath(type: string): string {
  const dir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "moec");
  const file = join(
    dir,
    `bench-${type}-h${BENCH.hidden}-l${BENCH.layers}-e${BENCH.experts}-v${BENCH.vocab}-s${BENCH.seed}.gguf`,
  );
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    process.stderr.write(`writing the ${type} bench model to ${file}\n`);
    writeRandomMixtralGguf(file, { ...BENCH, type, name: `moec bench (${type}, random weights)` });
  }
  return file;
}

/** A fixed prompt of ordinary pieces (no BOS/EOS/byte tokens), the same for both engines. */
const prompt = Array.from({ length: PROMPT_TOKENS }, (_, i) => 300 + ((i * 7919) % 30000));

interface Speed {
  prefill: number;
  decode: number;
}

/** The best of several rounds. */
function best(rounds: Speed[]): Speed {
  return {
    prefill: Math.max(...rounds.map((r) => r.prefill)),
    decode: Math.max(...rounds.map((r) => r.decode)),
  };
}

interface Engine {
  /** Prefill the prompt into an empty cache, then decode greedily after it. */
  round(): Promise<Speed>;
  close(): Promise<void>;
}

async function moecEngine(path: string): Promise<Engine> {
  const m = await loadMoec(path, CONTEXT);
  const model = m.model;
  for (let p = 0; p < 4; p++) model.step(prompt[p]!, p); // warm-up: JIT
  return {
    async round() {
      // Positions are written in order, so a round simply overwrites the previous round's cache.
      let t = performance.now();
      let logits: Float32Array = new Float32Array(0);
      for (let p = 0; p < prompt.length; p++) logits = model.step(prompt[p]!, p);
      const prefill = prompt.length / ((performance.now() - t) / 1000);
      t = performance.now();
      for (let i = 0; i < DECODE_TOKENS; i++) logits = model.step(argmax(logits), prompt.length + i);
      return { prefill, decode: DECODE_TOKENS / ((performance.now() - t) / 1000) };
    },
    async close() {
      m.close();
    },
  };
}

async function llamaEngine(path: string, threads: number): Promise<Engine> {
  // llama.cpp's defaults (f16 KV cache, flash attention as it decides) but for the threads and context.
  const l = await loadLlamaCpp(path, { contextSize: CONTEXT, threads, kvType: "F16" });
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
      return { prefill, decode: DECODE_TOKENS / ((performance.now() - t) / 1000) };
    },
    close: () => l.dispose(),
  };
}

/** moec and llama.cpp (at each thread count) on one file, their rounds interleaved so all see the same machine. */
async function benchFile(path: string): Promise<{ moec: Speed; llama: Speed[] }> {
  const engines: Engine[] = [];
  try {
    engines.push(await moecEngine(path));
    for (const threads of LLAMA_THREADS) engines.push(await llamaEngine(path, threads));
    const rounds: Speed[][] = engines.map(() => []);
    for (let r = 0; r < ROUNDS; r++) {
      for (const [i, e] of engines.entries()) rounds[i]!.push(await e.round());
    }
    const [moec, ...llama] = rounds.map(best);
    return { moec: moec!, llama };
  } finally {
    for (const e of engines) await e.close();
  }
}

export async function benchAgainstLlama(types: readonly string[]): Promise<void> {
  await getLlamaCpu();
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
  const head = (what: string) => [
    "type",
    `moec ${what} tok/s`,
    ...LLAMA_THREADS.flatMap((t) => [`llama.cpp ${t} thread${t > 1 ? "s" : ""}`, "ratio"]),
  ];
  const decode = new Table({ head: head("decode"), style: { head: [] } });
  const prefill = new Table({ head: head("prefill"), style: { head: [] } });
  for (const type of types) {
    const { moec, llama } = await benchFile(benchModelPath(type));
    decode.push([
      type,
      moec.decode.toFixed(1),
      ...llama.flatMap((l) => [l.decode.toFixed(1), ratio(moec.decode, l.decode)]),
    ]);
    prefill.push([
      type,
      moec.prefill.toFixed(1),
      ...llama.flatMap((l) => [l.prefill.toFixed(1), ratio(moec.prefill, l.prefill)]),
    ]);
  }
  console.log(
    `moec vs llama.cpp on the bench model (hidden ${BENCH.hidden}, ${BENCH.layers} layers, ${BENCH.heads} heads / ` +
      `${BENCH.kvHeads} KV, ffn ${BENCH.ffn}, ${BENCH.experts} experts top-${BENCH.topK}, vocab ${BENCH.vocab}), ` +
      `the same GGUF files;\neach figure is the best of ${ROUNDS} rounds, the engines' rounds interleaved. ` +
      `Ratio = moec / llama.cpp.\n` +
      `moec runs on one thread: its TypeScript kernels are single-threaded for now, and it prefills token by token. ` +
      `llama.cpp prefills in one batch.`,
  );
  console.log(`decode: ${DECODE_TOKENS} greedy tokens after the prompt`);
  console.log(decode.toString());
  console.log(`prefill: a ${PROMPT_TOKENS}-token prompt, through the first token's logits`);
  console.log(prefill.toString());
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const args = process.argv.slice(2);
  await benchAgainstLlama(args.length ? args : ["f32", "q8_0", "q4_0"]);
}
