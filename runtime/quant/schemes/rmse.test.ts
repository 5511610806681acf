// Encode → decode error of every built-in on Gaussian weights (σ = 1, 4096 rows × 256), against a bound
// stated per scheme (the measured value plus about 10%), and the k-quant ordering by bits.
import { describe, expect, it } from "vitest";
import { getScheme } from "../index.ts";
import { bitsPerWeight } from "../scheme.ts";
import { gaussian, rmse } from "../test-support.ts";

// scheme: [bits per weight, RMSE bound]; measured RMSE in the comment.
const expected: Record<string, [number, number]> = {
  f32: [32, 0], // exact
  f16: [16, 2.3e-4], // 2.076e-4
  bf16: [16, 1.85e-3], // 1.659e-3
  q8_0: [8.5, 5.9e-3], // 5.352e-3
  q4_0: [4.5, 9.5e-2], // 8.592e-2
  q4_1: [5, 8.6e-2], // 7.822e-2
  q5_0: [5.5, 4.7e-2], // 4.270e-2
  q5_1: [6, 4.2e-2], // 3.785e-2
  q2_k: [2.625, 0.33], // 2.967e-1
  q3_k: [3.4375, 0.166], // 1.509e-1
  q4_k: [4.5, 7.9e-2], // 7.138e-2
  q5_k: [5.5, 4.0e-2], // 3.609e-2
  q6_k: [6.5625, 1.95e-2], // 1.774e-2
};

const x = gaussian(4096 * 256, 42);
const measured = new Map<string, number>();

function roundTripRmse(name: string): number {
  const cached = measured.get(name);
  if (cached !== undefined) return cached;
  const s = getScheme(name);
  const q = new Uint8Array((x.length / s.blockSize) * s.blockBytes);
  s.encode(x, q);
  const y = new Float32Array(x.length);
  s.decode(q, y);
  const e = rmse(x, y);
  measured.set(name, e);
  return e;
}

describe("round-trip RMSE on N(0, 1)", () => {
  for (const [name, [bits, bound]] of Object.entries(expected)) {
    it(`${name}: ${bits} bits/weight, RMSE ≤ ${bound}`, () => {
      expect(bitsPerWeight(getScheme(name))).toBe(bits);
      const e = roundTripRmse(name);
      if (bound === 0) expect(e).toBe(0);
      else expect(e).toBeLessThanOrEqual(bound);
    });
  }

  it("orders q8_0 < q6_k < q5_k < q4_k < q3_k < q2_k", () => {
    const order = ["q8_0", "q6_k", "q5_k", "q4_k", "q3_k", "q2_k"];
    for (let i = 1; i < order.length; i++) {
      expect(roundTripRmse(order[i - 1]!)).toBeLessThan(roundTripRmse(order[i]!));
    }
  });

  it("orders the legacy formats by bits: q5_1 < q5_0 < q4_1 < q4_0", () => {
    expect(roundTripRmse("q5_1")).toBeLessThan(roundTripRmse("q5_0"));
    expect(roundTripRmse("q5_0")).toBeLessThan(roundTripRmse("q4_1"));
    expect(roundTripRmse("q4_1")).toBeLessThan(roundTripRmse("q4_0"));
  });
});
