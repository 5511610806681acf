// moec against llama.cpp (node-llama-cpp's prebuilt CPU binaries) on the same small random
// Mixtral-shaped GGUF files, written by moec's own writer: the prompt's token ids, 32 greedy tokens,
// and the top-5 next-token probabilities at every position where both were fed the same tokens.
//
// llama.cpp runs with 2 threads, a 256-token context, no flash attention and an f32 KV cache (its
// default f16 cache would round K and V, which moec keeps in f32).
//
// Why the tolerances differ by type. For f32 weights both sides do the same arithmetic in f32, up to
// summation order and ggml's vectorized expf. For the others, ggml's CPU matmul does not multiply the
// weights by the activations as they are: it first converts the activation vector to the weight type's
// `vec_dot_type`, rounding each activation to f16 for f16 weights (relative error ≤ 2⁻¹¹), and to q8_0
// for q8_0 and q4_0 weights (8 bits with one f16 scale per block of 32: an error of up to 1/254 of the
// block's largest element), then dots those. moec's stock kernels dot the f32 activations directly, so
// its logits differ from llama.cpp's by that rounding: ~1e-3 for f16, a few 1e-2 for q8_0 and q4_0. The
// last test of each q8_0/q4_0 case removes exactly that difference (ggml-numerics.ts) and sees the logits
// agree to f32 rounding, which shows that the rounding is the whole difference.
//
// Why the models are shaped. Scaling the output head makes a distribution peakier but scales the
// rounding differences by the same factor, so it never makes a greedy choice safer. In a plain random
// model the top two logits are often closer than llama.cpp's q8_0 rounding moves them, and two experts
// are often near a tie, and the first such step sends the two runs apart. So the f16, q8_0 and q4_0
// files are written with `successorPeak` (each token has a successor whose logit it raises by a fixed
// fraction of the logits' size: a greedy margin that no rounding overturns), embeddings large enough
// that the token is the main part of the residual stream (the layers add to it, with their rounding
// differences, rather than replace it, so expert choices are rarely near a rounding-sized tie), and a
// router scaled up so that the chosen experts' weights are unequal. Their greedy tokens then follow the
// successors, so for them the 32 tokens check little beyond the margins; the logits and probabilities
// at every position, which the layers do move, carry the comparison, and the q8_0/q4_0 comparison with
// ggml's rounding is the sharp one. The test checks that every greedy margin is several times the
// largest logit difference, i.e. that the tokens agree because the engines do, not by luck.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RandomMixtralOptions, writeRandomMixtralGguf } from "../../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../../runtime/checkpoint/test-support.ts";
import {
  type Agreement,
  agreement,
  comparable,
  decisiveShape,
  loadMoec,
  maxAbsDiff,
  moecGreedy,
  runBoth,
  type Trace,
} from "./engines.ts";

const PROMPT = "The cat and the dog were in the house, 42 of them! Où est le café?";
const GENERATE = 32;
const CONTEXT = 256;
const THREADS = 2;
/** Greedy margins must be at least this many times the largest logit difference. */
const DECISIVE = 4;

type WeightType = "f32" | "f16" | "q8_0" | "q4_0";

interface Case {
  type: WeightType;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  experts: number;
  topK: number;
  vocab: number;
  ropeTheta: number;
  eps: number;
}

// type, hidden, layers, heads, KV heads, ffn, experts, top-k, vocab, RoPE θ, RMS ε
const CASES: Case[] = (
  [
    ["f32", 64, 2, 4, 2, 96, 4, 2, 300, 1e4, 1e-5],
    ["f16", 128, 3, 8, 8, 160, 8, 2, 500, 1e6, 1e-6],
    ["q8_0", 256, 2, 8, 2, 384, 8, 2, 1000, 1e6, 1e-5],
    ["q4_0", 128, 4, 4, 1, 256, 6, 3, 700, 5e5, 1e-6],
    ["q8_0", 192, 2, 6, 3, 256, 4, 1, 400, 1e4, 1e-5],
    ["q4_0", 64, 3, 2, 2, 128, 3, 2, 350, 1e4, 1e-5],
  ] as const
).map(([type, hidden, layers, heads, kvHeads, ffn, experts, topK, vocab, ropeTheta, eps]) => ({
  type,
  hidden,
  layers,
  heads,
  kvHeads,
  ffn,
  experts,
  topK,
  vocab,
  ropeTheta,
  eps,
}));

