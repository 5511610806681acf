// Every built-in scheme that has a GGUF type, against llama.cpp: one small random Mixtral-shaped f32
// model (hidden and ffn 256, so that the k-quants' 256-element blocks fit every row), quantized by
// `quantizeGguf` the way `moec quantize --scheme NAME` does it (every matrix NAME; norms and router
// stay f32), then loaded by llama.cpp (node-llama-cpp's prebuilt CPU binaries) and by moec (the model
// `moec run --weights FILE` runs). Both must generate the same greedy tokens from the same prompt ids,
// and agree on llama.cpp's top-5 next-token probabilities at every position where both were fed the
// same tokens. moec wrote the bytes and llama.cpp reads them, and moec reads them back: a block layout
// that differs from GGUF's in the encoder or the decoder (a scale's bits, a nibble's place) moves
// every logit by far more than the tolerances below, and an unreadable file stops llama.cpp's loader.
// The same holds for a file quantized with a spec's rules (`moec quantize --rules`), mixing schemes.
//
// llama.cpp runs with 1 thread (its threads spin while they wait, which on a busy 2-core machine
// costs seconds), no flash attention and an f32 KV cache, as in compare.test.ts. The file is shaped
// with `decisiveShape`, as compare.test.ts does for quantized files, so that greedy choices are
// decisive under activation rounding; the test checks that every greedy margin is several times the
// largest logit difference, i.e. that the tokens agree because the engines do.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importGguf } from "../../compiler/import.ts";
import { compileSource } from "../../compiler/lang/frontend.ts";
import { ruleChoice } from "../../compiler/quantize-rules.ts";
import { pickModel } from "../../compiler/select.ts";
import { openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import {
  type QuantizeOptions,
  type QuantizeReport,
  quantizeGguf,
  uniformChoice,
} from "../../runtime/checkpoint/quantize.ts";
import { type RandomMixtralOptions, writeRandomMixtralGguf } from "../../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../../runtime/checkpoint/test-support.ts";
import { schemes } from "../../runtime/quant/index.ts";
import { type Agreement, agreement, type BothRuns, decisiveShape, runBoth } from "./engines.ts";

const PROMPT = "the cat and the dog";
const GENERATE = 24;
const CONTEXT = 128;
const THREADS = 1;
/** Greedy margins must be at least this many times the largest logit difference. */
const DECISIVE = 4;

const HIDDEN = 256;
const MODEL: RandomMixtralOptions = {
  hidden: HIDDEN,
  layers: 1,
  heads: 4,
  kvHeads: 2,
  ffn: 256,
  experts: 3,
  topK: 2,
  vocab: 272,
  ropeTheta: 1e4,
  eps: 1e-5,
  context: CONTEXT,
  type: "f32",
  seed: 31,
  name: "scheme comparison",
  ...decisiveShape(HIDDEN),
};

/** The schemes under test: the registry's, those GGUF can store. */
const GGUF_SCHEMES = schemes()
  .filter((s) => s.ggmlType !== undefined)
  .map((s) => s.name);

interface Tol {
  /** Bound on |logit_moec − logit_llama| over the whole vocabulary, at every compared position. */
  logit: number;
  /** Bound on |p_moec − p_llama| over llama.cpp's five most likely next tokens, at every compared position. */
  p: number;
  /** Bound on |ln p_moec − ln p_llama| over the same tokens. */
  logp: number;
}

/**
 * Why each tolerance. ggml's CPU matmul converts the activations to the weight type's `vec_dot_type`
 * before it dots them with a weight row; moec dots the f32 activations directly. So the difference
 * between the two is the rounding of the activations, which depends on the scheme's `vec_dot_type`:
 *
 *   f32               none: the same f32 arithmetic up to summation order and ggml's vectorized expf;
 *   f16               activations rounded to f16: relative error ≤ 2⁻¹¹, logits within ~1e-3;
 *   bf16              rounded to bf16: relative error ≤ 2⁻⁸, 8× f16's, logits within ~1e-2;
 *   q8_0 q4_0 q5_0    quantized to q8_0 (8 bits, one f16 scale per 32): an error of up to 1/254 of the
 *                     block's largest element, logits within a few 1e-2;
 *   q4_1 q5_1         quantized to q8_1 (q8_0 and the block's sum, for the weights' minimum): the same;
 *   q2_k … q6_k       quantized to q8_K (8 bits, one f32 scale per 256): the largest element of 256
 *                     sets the step, so a little more than q8_0's, logits within ~5e-2.
 *
 * Each bound is 3–8× the largest difference measured with three seeds (MOEC_LLAMA_REPORT=1 prints the
 * figures); the logit bounds, the sharpest, about 3×. The top-5 |Δp| stay small because the successor
 * peak gives the top token most of the probability; |Δ ln p| weighs the other four fairly. A layout
 * that differs from GGUF's moves logits by whole units: checked once by reading a sub-block's scale
 * from its neighbour in q4_k's dot (|Δlogit| 2.3, top-5 |Δp| 0.07), the high bit of element j + 16
 * from bit j in q5_0's, or swapping two sub-blocks' scale bits in q3_k's (the tokens part after a few
 * steps). Even one flipped sign bit, of one row's scale in attn_v, fails the q4_k bounds (|Δlogit|
 * 0.47, |Δ ln p| 0.35) and the q8_0 logit bound (one block of 32: 0.13); doubling that q4_k scale
 * instead (0.14) stays under the q8_K rounding.
 */
const TOLERANCE: Record<string, Tol> = {
  f32: { logit: 1e-4, p: 1e-5, logp: 1e-4 },
  f16: { logit: 5e-3, p: 2e-4, logp: 1e-2 },
  bf16: { logit: 4e-2, p: 2e-3, logp: 5e-2 },
  q8_0: { logit: 0.1, p: 3e-3, logp: 0.15 },
  q4_0: { logit: 0.1, p: 3e-3, logp: 0.15 },
  q4_1: { logit: 0.1, p: 3e-3, logp: 0.15 },
  q5_0: { logit: 0.1, p: 3e-3, logp: 0.15 },
  q5_1: { logit: 0.1, p: 3e-3, logp: 0.15 },
  q2_k: { logit: 0.15, p: 5e-3, logp: 0.2 },
  q3_k: { logit: 0.15, p: 5e-3, logp: 0.2 },
  q4_k: { logit: 0.15, p: 5e-3, logp: 0.2 },
  q5_k: { logit: 0.15, p: 5e-3, logp: 0.2 },
  q6_k: { logit: 0.15, p: 5e-3, logp: 0.2 },
};

/** Rules in the manner of llama.cpp's Q4_K_M, with more kinds mixed in: five schemes in one file. */
const MIXED_RULES = `
quantization mixed for m {
  layer[*].w_gate, layer[*].w_up : q4_k
  layer[*].w_down, layer[*].wv : q6_k
  layer[*].wq, layer[*].wk, layer[*].wo : q5_0
  tok_embed : q8_0
  default : q3_k
}
`;
/** What the rules give each matrix (checked), and the tolerance: the k-quants' (q8_K rounding) is the widest. */
const MIXED_EXPECTED: Record<string, string> = {
  ffn_gate_exps: "q4_k",
  ffn_up_exps: "q4_k",
  ffn_down_exps: "q6_k",
  attn_v: "q6_k",
  attn_q: "q5_0",
  attn_k: "q5_0",
  attn_output: "q5_0",
  token_embd: "q8_0",
  output: "q3_k",
};

interface Case {
  name: string;
  tol: Tol | undefined;
  /** The scheme each matrix must have in the quantized file, by tensor name without `blk.N.` and `.weight`. */
  expected: (kind: string) => string | undefined;
  choose: (source: string) => QuantizeOptions["choose"];
}

const CASES: Case[] = [
  ...GGUF_SCHEMES.map(
    (name): Case => ({
      name,
      tol: TOLERANCE[name],
      expected: () => name,
      choose: () => uniformChoice(name),
    }),
  ),
  {
    name: "mixed (spec rules)",
    tol: TOLERANCE.q4_k,
    expected: (kind) => MIXED_EXPECTED[kind],
    choose: (source) => {
      const file = openGguf(source);
      let text: string;
      try {
        text = importGguf(file, { name: "m" }).source + MIXED_RULES;
      } finally {
        file.close();
      }
      const spec = compileSource(text, "mixed.moe");
      const model = pickModel(spec);
      const quant = spec.quants.find((q) => q.name === "mixed")!;
      return ruleChoice(model, quant, undefined, "mixed.moe");
    },
  },
];

const { dir, cleanup } = scratchDir();
const source = `${dir}/source-f32.gguf`;
const report: string[] = [];
const fmt = (x: number) => x.toExponential(1);

beforeAll(() => {
  writeRandomMixtralGguf(source, MODEL);
});
afterAll(() => {
  cleanup();
  // MOEC_LLAMA_REPORT=1 npx vitest run test/llama/schemes.test.ts prints the measured figures.
  if (process.env.MOEC_LLAMA_REPORT) console.log(report.join("\n"));
});

for (const c of CASES)
  describe(`${c.name}: moec quantize, then llama.cpp and moec on the file`, () => {
    let quantized: QuantizeReport;
    let runs: BothRuns;
    let m: Agreement;

    beforeAll(async () => {
      const path = `${dir}/${c.name.replace(/\W+/g, "-")}.gguf`;
      const started = performance.now();
      quantized = quantizeGguf(source, path, { choose: c.choose(source) });
      runs = await runBoth(path, {
        text: PROMPT,
        generate: GENERATE,
        vocab: MODEL.vocab,
        contextSize: CONTEXT,
        threads: THREADS,
      });
      m = agreement(runs.prompt.length, GENERATE, runs.ours, runs.theirs);
      report.push(
        `${c.name.padEnd(18)} tokens ${runs.ours.tokens.join(",") === runs.theirs.tokens.join(",") ? "identical" : "DIFFER"}, ` +
          `${m.logit.length} positions; min margin ${m.minMargin.toFixed(2)}; |Δlogit| max ${fmt(Math.max(...m.logit))}; ` +
          `top-5 |Δp| max ${fmt(Math.max(...m.dp))}, |Δ ln p| max ${fmt(Math.max(...m.dlogp))}; ` +
          `${((performance.now() - started) / 1000).toFixed(1)} s`,
      );
    }, 60_000);

    it("holds each matrix in its scheme, norms and router in f32", () => {
      for (const t of quantized.tensors) {
        const kind = t.name.replace(/^blk\.\d+\./, "").replace(/\.weight$/, "");
        const want = kind.endsWith("_norm") || kind === "ffn_gate_inp" ? "f32" : c.expected(kind);
        expect(`${t.name}: ${t.to}`).toBe(`${t.name}: ${want}`);
      }
    });

    it("gives llama.cpp's prompt ids", () => {
      expect(runs.prompt).toEqual(runs.llamaPrompt);
    });

    it(`generates the same ${GENERATE} greedy tokens`, () => {
      expect(runs.ours.tokens).toEqual(runs.theirs.tokens);
    });

    it(`makes decisive greedy choices (every margin ≥ ${DECISIVE}× the largest logit difference)`, () => {
      expect(m.minMargin).toBeGreaterThanOrEqual(DECISIVE * Math.max(...m.logit));
    });

    it(`agrees on every logit within ${c.tol?.logit}`, () => {
      expect(c.tol, `no tolerance stated for ${c.name}: add one to TOLERANCE`).toBeDefined();
      expect(m.logit.length, "positions compared (the greedy tokens diverged)").toBe(
        runs.prompt.length + GENERATE - 1,
      );
      expect(Math.max(...m.logit)).toBeLessThanOrEqual(c.tol!.logit);
    });

    it(`agrees on the top-5 probabilities within |Δp| ≤ ${c.tol?.p}, |Δ ln p| ≤ ${c.tol?.logp}`, () => {
      expect(c.tol, `no tolerance stated for ${c.name}: add one to TOLERANCE`).toBeDefined();
      expect(m.dp.length, "positions compared (the greedy tokens diverged)").toBe(
        runs.prompt.length + GENERATE - 1,
      );
      expect(Math.max(...m.dp)).toBeLessThanOrEqual(c.tol!.p);
      expect(Math.max(...m.dlogp)).toBeLessThanOrEqual(c.tol!.logp);
    });
  });
