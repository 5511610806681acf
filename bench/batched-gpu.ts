// Batched decoding on a GPU backend (what `moec serve --backend webgpu --parallel N` does every round):
// generated tokens/s over all sequences with 1, 4 and 8 of them through the batch program
// (GpuModel.stepBatch), against stepping one sequence through the per-token program. Best of 3 rounds;
// gain = over the per-token program's single stream. Not part of `npm run bench` (on a machine without a
// GPU, webgpu is Mesa's lavapipe, on the same CPU cores); run it alone:
// `npx tsx bench/batched-gpu.ts [FILE.gguf]` (default: the bench model at q4_0). A benchmark: it reports.
import { pathToFileURL } from "node:url";
import { table as newTable } from "../cli/color.ts";
import { loadForRun } from "../cli/model-source.ts";
import { GpuModel, isGpuModule } from "../runtime/gpu/model.ts";

const STREAMS = [1, 4, 8] as const;
const PROMPT = 8;
const STEPS = 16;
const ROUNDS = 3;

const argmax = (l: Float32Array) => {
  let best = 0;
  for (let i = 1; i < l.length; i++) if (l[i]! > l[best]!) best = i;
  return best;
};

export async function benchBatchedGpu(path: string, backend = "webgpu"): Promise<void> {
  const loaded = await loadForRun(undefined, path, { maxContext: 512, backend });
  if (!isGpuModule(loaded.module)) throw new Error(`${path} did not compile for ${backend}`);
  const m = await GpuModel.load(loaded.module, loaded.weights, {
    sequences: Math.max(...STREAMS),
    prefetch: false,
  });
  try {
    /** Generated tokens/s with `n` sequences: batched, or one sequence stepped by the per-token program. */
    const speed = async (n: number, batched: boolean): Promise<number> => {
      const seqs = Array.from({ length: n }, (_, s) => s);
      const tokens: number[] = [];
      for (const s of seqs) {
        m.useSequence(s);
        const prompt = Array.from({ length: PROMPT }, (_, i) => 1 + ((s * 31 + i * 7) % 1000));
        tokens.push(argmax(await m.prefill(prompt, 0)));
      }
      const t0 = performance.now();
      for (let k = 0; k < STEPS; k++) {
        if (batched) {
          const out = await m.stepBatch(
            tokens,
            seqs.map(() => PROMPT + k),
            seqs,
          );
          out.forEach((l, i) => {
            tokens[i] = argmax(l);
          });
        } else tokens[0] = argmax(await m.step(tokens[0]!, PROMPT + k));
      }
      return (n * STEPS) / ((performance.now() - t0) / 1000);
    };
    let single = 0;
    const best = STREAMS.map(() => 0);
    await speed(1, false);
    await speed(Math.max(...STREAMS), true);
    for (let r = 0; r < ROUNDS; r++) {
      single = Math.max(single, await speed(1, false));
      for (const [i, n] of STREAMS.entries()) best[i] = Math.max(best[i]!, await speed(n, true));
    }
    const table = newTable({ head: ["sequences", "tok/s", "gain"], style: { head: [] } });
    table.push(["1, per-token program", single.toFixed(1), "1.00×"]);
    STREAMS.forEach((n, i) => {
      table.push([`${n}, batched`, best[i]!.toFixed(1), `${(best[i]! / single).toFixed(2)}×`]);
    });
    console.log(
      `${path.split("/").pop()} on ${backend} (${m.backend.device}), batches of up to ${m.decodeBatch}: generated tokens/s over all sequences (${STEPS} steps after an ${PROMPT}-token prompt each), best of ${ROUNDS} rounds`,
    );
    console.log(table.toString());
  } finally {
    m.close();
    loaded.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const { benchModelPath } = await import("./llama.ts");
  await benchBatchedGpu(process.argv[2] ?? benchModelPath("q4_0"));
}
