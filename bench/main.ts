// npm run bench: decode speed of the generated model against the reference executor on the same
// random weights (a ratio from one run), the compile time of every spec in specs/, then moec against
// llama.cpp on the same GGUF files (bench/llama.ts).
// A benchmark, not a test: it asserts nothing, it reports.
import { readdirSync } from "node:fs";
import { table as newTable } from "../cli/color.ts";
import { compileModel } from "../compiler/compile.ts";
import { loadSpec } from "../compiler/lang/frontend.ts";
import { pickQuant, pickTarget } from "../compiler/select.ts";
import { compileAndLoad } from "../test/harness.ts";
import { benchBatched } from "./batched.ts";
import { benchAgainstLlama, benchModelPath, CONTEXT } from "./llama.ts";
import { benchMemory } from "./memory.ts";
import { benchPresets, PRESETS, presetPath } from "./presets.ts";
import { benchServeLoad } from "./serve-load.ts";

const args = process.argv.slice(2);
const schemes = args.length ? args : ["f32", "q8_0", "q4_0"];
/** llama.cpp runs GGUF types; q4_k also covers the k-quants (the bench model's ffn 1408 is not a multiple of
 * 256, so its down projections fall back to q5_0, as llama.cpp's own quantizer would choose). */
const llamaTypes = args.length ? args : ["f32", "q8_0", "q4_0", "q4_k"];
const spec = "specs/bench-mixtral.moe";

function tokPerSec(step: (token: number, pos: number) => unknown, tokens: number, seconds: number): number {
  const start = performance.now();
  let n = 0;
  while (n < tokens || (performance.now() - start) / 1000 < seconds) {
    step((n * 31 + 7) % 32000, n % 512);
    n++;
    if (n >= 512) break;
  }
  return n / ((performance.now() - start) / 1000);
}

const decode = newTable({
  head: ["scheme", "generated tok/s", "reference tok/s", "ratio"],
  style: { head: [] },
});
for (const scheme of schemes) {
  const { generated, reference } = await compileAndLoad(spec, scheme, 3, 1024);
  tokPerSec((t, p) => generated.step(t, p), 4, 0); // warm-up: JIT
  const gen = tokPerSec((t, p) => generated.step(t, p), 32, 2);
  reference.step(1, 0);
  const ref = tokPerSec((t, p) => reference.step(t, p), 4, 2);
  decode.push([scheme, gen.toFixed(1), ref.toFixed(2), `${(gen / ref).toFixed(1)}×`]);
}
console.log(`decode on ${spec} (hidden 512, 8 layers, 8 experts top-2, vocab 32000), one thread`);
console.log(decode.toString());

const compile = newTable({ head: ["spec", "compile ms", "ops → fused", "kernels"], style: { head: [] } });
for (const f of readdirSync("specs")
  .filter((f) => f.endsWith(".moe"))
  .sort()) {
  const start = performance.now();
  const s = loadSpec(`specs/${f}`);
  const m = s.models[0]!;
  const c = compileModel(s, m, { quant: pickQuant(s, m, undefined, true), target: pickTarget(s) });
  const ms = performance.now() - start;
  compile.push([f, ms.toFixed(0), `${c.summary.opsBefore} → ${c.summary.opsAfter}`, c.summary.kernels]);
}
console.log("compile time (parse, check, passes, codegen, type-check, emit)");
console.log(compile.toString());

console.log();
await benchAgainstLlama(llamaTypes);
console.log();
// The files people download: llama-quantize's presets (bench/presets.ts), unless types were named.
if (!args.length) {
  await benchPresets(PRESETS);
  console.log();
}
benchMemory(
  llamaTypes.map((type) => ({ type, path: benchModelPath(type) })),
  CONTEXT,
);
console.log();
// Serving: several sequences decoded at once, against llama.cpp; then the server under load.
await benchBatched([benchModelPath("q8_0"), ...(args.length ? [] : [presetPath("Q4_K_M")])]);
console.log();
await benchServeLoad(benchModelPath("q8_0"));
