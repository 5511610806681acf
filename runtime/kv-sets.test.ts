import { describe, expect, it } from "vitest";
import { sequenceSet, splitBySequence } from "./kv-sets.ts";

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
});
