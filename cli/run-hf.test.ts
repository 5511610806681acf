// `moec run` on Hugging Face folders: config.json + safetensors (one file or two shards) +
// tokenizer.json. The generated model's logits equal the reference executor's on the same weights;
// the same numbers written as GGUF (q/k permuted to the interleaved RoPE) give the same logits and
// tokens through `moec run --weights model.gguf`; --chat renders the folder's chat template; bad
// safetensors stop with one line and exit code 2.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { compileModel } from "../compiler/compile.ts";
import { importHfConfig } from "../compiler/import.ts";
import { compileSource } from "../compiler/lang/frontend.ts";
import { ReferenceModel } from "../compiler/reference/executor.ts";
import { SafetensorsWeights } from "../runtime/checkpoint/safetensors-weights.ts";
import { importModuleSource, ModelInstance } from "../runtime/model.ts";
import { loadHfTokenizer } from "../runtime/tokenizer/hf-json.ts";
import { MemoryWeights } from "../runtime/weights.ts";
import { relativeError } from "../test/harness.ts";
import { MISTRAL_CHAT_TEMPLATE, type TinyHf, writeGgufTwin, writeTinyHfFolder } from "../test/hf-folder.ts";
import { loadForRun } from "./model-source.ts";

function moec(...args: string[]) {
  const r = spawnSync(process.execPath, ["bin/moec.js", ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** The same, without blocking, so that independent runs go side by side. */
function moecAsync(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ["bin/moec.js", ...args]);
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => {
      out += d;
    });
    p.stderr.on("data", (d) => {
      err += d;
    });
    p.on("close", (code) => resolve({ code, out, err }));
  });
}

const SHAPE = {
  hidden: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 96,
  experts: 4,
  topK: 2,
  vocab: 512,
  headScale: 8,
};
const PROMPT = "the cat and it was";

/** The generated model and the reference executor on one HF folder, compiled as `moec run` does (f32). */
async function pairFor(hf: TinyHf) {
  const cfg = join(hf.dir, "config.json");
  const spec = compileSource(importHfConfig(readFileSync(cfg, "utf8"), cfg).source, cfg);
  const compiled = compileModel(spec, spec.models[0]!, { quant: "f32" });
  // A snapshot in memory: the reference executor reads weights lazily, after the file is closed.
  const file = SafetensorsWeights.open(hf.dir, compiled.manifest);
  const weights = new MemoryWeights();
  for (const w of compiled.manifest.weights) {
    for (const l of w.layers === 0 ? [undefined] : [...Array(w.layers).keys()])
      weights.set(w.key, l, file.bytes(w.key, l));
  }
  file.close();
  const generated = new ModelInstance(await importModuleSource(compiled.files["model.js"]!), weights);
  const unfused = compiled.stages.find((s) => s.pass === "dce")!.graph;
  const reference = new ReferenceModel(unfused, compiled.manifest, weights);
  return { generated, reference };
}

function greedy(m: { step(t: number, p: number): Float32Array }, prompt: number[], n: number) {
  let logits: Float32Array = new Float32Array();
  const steps: Float32Array[] = [];
  prompt.forEach((t, p) => {
    logits = m.step(t, p);
    steps.push(logits.slice());
  });
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let v = 1; v < logits.length; v++) if (logits[v]! > logits[best]!) best = v;
    out.push(best);
    logits = m.step(best, prompt.length + i);
    steps.push(logits.slice());
  }
  return { tokens: out, steps };
}

