import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { f32Bits } from "./half.ts";
import { assertFinite, assertShapes, nearestInt, roundf } from "./numeric.ts";

// ggml's nearest_int, literally: add 1.5·2²³ in f32, take the mantissa bits.
function ggmlNearestInt(v: number): number {
  const bits = f32Bits(Math.fround(Math.fround(v) + 12582912));
  return (bits & 0x007fffff) - 0x00400000;
}

describe("nearestInt", () => {
  it("rounds half to even", () => {
    expect(nearestInt(0.5)).toBe(0);
    expect(nearestInt(1.5)).toBe(2);
    expect(nearestInt(2.5)).toBe(2);
    expect(nearestInt(-0.5)).toBe(0);
    expect(nearestInt(-1.5)).toBe(-2);
    expect(nearestInt(Math.fround(0.49999997))).toBe(0);
  });

  it("is ggml's bit trick for every f32, inside and outside its asserted range", () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e8, max: 1e8 }), (v) => {
        expect(nearestInt(v)).toBe(ggmlNearestInt(v));
      }),
      { numRuns: 5000 },
    );
  });
});

describe("roundf", () => {
  it("rounds half away from zero", () => {
    expect(roundf(0.5)).toBe(1);
    expect(roundf(-0.5)).toBe(-1);
    expect(roundf(2.5)).toBe(3);
    expect(roundf(Math.fround(0.49999997))).toBe(0);
    expect(roundf(-126.5)).toBe(-127);
  });
});

describe("input checks", () => {
  it("assertFinite names the scheme, the value and its index", () => {
    expect(() => assertFinite("q4_k", new Float32Array([1, 2, Number.NaN]))).toThrow(
      "q4_k: cannot encode non-finite value NaN at element 2",
    );
    expect(() => assertFinite("q4_k", new Float32Array([-Infinity]))).toThrow(/-Infinity at element 0/);
    expect(() => assertFinite("q4_k", new Float32Array([1, -3.4e38]))).not.toThrow();
  });

  it("assertShapes wants whole blocks and room for them", () => {
    expect(assertShapes("q8_0", 32, 34, 64, 68)).toBe(2);
    expect(() => assertShapes("q8_0", 32, 34, 48, 68)).toThrow(/not a whole number of 32-element blocks/);
    expect(() => assertShapes("q8_0", 32, 34, 64, 67)).toThrow(/need 68 bytes/);
  });
});
