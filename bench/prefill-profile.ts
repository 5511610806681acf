// Times moec's batched prefill alone on one file, for profiling (`node --cpu-prof --import tsx
// bench/prefill-profile.ts FILE [rounds] [threads] [wasm-out] [tokens]`): a prompt of `tokens` (default
// the bench's 64; 2048 for the long prompt, in the generated module's batches), the cache sized for it.
// wasm-out receives the kernels' bytes, whose export section names the profile's `wasm-function[N]` entries.
import { writeFileSync } from "node:fs";
import { loadForRun } from "../cli/model-source.ts";
import { ModelInstance } from "../runtime/model.ts";
import { PROMPT_TOKENS } from "./llama.ts";

const [path, roundsArg, threadsArg, wasmOut, tokensArg] = process.argv.slice(2);
if (!path) throw new Error("usage: prefill-profile.ts FILE [rounds] [threads] [wasm-out] [tokens]");
const tokens = Number(tokensArg ?? PROMPT_TOKENS);
const prompt = Array.from({ length: tokens }, (_, i) => 300 + ((i * 7919) % 30000));
const loaded = await loadForRun(undefined, path, { maxContext: Math.max(2080, tokens + 32), kvType: "f16" });
if (wasmOut) writeFileSync(wasmOut, Buffer.from(loaded.module.wasmRelaxed || loaded.module.wasm, "base64"));
const model = new ModelInstance(loaded.module, loaded.weights, { threads: Number(threadsArg ?? 1) });
model.prefill(prompt.slice(0, 8));
let bestRate = 0;
for (let r = 0; r < Number(roundsArg ?? 10); r++) {
  const t = performance.now();
  model.prefill(prompt, 0);
  bestRate = Math.max(bestRate, tokens / ((performance.now() - t) / 1000));
}
console.log(`prefill of ${tokens} tokens: ${bestRate.toFixed(0)} tokens/s (best)`);
model.close();
loaded.close();
