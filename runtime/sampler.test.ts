import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { argmax, Sampler } from "./sampler.ts";

const logits = (xs: number[]) => Float32Array.from(xs);

describe("Sampler", () => {
  it("temperature 0 is greedy (ties go to the lower id)", () => {
    const s = new Sampler(4, { temperature: 0 });
    expect(s.sample(logits([1, 3, 3, 2]))).toBe(1);
  });

  it("the same seed gives the same draws; another seed gives others", () => {
    const draw = (seed: number) => {
      const s = new Sampler(50, { temperature: 1.5, topK: 0, topP: 1, minP: 0, seed });
      return Array.from({ length: 40 }, () =>
        s.sample(logits(Array.from({ length: 50 }, (_, i) => Math.sin(i)))),
      );
    };
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
  });

  it("top-k 1 is greedy at any temperature", () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: -20, max: 20, noNaN: true }), { minLength: 2, maxLength: 60 }),
        fc.nat(),
        (xs, seed) => {
          const s = new Sampler(xs.length, { temperature: 2, topK: 1, seed });
          expect(s.sample(logits(xs))).toBe(argmax(logits(xs)));
        },
      ),
    );
  });

  it("only tokens inside top-k, top-p and min-p are ever drawn", () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: -5, max: 5, noNaN: true }), { minLength: 5, maxLength: 80 }),
        fc.integer({ min: 1, max: 10 }),
        fc.double({ min: 0.05, max: 1, noNaN: true }),
        fc.nat(),
        (xs, k, p, seed) => {
          const s = new Sampler(xs.length, { temperature: 1, topK: k, topP: p, minP: 0, seed });
          const sorted = [...xs.keys()].sort((a, b) => xs[b]! - xs[a]! || a - b);
          for (let t = 0; t < 20; t++) expect(sorted.slice(0, k)).toContain(s.sample(logits(xs)));
        },
      ),
    );
  });

  it("min-p drops tokens far below the best", () => {
    const s = new Sampler(3, { temperature: 1, topK: 0, topP: 1, minP: 0.5, seed: 1 });
    // p ≈ [0.67, 0.24, 0.09]: only token 0 is within half of the best.
    for (let i = 0; i < 50; i++) expect(s.sample(logits([1, 0, -1]))).toBe(0);
  });

  it("the repetition penalty pushes recent tokens down", () => {
    const s = new Sampler(3, { temperature: 0, repetitionPenalty: 2 });
    expect(s.sample(logits([2, 1.5, 0]), [0])).toBe(1);
    expect(s.sample(logits([-1, -1.5, -3]), [1])).toBe(0);
  });

  it("rejects impossible settings", () => {
    expect(() => new Sampler(3, { temperature: -1 })).toThrow(/temperature/);
    expect(() => new Sampler(3, { topP: 0 })).toThrow(/top-p/);
    expect(() => new Sampler(3, { topK: 1.5 })).toThrow(/top-k/);
  });
});
