// Decoding several sequences at once (what `moec serve --parallel N` does every round) against llama.cpp's
// llama-batched-bench on the same file: generated tokens/s over all sequences, generation only (each
// sequence's 8-token prompt is read first and not timed), with 1, 4 and 8 sequences. Each engine at 1 and 2
// threads, best of 3 interleaved rounds; the gain is each engine's best at N sequences over its best at 1.
// Run by `npm run bench`, or alone: `npx tsx bench/batched.ts [FILE.gguf …]`. A benchmark: it reports.
import { execFileSync } from "node:child_process";
import { pathToFileURL } from "node:url";
import { table as newTable } from "../cli/color.ts";
import { loadForRun } from "../cli/model-source.ts";
import { ModelInstance } from "../runtime/model.ts";
import { llamaTool } from "./llama-quantize.ts";

const STREAMS = [1, 4, 8] as const;
const THREADS = [1, 2] as const;
const PROMPT = 8;
const STEPS = 32;
const ROUNDS = 3;

/** A model loaded for the bench, with its WebAssembly warmed up (V8 optimizes a kernel once it is hot). */
async function moecEngine(path: string, threads: number) {
  const loaded = await loadForRun(undefined, path, { maxContext: 512 });
  const m = new ModelInstance(loaded.module, loaded.weights, { threads, sequences: Math.max(...STREAMS) });
  const argmax = (l: Float32Array) => {
    let best = 0;
    for (let i = 1; i < l.length; i++) if (l[i]! > l[best]!) best = i;
    return best;
  };
  /** Generated tokens/s with `n` sequences. */
  const speed = (n: number): number => {
    const seqs = Array.from({ length: n }, (_, s) => s);
    const tokens = seqs.map((s) => {
      m.useSequence(s);
      return argmax(
        m.prefill(
          Array.from({ length: PROMPT }, (_, i) => 1 + ((s * 31 + i * 7) % 1000)),
          0,
        ),
      );
    });
    const t0 = performance.now();
    for (let k = 0; k < STEPS; k++) {
      const out = m.stepBatch(
        tokens,
        seqs.map(() => PROMPT + k),
        seqs,
      );
      out.forEach((l, i) => {
        tokens[i] = argmax(l);
      });
    }
    return (n * STEPS) / ((performance.now() - t0) / 1000);
  };
  for (const n of STREAMS) speed(n);
  return {
    round: () => STREAMS.map(speed),
    close() {
      m.close();
      loaded.close();
    },
  };
}

/** llama-batched-bench's generation speed (S_TG) for each stream count. */
function llamaRound(tool: string, path: string, threads: number): number[] {
  const args = ["-m", path, "-c", "4096", "-b", "512", "-ub", "512", "-t", String(threads)];
  args.push("-npp", String(PROMPT), "-ntg", String(STEPS), "-npl", STREAMS.join(","));
  const out = execFileSync(tool, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  // Rows: | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
  const speeds = new Map<number, number>();
  for (const line of out.split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    if (cells.length < 10 || !/^\d+$/.test(cells[3] ?? "")) continue;
    speeds.set(Number(cells[3]), Number(cells[8]));
  }
  return STREAMS.map((n) => {
    const s = speeds.get(n);
    if (s === undefined) throw new Error(`llama-batched-bench printed no row for ${n} sequences`);
    return s;
  });
}

export async function benchBatched(paths: readonly string[]): Promise<void> {
  const tool = llamaTool("llama-batched-bench");
  const table = newTable({
    head: ["file", "sequences", "moec tok/s (1t / 2t)", "gain", "llama.cpp tok/s (1t / 2t)", "gain"],
    style: { head: [] },
  });
  for (const path of paths) {
    const moec = THREADS.map(() => STREAMS.map(() => 0));
    const llama = THREADS.map(() => STREAMS.map(() => 0));
    const engines = [];
    for (const threads of THREADS) engines.push(await moecEngine(path, threads));
    try {
      for (let r = 0; r < ROUNDS; r++) {
        for (const [t, threads] of THREADS.entries()) {
          const a = engines[t]!.round();
          const b = llamaRound(tool, path, threads);
          a.forEach((v, i) => (moec[t]![i] = Math.max(moec[t]![i]!, v)));
          b.forEach((v, i) => (llama[t]![i] = Math.max(llama[t]![i]!, v)));
        }
      }
    } finally {
      for (const e of engines) e.close();
    }
    const bestAt = (x: number[][], i: number) => Math.max(...x.map((row) => row[i]!));
    STREAMS.forEach((n, i) => {
      const cell = (x: number[][]) => x.map((row) => row[i]!.toFixed(1)).join(" / ");
      const gain = (x: number[][]) => `${(bestAt(x, i) / bestAt(x, 0)).toFixed(2)}×`;
      table.push([
        i === 0 ? path.split("/").pop()! : "",
        n,
        cell(moec),
        gain(moec),
        cell(llama),
        gain(llama),
      ]);
    });
  }
  console.log(
    `decoding several sequences at once: generated tokens/s over all of them (${STEPS} steps after an ${PROMPT}-token prompt each), best of ${ROUNDS} rounds; gain = best at N / best at 1`,
  );
  console.log(table.toString());
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const { benchModelPath } = await import("./llama.ts");
  await benchBatched(process.argv.length > 2 ? process.argv.slice(2) : [benchModelPath("q8_0")]);
}
