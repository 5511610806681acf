import { describe, expect, it } from "vitest";
import type { WeightEntry } from "../manifest.ts";
import { getScheme } from "../quant/index.ts";
import { interleaveRows8 } from "../quant/rows8.ts";
import { rows8Experts, storedRows8, toRows8 } from "./rows8-load.ts";

const q4 = getScheme("q4_0");
const rowBytes = (64 / 32) * 18;
const stack: WeightEntry = {
  key: "layer.w_gate",
  tensor: "blk.{i}.ffn_gate_exps.weight",
  index: "i",
  shape: [2, 16, 64],
  layers: 2,
  scheme: "mixed",
  schemes: ["q4_0", "f16"],
  rows8: true,
};
const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 37 + seed) & 255);
const interleaved = (b: Uint8Array) => {
  const out = b.slice();
  interleaveRows8(q4.wasm!.rows8!, out, 0, out.length / rowBytes, rowBytes, 18);
  return out;
};

describe("weights stored 8 rows interleaved, as they load", () => {
  it("only where the manifest says so and the layer's scheme has the layout", () => {
    expect(storedRows8(stack, 0)).toBe(true);
    expect(storedRows8(stack, 1)).toBe(false); // f16 has no such layout
    expect(storedRows8({ ...stack, rows8: undefined }, 0)).toBe(false);
  });

  it("in place, for a whole stack or one expert's rows", () => {
    const b = bytes(2 * 16 * rowBytes, 1);
    const want = interleaved(b);
    const whole = b.slice();
    toRows8(stack, 0, whole);
    expect(whole).toEqual(want);
    const second = b.slice();
    toRows8(stack, 0, second, 16 * rowBytes, 16 * rowBytes);
    expect(second.subarray(0, 16 * rowBytes)).toEqual(b.subarray(0, 16 * rowBytes));
    expect(second.subarray(16 * rowBytes)).toEqual(want.subarray(16 * rowBytes));
    const f16 = b.slice();
    toRows8(stack, 1, f16);
    expect(f16).toEqual(b);
  });

  it("an expert read from the file lands interleaved", () => {
    const b = bytes(2 * 16 * rowBytes, 2);
    const one = b.subarray(16 * rowBytes);
    const experts = rows8Experts(
      { read: (_l, _e, _r, dst) => dst.set(one) },
      {
        gate: stack,
        up: stack,
        down: stack,
      },
    );
    const dst = new Uint8Array(16 * rowBytes);
    experts.read(0, 1, "gate", dst);
    expect(dst).toEqual(interleaved(one));
  });
});
