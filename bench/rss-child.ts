// Run by bench/memory.ts in its own process, importing the runtime only (no compiler): load a compiled
// model directory with a GGUF's weights, decode a few tokens, and report the heap's size beside the
// process's peak resident memory.
import { openGguf } from "../runtime/checkpoint/gguf-read.ts";
import { GgufWeights } from "../runtime/checkpoint/gguf-weights.ts";
import { importModuleDir, ModelInstance } from "../runtime/model.ts";

const [dir, path, threads = "2"] = process.argv.slice(2);
if (dir === "--baseline") {
  // The same process with the runtime imported and nothing loaded: Node's, tsx's and the modules' own memory.
  console.log(JSON.stringify({ heap_bytes: 0, max_rss_bytes: process.resourceUsage().maxRSS * 1024 }));
  process.exit(0);
}
const module = await importModuleDir(dir!);
const file = openGguf(path!);
const model = new ModelInstance(module, new GgufWeights(file, module.manifest), { threads: Number(threads) });
file.close();
let token = 1;
for (let pos = 0; pos < 16; pos++) {
  const logits = model.step(token, pos);
  token = logits.indexOf(Math.max(...logits));
}
model.close();
console.log(
  JSON.stringify({ heap_bytes: model.rt.heap.bytes, max_rss_bytes: process.resourceUsage().maxRSS * 1024 }),
);
