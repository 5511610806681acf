// Times moec's 64-token batched prefill alone on one file, for profiling (`node --cpu-prof --import tsx
// bench/prefill-profile.ts FILE [rounds] [threads] [wasm-out]`); wasm-out receives the kernels' bytes, whose
// export section names the profile's `wasm-function[N]` entries.
import { writeFileSync } from "node:fs";
import { loadForRun } from "../cli/model-source.ts";
import { ModelInstance } from "../runtime/model.ts";
import { PROMPT_TOKENS } from "./llama.ts";

const [path, roundsArg, threadsArg, wasmOut] = process.argv.slice(2);
if (!path) throw new Error("usage: prefill-profile.ts FILE [rounds] [threads] [wasm-out]");
const prompt = Array.from({ length: PROMPT_TOKENS }, (_, i) => 300 + ((i * 7919) % 30000));
const loaded = await loadForRun(undefined, path, { maxContext: 2080, kvType: "f16" });
if (wasmOut) writeFileSync(wasmOut, Buffer.from(loaded.module.wasmRelaxed || loaded.module.wasm, "base64"));
const model = new ModelInstance(loaded.module, loaded.weights, { threads: Number(threadsArg ?? 1) });
model.prefill(prompt.slice(0, 8));
let bestRate = 0;
for (let r = 0; r < Number(roundsArg ?? 10); r++) {
  const t = performance.now();
  model.prefill(prompt, 0);
  bestRate = Math.max(bestRate, PROMPT_TOKENS / ((performance.now() - t) / 1000));
}
console.log(`prefill ${bestRate.toFixed(0)} tokens/s (best)`);
model.close();
loaded.close();
