// moec against llama.cpp on the files people download: a Mixtral-shaped f32 checkpoint with random weights
// (hidden 640, 6 layers, 10 heads / 2 KV, ffn 1792, 8 experts top-2, vocab 32000) quantized by llama.cpp's own
// llama-quantize to its presets, which mix schemes per tensor and layer and fall back to q5_0/q5_1/q8_0 for the
// rows of 640 that no 256-block fills. Each engine at 1 and 2 threads; the ratio is of each engine's best.
// Run by `npm run bench`, or alone: `npx tsx bench/presets.ts [Q4_K_M Q6_K …]`. A benchmark: it reports.
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { table as newTable } from "../cli/color.ts";
import { writeRandomMixtralGguf } from "../runtime/checkpoint/random-gguf.ts";
import { getLlamaCpu } from "../test/llama/engines.ts";
import { benchFile, LONG, PROMPT_TOKENS, type Speed } from "./llama.ts";
import { cacheDir, quantizeWithLlama } from "./llama-quantize.ts";

const SHAPE = {
  hidden: 640,
  layers: 6,
  heads: 10,
  kvHeads: 2,
  ffn: 1792,
  experts: 8,
  topK: 2,
  vocab: 32000,
  context: 4096,
  ropeTheta: 1e6,
  eps: 1e-5,
  seed: 2026,
} as const;

export const PRESETS = ["Q8_0", "Q4_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_K_S", "Q3_K_M", "Q2_K"];

const stem = () =>
  join(cacheDir(), `presets-h${SHAPE.hidden}-l${SHAPE.layers}-e${SHAPE.experts}-s${SHAPE.seed}`);

/** The f32 checkpoint every preset file is quantized from, written once. */
function f32Path(): string {
  const file = `${stem()}.f32.gguf`;
  if (!existsSync(file)) {
    mkdirSync(cacheDir(), { recursive: true });
    process.stderr.write(`writing the f32 checkpoint the presets start from: ${file}\n`);
    writeRandomMixtralGguf(file, { ...SHAPE, type: "f32", name: "moec preset bench (f32, random weights)" });
  }
  return file;
}

/** llama-quantize's `preset` file, made once. */
export const presetPath = (preset: string): string =>
  quantizeWithLlama(f32Path(), `${stem()}.${preset}.gguf`, preset);

export async function benchPresets(presets: readonly string[]): Promise<void> {
  await getLlamaCpu();
  const input = f32Path();
  const cols = (what: string) => [`${what} moec 1t`, "2t", "llama.cpp 1t", "2t", "ratio"];
  const table = newTable({
    head: ["file", ...cols("decode"), ...cols(`@${LONG}`), ...cols("prefill")],
    style: { head: [] },
  });
  for (const preset of presets) {
    const path = quantizeWithLlama(input, `${stem()}.${preset}.gguf`, preset);
    // The preset files' context (4096) holds the decode at LONG, not the long prefill and DEEP.
    const { moec, llama } = await benchFile(path, { deep: false });
    const five = (k: keyof Speed) => {
      const bestOf = (s: Speed[]) => Math.max(...s.map((x) => x[k]));
      return [
        ...moec.map((s) => s[k].toFixed(0)),
        ...llama.map((s) => s[k].toFixed(0)),
        `${(bestOf(moec) / bestOf(llama)).toFixed(2)}×`,
      ];
    };
    table.push([preset, ...five("decode"), ...five("long"), ...five("prefill")]);
  }
  console.log(
    `moec vs llama.cpp on llama-quantize's preset files (hidden ${SHAPE.hidden}, ${SHAPE.layers} layers, ` +
      `${SHAPE.heads}/${SHAPE.kvHeads} heads, ffn ${SHAPE.ffn}, ${SHAPE.experts} experts top-${SHAPE.topK}, ` +
      `vocab ${SHAPE.vocab}), tokens per second, each the best of interleaved rounds at 1 and 2 threads;\n` +
      `ratio = moec's best / llama.cpp's best. Decode after a ${PROMPT_TOKENS}-token prompt and at position ${LONG}; ` +
      `prefill: the ${PROMPT_TOKENS}-token prompt in one batch.`,
  );
  console.log(table.toString());
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const args = process.argv.slice(2);
  await benchPresets(args.length ? args : PRESETS);
}
