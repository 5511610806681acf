// Encode → decode error of every built-in on Gaussian weights (σ = 1) and on heavy-tailed weights
// (Student's t, 3 degrees of freedom, scaled to unit variance: rare outliers up to ~70σ), 4096 rows ×
// 256 each, against a bound stated per scheme (the measured value plus about 10%), and the ordering
// by bits. The RMSE table in docs/quantization.md is these figures.
import { describe, expect, it } from "vitest";
import { getScheme } from "../index.ts";
import { bitsPerWeight } from "../scheme.ts";
import { gaussian, rmse, studentT } from "../test-support.ts";

// scheme: [bits per weight, RMSE bound on N(0, 1), RMSE bound on t(3)]; measured RMSE in the comment.
const expected: Record<string, [number, number, number]> = {
  f32: [32, 0, 0], // exact
  f16: [16, 2.3e-4, 2.3e-4], // 2.076e-4, 2.068e-4
  bf16: [16, 1.85e-3, 1.85e-3], // 1.659e-3, 1.645e-3
  q8_0: [8.5, 5.9e-3, 9.4e-3], // 5.352e-3, 8.474e-3
  q4_0: [4.5, 9.5e-2, 0.141], // 8.592e-2, 1.276e-1
  q4_1: [5, 8.6e-2, 0.111], // 7.822e-2, 1.009e-1
  q5_0: [5.5, 4.7e-2, 7.3e-2], // 4.270e-2, 6.597e-2
  q5_1: [6, 4.2e-2, 5.4e-2], // 3.785e-2, 4.839e-2
  q2_k: [2.625, 0.33, 0.39], // 2.967e-1, 3.519e-1
  q3_k: [3.4375, 0.166, 0.209], // 1.509e-1, 1.894e-1
  q4_k: [4.5, 7.9e-2, 0.102], // 7.138e-2, 9.254e-2
  q5_k: [5.5, 4.0e-2, 5.2e-2], // 3.609e-2, 4.692e-2
  q6_k: [6.5625, 1.95e-2, 2.85e-2], // 1.774e-2, 2.565e-2
};

const inputs = {
  gaussian: gaussian(4096 * 256, 42),
  "student-t": studentT(4096 * 256, 43),
};
type Input = keyof typeof inputs;
const measured = new Map<string, number>();

function roundTripRmse(name: string, input: Input = "gaussian"): number {
  const cached = measured.get(`${name}/${input}`);
  if (cached !== undefined) return cached;
  const x = inputs[input];
  const s = getScheme(name);
  const q = new Uint8Array((x.length / s.blockSize) * s.blockBytes);
  s.encode(x, q);
  const y = new Float32Array(x.length);
  s.decode(q, y);
  const e = rmse(x, y);
  measured.set(`${name}/${input}`, e);
  return e;
}

for (const input of Object.keys(inputs) as Input[]) {
  const col = input === "gaussian" ? 1 : 2;
  describe(`round-trip RMSE on ${input === "gaussian" ? "N(0, 1)" : "Student's t(3)"}`, () => {
    for (const [name, row] of Object.entries(expected)) {
      const [bits] = row;
      const bound = row[col]!;
      it(`${name}: ${bits} bits/weight, RMSE ≤ ${bound}`, () => {
        expect(bitsPerWeight(getScheme(name))).toBe(bits);
        const e = roundTripRmse(name, input);
        if (bound === 0) expect(e).toBe(0);
        else expect(e).toBeLessThanOrEqual(bound);
      });
    }

    it("orders q8_0 < q6_k < q5_k < q4_k < q3_k < q2_k", () => {
      const order = ["q8_0", "q6_k", "q5_k", "q4_k", "q3_k", "q2_k"];
      for (let i = 1; i < order.length; i++) {
        expect(roundTripRmse(order[i - 1]!, input)).toBeLessThan(roundTripRmse(order[i]!, input));
      }
    });

    it("orders the legacy formats by bits: q5_1 < q5_0 < q4_1 < q4_0", () => {
      expect(roundTripRmse("q5_1", input)).toBeLessThan(roundTripRmse("q5_0", input));
      expect(roundTripRmse("q5_0", input)).toBeLessThan(roundTripRmse("q4_1", input));
      expect(roundTripRmse("q4_1", input)).toBeLessThan(roundTripRmse("q4_0", input));
    });
  });
}

describe("Student's t input", () => {
  it("has unit variance and heavy tails", () => {
    const t = inputs["student-t"];
    let s = 0;
    let max = 0;
    for (const v of t) {
      s += v * v;
      max = Math.max(max, Math.abs(v));
    }
    expect(Math.sqrt(s / t.length)).toBeCloseTo(1, 1);
    expect(max).toBeGreaterThan(20);
  });
});
