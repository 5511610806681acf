// Regenerates test/fixtures/llama-quantize-presets.json: llama.cpp's own choice of type for every tensor of
// small f32 checkpoints under every preset moec offers, which runtime/checkpoint/presets.test.ts checks
// moec's rules against. It needs a built llama-quantize (see test/fixtures/llama-quantize-presets.md):
//
//   npx tsx scripts/llama-quantize-presets.ts --llama-quantize /path/to/llama.cpp/build/bin/llama-quantize
//
// For each input below it writes the f32 GGUF with moec's random writer, runs
// `llama-quantize IN OUT PRESET 2` for each preset, reads OUT back with moec's GGUF reader, and records each
// tensor's ggml type name, the general.file_type llama.cpp wrote, and a SHA-256 of the tensors' bytes (in the
// input's order), which moec's own quantization of the same input must reproduce. Nothing else about the inputs
// matters to the rules (row lengths, layer and expert counts, heads, a tied head), so the vocabulary is
// small; the values are random.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { openGguf } from "../runtime/checkpoint/gguf-read.ts";
import { ggmlTypeName } from "../runtime/checkpoint/gguf-types.ts";
import { PRESETS } from "../runtime/checkpoint/presets.ts";
import { type RandomMixtralOptions, writeRandomMixtralGguf } from "../runtime/checkpoint/random-gguf.ts";

/** The inputs: Mixtral shapes whose rows fill 256-blocks and whose rows do not, 4 experts, dense, tied. */
const FIXTURE_INPUTS: { name: string; about: string; options: RandomMixtralOptions }[] = [
  ["moe8-fill-8L", "Mixtral shape, every row a multiple of 256", 256, 512, 8, 2, 8, 8, false],
  ["moe8-fill-32L", "Mixtral shape, every row a multiple of 256, 32 layers", 256, 256, 8, 2, 8, 32, false],
  [
    "moe8-ffn352-8L",
    "Mixtral shape, ffn_down rows of 352 (not a multiple of 256)",
    256,
    352,
    8,
    2,
    8,
    8,
    false,
  ],
  ["moe8-ffn160-32L", "Mixtral shape, ffn_down rows of 160, 32 layers", 256, 160, 8, 2, 8, 32, false],
  [
    "moe8-hidden320-8L",
    "Mixtral shape, hidden 320: most rows not a multiple of 256",
    320,
    512,
    10,
    2,
    8,
    8,
    false,
  ],
  ["moe4-fill-8L", "4 experts (llama.cpp's 8-expert rules do not apply)", 256, 512, 8, 2, 4, 8, false],
  ["dense-8L", "dense Mistral shape (GQA 4)", 256, 768, 8, 2, 0, 8, false],
  ["dense-32L", "dense Mistral shape (GQA 4), 32 layers", 256, 768, 8, 2, 0, 32, false],
  [
    "dense-mha-tied-ffn352-8L",
    "dense, GQA 1, head tied to the embeddings, ffn 352",
    256,
    352,
    8,
    8,
    0,
    8,
    true,
  ],
  [
    "dense-hidden200-8L",
    "dense, hidden 200: rows not a multiple of 32 (f16 fallback)",
    200,
    352,
    4,
    1,
    0,
    8,
    false,
  ],
].map(([name, about, hidden, ffn, heads, kvHeads, experts, layers, tiedHead]) => ({
  name: name as string,
  about: about as string,
  options: {
    hidden: hidden as number,
    ffn: ffn as number,
    heads: heads as number,
    kvHeads: kvHeads as number,
    experts: experts as number,
    topK: (experts as number) > 0 ? 2 : 0,
    layers: layers as number,
    vocab: 512,
    type: "f32",
    seed: 7,
    ...(tiedHead ? { tiedHead: true } : {}),
  },
}));

/** Run-length form of a list of type names: "f32 q4_K*3 q6_K". */
function runLength(types: readonly string[]): string {
  const out: string[] = [];
  for (let i = 0; i < types.length; ) {
    let j = i;
    while (j < types.length && types[j] === types[i]) j++;
    out.push(j - i > 1 ? `${types[i]}*${j - i}` : types[i]!);
    i = j;
  }
  return out.join(" ");
}

function main(): void {
  const args = process.argv.slice(2);
  const at = args.indexOf("--llama-quantize");
  if (at < 0 || !args[at + 1]) {
    process.stderr.write("usage: tsx scripts/llama-quantize-presets.ts --llama-quantize PATH [--out FILE]\n");
    process.exit(2);
  }
  const tool = resolve(args[at + 1]!);
  const outAt = args.indexOf("--out");
  const outFile = outAt >= 0 ? args[outAt + 1]! : "test/fixtures/llama-quantize-presets.json";
  const dir = mkdtempSync(join(tmpdir(), "moec-llq-"));
  const inputs = [];
  try {
    for (const input of FIXTURE_INPUTS) {
      const inPath = join(dir, `${input.name}.f32.gguf`);
      writeRandomMixtralGguf(inPath, input.options);
      const src = openGguf(inPath);
      const tensors = src.tensors.map((t) => [t.name, t.dims]);
      src.close();
      const presets: Record<string, { fileType: number; types: string; sha256: string }> = {};
      for (const p of PRESETS) {
        const outPath = join(dir, `${input.name}.${p.name}.gguf`);
        execFileSync(tool, [inPath, outPath, p.name, "2"], { stdio: ["ignore", "ignore", "pipe"] });
        const q = openGguf(outPath);
        const hash = createHash("sha256");
        const types = src.tensors.map((t) => {
          const info = q.tensor(t.name);
          hash.update(q.read(info));
          return ggmlTypeName(info.type) ?? String(info.type);
        });
        const ft = q.metadata.get("general.file_type");
        q.close();
        rmSync(outPath);
        presets[p.name] = {
          fileType: Number(ft?.value),
          types: runLength(types),
          sha256: hash.digest("hex"),
        };
        process.stderr.write(`${input.name} ${p.name}\n`);
      }
      rmSync(inPath);
      inputs.push({ name: input.name, about: input.about, options: input.options, tensors, presets });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const fixture = {
    about:
      "llama.cpp's choice of ggml type for every tensor of small f32 checkpoints under each preset: made by scripts/llama-quantize-presets.ts with `llama-quantize IN OUT PRESET 2` (no other flags); see llama-quantize-presets.md. `types` lists the types of `tensors` in order, NAME*N for N in a row; `sha256` is of the tensors' data in that order.",
    llamaQuantize:
      "llama.cpp de3ff81 (node-llama-cpp's llama/gitRelease.bundle), built with -DGGML_NATIVE=ON",
    command: "llama-quantize IN OUT PRESET 2",
    inputs,
  };
  writeFileSync(outFile, `${JSON.stringify(fixture, null, 2)}\n`);
  execFileSync("npx", ["biome", "format", "--write", outFile], { stdio: "inherit" });
  process.stderr.write(`wrote ${outFile}\n`);
}

main();