/**
 * How each type's files are shaped (see the top of the file). f32 needs nothing: the arithmetic is the
 * same, so its margins only have to beat f32 rounding, and a plain random model, whose greedy path
 * depends on the whole context, keeps every op in play. f16's rounding is small enough for embeddings of
 * rms 2; q8_0 and q4_0 take rms 4, so that no expert choice comes near a rounding-sized tie.
 */
const SHAPE: Record<WeightType, (hidden: number) => Partial<RandomMixtralOptions>> = {
  f32: () => ({ headScale: 4 }),
  f16: (h) => decisiveShape(h, 2, 10),
  q8_0: (h) => decisiveShape(h),
  q4_0: (h) => decisiveShape(h),
};

interface Tol {
  p: number;
  logp: number;
}

/**
 * Top-5 tolerances per weight type, on |p_moec − p_llama| and |ln p_moec − ln p_llama| for llama.cpp's
 * five most likely next tokens. `tight` (4–15× the largest differences measured here; run with
 * MOEC_LLAMA_REPORT=1 to print them) must hold at 90% of the positions and `loose` at all: it leaves room
 * for a rare near-tie between two experts that the two roundings decide differently (none occurs here,
 * but a one-ulp difference on another CPU can make one).
 */
const TOLERANCE: Record<WeightType, { tight: Tol; loose: Tol }> = {
  f32: { tight: { p: 1e-5, logp: 1e-4 }, loose: { p: 1e-5, logp: 1e-4 } },
  f16: { tight: { p: 1e-3, logp: 1e-2 }, loose: { p: 1e-2, logp: 0.1 } },
  q8_0: { tight: { p: 1e-2, logp: 0.2 }, loose: { p: 0.1, logp: 1.5 } },
  q4_0: { tight: { p: 1e-2, logp: 0.2 }, loose: { p: 0.1, logp: 1.5 } },
};
const TIGHT_SHARE = 0.9;

/**
 * q8_0 and q4_0 with ggml's activation rounding: the median position's largest logit difference, and a
 * bound for the rare position where a one-ulp difference in an f32 op (RMSNorm, softmax, RoPE) flips
 * one q8_0 rounding, which then spreads. (f16 is left out: its rounding grid is so fine that such flips
 * happen at most positions, so emulating it leaves the difference near the stock one.)
 */
const GGML_AGREE = { median: 1e-4, worst: 0.25 };

const describeCase = (c: Case) =>
  `${c.type}: hidden ${c.hidden}, ${c.layers} layers, ${c.heads} heads / ${c.kvHeads} KV, ffn ${c.ffn}, ` +
  `${c.experts} experts top-${c.topK}, vocab ${c.vocab}, θ ${c.ropeTheta}, ε ${c.eps}`;

const quantile = (xs: readonly number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))]!;
const share = (xs: readonly number[], bound: number) => xs.filter((x) => x <= bound).length / xs.length;
const fmt = (x: number) => x.toExponential(1);

interface Measured extends Agreement {
  /** Per compared position, the ggml-rounding variant's largest |Δlogit|. */
  ggml?: number[];
}

const { dir, cleanup } = scratchDir();
const report: string[] = [];
afterAll(() => {
  cleanup();
  // MOEC_LLAMA_REPORT=1 npx vitest run test/llama/compare.test.ts prints the measured figures.
  if (process.env.MOEC_LLAMA_REPORT) console.log(report.join("\n"));
});

