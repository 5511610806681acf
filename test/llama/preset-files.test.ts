// Files llama.cpp's own llama-quantize wrote with its presets, where one weight's type differs by layer
// (Q4_K_M: ffn_down and attn_v q6_K in its use_more_bits layers, q4_K in the rest): moec runs them as they
// are, on cpu, webgpu and gpujs, and its greedy tokens are llama.cpp's (node-llama-cpp, the same file).
//
// In CI: test/fixtures/llama-quantize/mixtral-4l.Q4_K_M.gguf (see the README there for how it was made),
// and the same f32 input quantized by `moec quantize --preset` with every preset of issue 14 (Q4_K_M,
// Q5_K_M, Q4_K_S, Q3_K_M, Q2_K, Q6_K), on the cpu. With MOEC_LLAMA_QUANTIZE=/path/to/llama-quantize the
// test also quantizes the input with llama-quantize itself for every preset, checks each file as the
// fixture is checked, and that moec's file for the preset has the same type for every tensor.
//
// Tolerances: llama.cpp dots k-quant weights with activations rounded to q8_K, moec's k-quant kernels
// with the f32 activations, so logits differ by that rounding (as for q4_0 in compare.test.ts); the files
// are shaped (decisiveShape) so that greedy margins are several times that.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import { findPreset, presetQuantizeOptions } from "../../runtime/checkpoint/presets.ts";
import { quantizeGguf } from "../../runtime/checkpoint/quantize.ts";
import { writeRandomMixtralGguf } from "../../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../../runtime/checkpoint/test-support.ts";
import { needsWebGpu, skipUnless } from "../machine.ts";
import { agreement, decisiveShape, runBoth, type Trace } from "./engines.ts";

const FIXTURE = "test/fixtures/llama-quantize/mixtral-4l.Q4_K_M.gguf";
const TEXT = "The cat and the dog were in the house";
const GENERATE = 16;
const CONTEXT = 256;
const VOCAB = 300;

/** The f32 input every preset file is quantized from (the fixture's, seed 14). */
function writePresetInput(path: string): void {
  const hidden = 256;
  writeRandomMixtralGguf(path, {
    hidden,
    ffn: 256,
    layers: 4,
    heads: 4,
    kvHeads: 2,
    experts: 2,
    topK: 2,
    vocab: VOCAB,
    type: "f32",
    seed: 14,
    ropeTheta: 1e4,
    eps: 1e-5,
    context: CONTEXT,
    ...decisiveShape(hidden),
    name: "moec preset fixture",
  });
}

const { dir, cleanup } = scratchDir();
afterAll(cleanup);

const quantize = process.env.MOEC_LLAMA_QUANTIZE;
const PRESETS = ["Q4_K_M", "Q5_K_M", "Q4_K_S", "Q3_K_M", "Q2_K", "Q6_K"];
const input = join(dir, "input.f32.gguf");
const inputFile = () => {
  if (!existsSync(input)) writePresetInput(input);
  return input;
};
/** moec's own file for a preset. */
const moecFile = (preset: string) => {
  const out = join(dir, `moec.${preset}.gguf`);
  if (!existsSync(out)) {
    const f = openGguf(inputFile());
    const opts = presetQuantizeOptions(f, findPreset(preset)!);
    f.close();
    quantizeGguf(input, out, opts);
  }
  return out;
};
/** llama-quantize's file for a preset. */
const llamaFile = (preset: string) => {
  const out = join(dir, `llama.${preset}.gguf`);
  if (!existsSync(out)) execFileSync(quantize!, [inputFile(), out, preset, "2"], { stdio: "ignore" });
  return out;
};

interface File {
  name: string;
  path: () => string;
  /** Also through `moec run --backend webgpu` and `gpujs` (llama-quantize's files). */
  gpu: boolean;
  /** moec's file of this preset: compared type by type with llama-quantize's (where MOEC_LLAMA_QUANTIZE is set). */
  sameTypesAs?: string;
  /** The weight kinds whose type the preset's rules vary by layer in 4 layers (use_more_bits: layers 2 and
   * 3; Q3_K_M's attn_v: layers 0 and 1); the other presets give each kind one type at this depth. */
  mixes: string[];
}

