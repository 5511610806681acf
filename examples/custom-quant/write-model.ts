// Writes a small random Mixtral-shaped checkpoint in f32 (the input of the custom-quant example):
//   npx tsx examples/custom-quant/write-model.ts out/custom-quant/model.gguf
// hidden 128, 2 layers, 4 heads / 2 KV heads, 4 experts top-2, ffn 256, vocab 512: every row is a
// multiple of nf4's 64-weight block. The weights are random, so is the text.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { writeRandomMixtralGguf } from "../../runtime/checkpoint/random-gguf.ts";

const out = process.argv[2] ?? "out/custom-quant/model.gguf";
mkdirSync(dirname(out), { recursive: true });
writeRandomMixtralGguf(out, {
  hidden: 128,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 256,
  experts: 4,
  topK: 2,
  vocab: 512,
  context: 512,
  type: "f32",
  seed: 7,
  headScale: 4,
  name: "custom quant example",
});
process.stdout.write(`wrote ${out}\n`);