describe.each(CASES.map((c, i) => ({ c, i, name: describeCase(c) })))(
  "moec vs llama.cpp, $name",
  ({ c, i }) => {
    const quantized = c.type === "q8_0" || c.type === "q4_0";
    let prompt: number[];
    let llamaPrompt: number[];
    let ours: Trace;
    let batched: Trace;
    let theirs: Trace;
    let ggml: Trace | undefined;
    let m: Measured;

    beforeAll(async () => {
      const path = `${dir}/case-${i}-${c.type}.gguf`;
      writeRandomMixtralGguf(path, {
        ...c,
        ...SHAPE[c.type](c.hidden),
        seed: 100 + i,
        context: CONTEXT,
        name: `llama.cpp comparison ${i}`,
      });
      ({ prompt, llamaPrompt, ours, batched, theirs } = await runBoth(path, {
        text: PROMPT,
        generate: GENERATE,
        vocab: c.vocab,
        contextSize: CONTEXT,
        threads: THREADS,
      }));
      if (quantized) {
        const variant = await loadMoec(path, CONTEXT, { ggml: true });
        try {
          ggml = moecGreedy(variant.model, prompt, GENERATE);
        } finally {
          variant.close();
        }
      }

      m = agreement(prompt.length, GENERATE, ours, theirs);
      if (ggml) {
        const g = ggml;
        m.ggml = Array.from({ length: comparable(prompt.length, GENERATE, g, theirs) }, (_, p) =>
          maxAbsDiff(g.logits[p]!, theirs.logits[p]!),
        );
      }
      report.push(
        `${describeCase(c)}: ${prompt.length} prompt tokens, ${m.logit.length} positions compared\n` +
          `  min greedy margin ${m.minMargin.toFixed(2)}; |Δlogit| max ${fmt(Math.max(...m.logit))}, ` +
          `median ${fmt(quantile(m.logit, 0.5))}; top-5 |Δp| max ${fmt(Math.max(...m.dp))} ` +
          `(90th pct ${fmt(quantile(m.dp, TIGHT_SHARE))}), |Δ ln p| max ${fmt(Math.max(...m.dlogp))} ` +
          `(90th pct ${fmt(quantile(m.dlogp, TIGHT_SHARE))})` +
          (m.ggml
            ? `\n  with ggml's rounding: |Δlogit| median ${fmt(quantile(m.ggml, 0.5))}, max ${fmt(Math.max(...m.ggml))}`
            : ""),
      );
    }, 60_000);

    it("tokenizes the prompt to llama.cpp's ids", () => {
      expect(prompt).toEqual(llamaPrompt);
    });

    it(`generates the same ${GENERATE} greedy tokens`, () => {
      expect(ours.tokens).toEqual(theirs.tokens);
    });

    it(`generates the same ${GENERATE} greedy tokens with the prompt through the batched prefill`, () => {
      expect(batched.tokens).toEqual(theirs.tokens);
      const last = prompt.length - 1;
      if (quantized) {
        // Activations quantized to int8 blocks as llama.cpp does for these schemes: the last position's
        // logits are as close to llama.cpp's as stepping's are anywhere.
        expect(maxAbsDiff(batched.logits[0]!, theirs.logits[last]!)).toBeLessThanOrEqual(
          Math.max(...m.logit),
        );
      } else {
        // f32 matrix-matrix kernels: the token-by-token logits, bit for bit.
        expect(batched.logits[0]).toEqual(ours.logits[last]);
      }
    });

    it(`makes decisive greedy choices (every margin ≥ ${DECISIVE}× the largest logit difference)`, () => {
      expect(m.minMargin).toBeGreaterThanOrEqual(DECISIVE * Math.max(...m.logit));
    });

    const { tight, loose } = TOLERANCE[c.type];
    it(`agrees on the top-5 probabilities: |Δp| ≤ ${tight.p}, |Δ ln p| ≤ ${tight.logp} at ${TIGHT_SHARE * 100}% of positions, ≤ ${loose.p}, ${loose.logp} at all`, () => {
      expect(m.logit.length).toBe(prompt.length + GENERATE - 1);
      expect(share(m.dp, tight.p)).toBeGreaterThanOrEqual(TIGHT_SHARE);
      expect(share(m.dlogp, tight.logp)).toBeGreaterThanOrEqual(TIGHT_SHARE);
      expect(Math.max(...m.dp)).toBeLessThanOrEqual(loose.p);
      expect(Math.max(...m.dlogp)).toBeLessThanOrEqual(loose.logp);
    });

    if (quantized) {
      it("agrees to f32 rounding once activations are rounded to q8_0 the way ggml does it", () => {
        expect(ggml!.tokens).toEqual(theirs.tokens);
        expect(quantile(m.ggml!, 0.5)).toBeLessThanOrEqual(GGML_AGREE.median);
        expect(Math.max(...m.ggml!)).toBeLessThanOrEqual(GGML_AGREE.worst);
      });
    }
  },
);