describe("moec run on a Hugging Face folder", () => {
  const root = mkdtempSync(join(tmpdir(), "moec-hf-"));
  let single: TinyHf;
  let sharded: TinyHf;
  beforeAll(() => {
    single = writeTinyHfFolder(join(root, "single"), {
      ...SHAPE,
      dtype: "BF16",
      seed: 5,
      chatTemplate: MISTRAL_CHAT_TEMPLATE,
    });
    sharded = writeTinyHfFolder(join(root, "sharded"), {
      ...SHAPE,
      dtype: "F16",
      seed: 9,
      shards: 2,
      ropeTheta: 1e6,
    });
    writeGgufTwin(single, join(root, "single.gguf"));
    writeGgufTwin(sharded, join(root, "sharded.gguf"));
  });

  for (const which of ["single", "sharded"] as const) {
    it(`${which}: logits equal the reference executor's, and moec run --json greedy-decodes the same tokens`, async () => {
      const hf = which === "single" ? single : sharded;
      const { generated, reference } = await pairFor(hf);
      const prompt = loadHfTokenizer(hf.dir).encode(PROMPT);
      const g = greedy(generated, prompt, 8);
      let worst = 0;
      g.steps.forEach((want, i) => {
        const tok = i < prompt.length ? prompt[i]! : g.tokens[i - prompt.length]!;
        const ref = reference.step(tok, i);
        worst = Math.max(worst, relativeError(want, ref));
      });
      expect(worst).toBeLessThanOrEqual(1e-4);

      const r = moec(
        "run",
        hf.dir,
        "--weights",
        hf.dir,
        "--temperature",
        "0",
        "--json",
        "-n",
        "8",
        "-p",
        PROMPT,
      );
      expect(r.err).toBe("");
      expect(r.code).toBe(0);
      const out = JSON.parse(r.out);
      expect(out.prompt_tokens).toEqual(prompt);
      expect(out.prompt_tokens[0]).toBe(1);
      expect(out.tokens).toEqual(g.tokens);
      // The greedy choices are clear (not a coin toss), so the comparison means something.
      const last = g.steps[prompt.length - 1]!;
      const sorted = [...last].sort((a, b) => b - a);
      expect(sorted[0]! - sorted[1]!).toBeGreaterThan(1e-3);
    });

    it(`${which}: the same weights as GGUF (interleaved RoPE) give the same logits and tokens`, async () => {
      const hf = which === "single" ? single : sharded;
      const gguf = join(root, `${which}.gguf`);
      const { generated } = await pairFor(hf);
      const loaded = await loadForRun(undefined, gguf);
      const twin = new ModelInstance(loaded.module, loaded.weights);
      loaded.close();
      const prompt = loadHfTokenizer(hf.dir).encode(PROMPT);
      expect(loaded.tokenizer.encode(PROMPT)).toEqual(prompt);
      const a = greedy(generated, prompt, 8);
      const b = greedy(twin, prompt, 8);
      expect(b.tokens).toEqual(a.tokens);
      let worst = 0;
      a.steps.forEach((x, i) => {
        worst = Math.max(worst, relativeError(b.steps[i]!, x));
      });
      expect(worst).toBeLessThanOrEqual(1e-4);

      const r = moec("run", "--weights", gguf, "--temperature", "0", "--json", "-n", "8", "-p", PROMPT);
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out).tokens).toEqual(a.tokens);
    });
  }

  it("an HF checkpoint through a spec with interleaved RoPE: q/k rows are permuted as they load", async () => {
    // The GGUF twin's imported spec (interleaved rope) with the Hugging Face names put back.
    const cfg = join(single.dir, "config.json");
    const half = importHfConfig(readFileSync(cfg, "utf8"), cfg).source;
    const interleaved = half.replaceAll(", style: half", "");
    expect(interleaved).not.toEqual(half);
    const specPath = join(root, "interleaved.moe");
    writeFileSync(specPath, interleaved);
    const viaSpec = await loadForRun(specPath, single.dir);
    const m = new ModelInstance(viaSpec.module, viaSpec.weights);
    viaSpec.close();
    const { generated } = await pairFor(single);
    const prompt = loadHfTokenizer(single.dir).encode(PROMPT);
    const a = greedy(generated, prompt, 4);
    const b = greedy(m, prompt, 4);
    expect(b.tokens).toEqual(a.tokens);
    let worst = 0;
    a.steps.forEach((x, i) => {
      worst = Math.max(worst, relativeError(b.steps[i]!, x));
    });
    expect(worst).toBeLessThanOrEqual(1e-4);
  });

  it("--chat renders the folder's [INST] template, with one BOS", () => {
    const r = moec(
      "run",
      "--weights",
      single.dir,
      "--chat",
      "--temperature",
      "0",
      "--json",
      "-n",
      "4",
      "-p",
      "the cat",
    );
    expect(r.code).toBe(0);
    const out = JSON.parse(r.out);
    const tok = loadHfTokenizer(single.dir);
    expect(out.prompt_tokens).toEqual(
      tok.encode("<s>[INST] the cat [/INST]", { addBos: false, parseSpecial: true }),
    );
    expect(out.prompt_tokens.filter((t: number) => t === 1)).toEqual([1]);
    expect(out.prompt_tokens[0]).toBe(1);
  });

  it("--chat on a model without a template is a clear error", () => {
    const r = moec("run", "--weights", sharded.dir, "--chat", "-n", "2");
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/has no chat template \(no chat_template in tokenizer_config\.json\)/);
  });

  const corrupt: [string, (buf: Buffer) => Buffer, RegExp][] = [
    [
      "bad JSON",
      (b) => {
        b[9] = 0x7b; // `{{`: the header no longer parses
        return b;
      },
      /header is not valid JSON/,
    ],
    [
      "a header length past the end of the file",
      (b) => {
        b.writeBigUInt64LE(BigInt(b.length), 0);
        return b;
      },
      /at byte 0: header length \d+ runs past the end of the file/,
    ],
    [
      "overlapping ranges",
      (b) =>
        rewriteHeader(b, (h) => {
          const names = Object.keys(h).filter((k) => k !== "__metadata__");
          const first = h[names[0]!] as { data_offsets: number[] };
          const second = h[names[1]!] as { data_offsets: number[] };
          const len = second.data_offsets[1]! - second.data_offsets[0]!;
          second.data_offsets = [first.data_offsets[0]!, first.data_offsets[0]! + len];
        }),
      /data overlaps tensor/,
    ],
    [
      "a __proto__ key",
      (b) =>
        rewriteHeader(b, (h) => {
          Object.defineProperty(h, "__proto__", {
            value: { dtype: "F32", shape: [0], data_offsets: [0, 0] },
            enumerable: true,
          });
        }),
      /key __proto__ at byte 8: key "__proto__" is not allowed/,
    ],
    [
      "a size mismatch",
      (b) =>
        rewriteHeader(b, (h) => {
          (h["model.norm.weight"] as { shape: number[] }).shape = [63];
        }),
      /tensor model\.norm\.weight at byte \d+: holds 128 bytes but BF16 \[63\] needs 63 × 2 = 126/,
    ],
    [
      "an offset past the end",
      (b) =>
        rewriteHeader(b, (h) => {
          const t = h["lm_head.weight"] as { data_offsets: number[] };
          t.data_offsets = [t.data_offsets[0]! + 1024, t.data_offsets[1]! + 1024];
        }),
      /tensor lm_head\.weight at byte \d+: data_offsets \[\d+, \d+\] run past the end of the data/,
    ],
  ];
  for (const [what, mutate, message] of corrupt) {
    it.concurrent(`a safetensors file with ${what}: one line, exit code 2`, async () => {
      const dir = join(root, `bad-${what.replaceAll(" ", "-")}`);
      const hf = writeTinyHfFolder(dir, { ...SHAPE, dtype: "BF16", seed: 5 });
      const file = join(hf.dir, "model.safetensors");
      writeFileSync(file, mutate(readFileSync(file)));
      const r = await moecAsync("run", "--weights", hf.dir, "-n", "2");
      expect(r.code).toBe(2);
      expect(r.out).toBe("");
      const lines = r.err.trim().split("\n");
      expect(lines.length).toBe(1);
      expect(lines[0]).toContain(file);
      expect(lines[0]).toMatch(message);
    });
  }
});

/** Rewrites a safetensors header (keeping the data), parsed with `__proto__` as a plain key. */
function rewriteHeader(buf: Buffer, edit: (h: Record<string, unknown>) => void): Buffer {
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<string, unknown>;
  const copy: Record<string, unknown> = Object.create(null);
  for (const k of Object.keys(header)) copy[k] = header[k];
  edit(copy);
  let json = JSON.stringify(copy);
  if (Object.hasOwn(copy, "__proto__")) {
    // JSON.stringify on a null-prototype object keeps `__proto__` as an own key.
    expect(json).toContain('"__proto__"');
  }
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const head = Buffer.from(json, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(head.length), 0);
  return Buffer.concat([len, head, buf.subarray(8 + n)]);
}