const MIXES: Record<string, string[]> = {
  Q4_K_M: ["attn_v.weight", "ffn_down_exps.weight"],
  Q5_K_M: ["attn_v.weight", "ffn_down_exps.weight"],
  Q3_K_M: ["attn_v.weight"],
};
const files: File[] = [
  { name: "llama-quantize Q4_K_M (fixture)", path: () => FIXTURE, gpu: true, mixes: MIXES.Q4_K_M! },
];
for (const preset of PRESETS) {
  files.push({
    name: `moec quantize --preset ${preset}`,
    path: () => moecFile(preset),
    gpu: false,
    sameTypesAs: preset,
    mixes: MIXES[preset] ?? [],
  });
  if (quantize)
    files.push({
      name: `llama-quantize ${preset}`,
      path: () => llamaFile(preset),
      gpu: true,
      mixes: MIXES[preset] ?? [],
    });
}

/** Every tensor's type, by name. */
function typesOf(path: string): Map<string, string> {
  const f = openGguf(path);
  try {
    return new Map(f.tensors.map((t) => [t.name, t.scheme.name]));
  } finally {
    f.close();
  }
}

/** The distinct types of each weight kind across layers: `{ ffn_down_exps: ["q4_k", "q6_k"], … }`. */
function typesByKind(path: string): Map<string, Set<string>> {
  const f = openGguf(path);
  try {
    const out = new Map<string, Set<string>>();
    for (const t of f.tensors) {
      const kind = t.name.replace(/^blk\.\d+\./, "");
      out.set(kind, (out.get(kind) ?? new Set()).add(t.scheme.name));
    }
    return out;
  } finally {
    f.close();
  }
}

/** `moec run FILE --backend B` greedy, through the CLI as a user runs it: the generated token ids. */
function cliGreedy(path: string, backend: string, env: Record<string, string> = {}): number[] {
  const out = execFileSync(
    process.execPath,
    [
      "bin/moec.js",
      "run",
      path,
      "--backend",
      backend,
      "-p",
      TEXT,
      "-n",
      String(GENERATE),
      "--temperature",
      "0",
      "--context",
      String(CONTEXT),
      "--json",
    ],
    { encoding: "utf8", env: { ...process.env, ...env }, timeout: 540_000 },
  );
  return (JSON.parse(out.trim().split("\n").at(-1)!) as { tokens: number[] }).tokens;
}

describe.each(files)("$name", ({ path, gpu, sameTypesAs, mixes }) => {
  let file: string;
  let theirs: Trace;

  beforeAll(async () => {
    file = path();
  }, 600_000);

  it("mixes types by layer where the preset's rules do", () => {
    const kinds = typesByKind(file);
    const mixed = [...kinds].filter(([, t]) => t.size > 1).map(([k]) => k);
    expect(mixed.sort()).toEqual([...mixes].sort());
  });

  it("cpu: moec's greedy tokens and probabilities are llama.cpp's", async () => {
    const both = await runBoth(file, {
      text: TEXT,
      generate: GENERATE,
      vocab: VOCAB,
      contextSize: CONTEXT,
      threads: 2,
    });
    theirs = both.theirs;
    expect(both.prompt).toEqual(both.llamaPrompt);
    expect(both.ours.tokens).toEqual(theirs.tokens);
    expect(both.batched.tokens).toEqual(theirs.tokens);
    const m = agreement(both.prompt.length, GENERATE, both.ours, theirs);
    // Every greedy margin well above the largest logit difference: the tokens agree because the engines do.
    expect(m.minMargin).toBeGreaterThan(4 * Math.max(...m.logit));
    expect(Math.max(...m.dp)).toBeLessThan(0.1);
  }, 600_000);

  if (sameTypesAs !== undefined) {
    it("has llama-quantize's type for every tensor", {
      ...skipUnless(
        quantize !== undefined,
        "without llama-quantize (MOEC_LLAMA_QUANTIZE=/path/to/llama-quantize compares moec's preset files with its own)",
      ),
      timeout: 600_000,
    }, () => {
      expect(typesOf(file)).toEqual(typesOf(llamaFile(sameTypesAs)));
    });
  }

  if (gpu) {
    it.each([
      ["webgpu", {}],
      ["gpujs", { MOEC_GPUJS_MODE: "webgpu" }],
    ] as const)(
      "%s: `moec run FILE` gives llama.cpp's greedy tokens",
      { ...needsWebGpu(), timeout: 600_000 },
      (backend, env) => {
        expect(theirs, "the cpu comparison ran first").toBeDefined();
        expect(cliGreedy(file, backend, env)).toEqual(theirs.tokens);
      },
    );
  }
});
