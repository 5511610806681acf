import { describe, expect, it } from "vitest";
import { getScheme } from "../quant/index.ts";
import { rng } from "../weights.ts";
import { decodeRouter, predictExperts, routerLogits, topK } from "./predict.ts";

// hidden 4, experts 4. x = [1, 2, 3, 4]: mean(x²) = 30/4 = 7.5, eps 0.5 → r = 1/√8.
const x = Float32Array.from([1, 2, 3, 4]);
const norm = Float32Array.from([1, 1, 2, 0.5]);
// normed direction (before r): x·norm = [1, 2, 6, 2]
const router = Float32Array.from(
  [
    [1, 0, 0, 0], // 1
    [0, 0, 1, 0], // 6
    [0, 1, 0, 1], // 2 + 2 = 4
    [-1, 0, 0, 3], // -1 + 6 = 5
  ].flat(),
);
const r = 1 / Math.sqrt(8);

describe("predictExperts", () => {
  it("rms_norm, then the router's logits, by hand", () => {
    const l = routerLogits(router, norm, 0.5, x);
    expect([...l].map((v) => +v.toFixed(6))).toEqual([1 * r, 6 * r, 4 * r, 5 * r].map((v) => +v.toFixed(6)));
  });

  it("the top-k of those logits, largest first", () => {
    const next = { router, norm, eps: 0.5 };
    expect(predictExperts(next, x, 2)).toEqual([1, 3]);
    expect(predictExperts(next, x, 3)).toEqual([1, 3, 2]);
    // The norm weight changes the winner: without it the logits are r·[1, 3, 6, 11].
    expect(predictExperts({ ...next, norm: Float32Array.from([1, 1, 1, 1]) }, x, 2)).toEqual([3, 2]);
  });

  it("a quantized router decodes to the rows it holds", () => {
    const s = getScheme("q8_0");
    const rows = new Float32Array(4 * 32).map((_, i) => ((i * 7) % 13) - 6);
    const packed = new Uint8Array(4 * s.blockBytes);
    s.encode(rows, packed);
    const back = decodeRouter(packed, "q8_0", 4, 32);
    const want = new Float32Array(rows.length);
    s.decode(packed, want);
    expect(back).toEqual(want);
    expect(() => decodeRouter(packed, "q8_0", 4, 64)).toThrow(
      "router of 4 × 64 in q8_0 takes 272 bytes, given 136",
    );
  });

  it("sizes that do not match are refused", () => {
    expect(() => routerLogits(router, Float32Array.from([1, 1]), 0.5, x)).toThrow(/do not match/);
    expect(() => routerLogits(router.subarray(1), norm, 0.5, x)).toThrow(/do not match/);
  });
});

describe("topK", () => {
  it("lower index first among equals, as the model's top-k", () => {
    expect(topK([3, 5, 5, 1, 5], 2)).toEqual([1, 2]);
    expect(topK([3, 5, 5, 1, 5], 4)).toEqual([1, 2, 4, 0]);
    expect(topK([1, 2], 5)).toEqual([1, 0]);
    const rand = rng(4);
    const v = Array.from({ length: 64 }, () => Math.floor(rand() * 20));
    const sorted = [...v.keys()].sort((a, b) => v[b]! - v[a]! || a - b);
    expect(topK(v, 8)).toEqual(sorted.slice(0, 8));
  });
});
