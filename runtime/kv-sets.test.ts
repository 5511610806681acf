import { describe, expect, it } from "vitest";
import { sequenceSet, splitBySequence, stepSets } from "./kv-sets.ts";

describe("KV sets", () => {
  it("splits the placed list per sequence, in order, and refuses a sequence past the last", () => {
    const sets = splitBySequence(["k0", "v0", "k1", "v1", "k2", "v2"], 2);
    expect(sets).toEqual([
      ["k0", "v0"],
      ["k1", "v1"],
      ["k2", "v2"],
    ]);
    expect(sequenceSet(sets, 1)).toEqual(["k1", "v1"]);
    expect(() => sequenceSet(sets, 3)).toThrow(new RangeError("sequence 3 does not exist (the model has 3)"));
  });

  it("a batched step's sets, in the step's order, after checking the step", () => {
    const sets = splitBySequence(["k0", "v0", "k1", "v1", "k2", "v2"], 2);
    expect(stepSets(sets, [5, 6], [3, 0], [2, 0], 4)).toEqual([
      ["k2", "v2"],
      ["k0", "v0"],
    ]);
    expect(() => stepSets(sets, [5, 6], [3], [2, 0], 4)).toThrow(
      /2 tokens need as many positions and sequences/,
    );
    expect(() => stepSets(sets, [5, 6], [3, 1], [1, 1], 4)).toThrow(/each sequence at most once/);
    expect(() => stepSets(sets, [5], [4], [1], 4)).toThrow(/position 4 is outside the context of 4/);
    expect(() => stepSets(sets, [5], [-1], [1], 4)).toThrow(/position -1 is outside/);
    expect(() => stepSets(sets, [5], [0], [3], 4)).toThrow(/sequence 3 does not exist/);
  });
});
