import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bf16ToF32,
  f16Table,
  f16ToF32,
  f32Bits,
  f32FromBits,
  f32ToBf16,
  f32ToF16,
  readF16,
  writeF16,
} from "./half.ts";

// ggml's portable GGML_FP32_TO_FP16 (fp16_ieee_from_fp32_value, from FP16 by Maratyszcza), in f32 arithmetic:
// an independent formulation to check f32ToF16 against.
function ggmlFp32ToFp16(v: number): number {
  const f = Math.fround;
  const scaleToInf = f32FromBits(0x77800000);
  const scaleToZero = f32FromBits(0x08800000);
  let base = f(f(Math.abs(f(v)) * scaleToInf) * scaleToZero);
  const w = f32Bits(v);
  const shl1 = (w + w) >>> 0;
  const sign = (w & 0x80000000) >>> 0;
  let bias = (shl1 & 0xff000000) >>> 0;
  if (bias < 0x71000000) bias = 0x71000000;
  base = f(f32FromBits(((bias >>> 1) + 0x07800000) >>> 0) + base);
  const bits = f32Bits(base);
  const nonsign = ((bits >>> 13) & 0x7c00) + (bits & 0x0fff);
  return (sign >>> 16) | (shl1 > 0xff000000 ? 0x7e00 : nonsign);
}

describe("f16", () => {
  it("table holds every half's value", () => {
    expect(f16Table.length).toBe(65536);
    expect(f16Table[0x3c00]).toBe(1);
    expect(f16Table[0xc000]).toBe(-2);
    expect(f16Table[0x7bff]).toBe(65504);
    expect(f16Table[0x0001]).toBe(2 ** -24);
    expect(f16Table[0x03ff]).toBe(1023 * 2 ** -24);
    expect(f16Table[0x0400]).toBe(2 ** -14);
    expect(f16Table[0x7c00]).toBe(Number.POSITIVE_INFINITY);
    expect(f16Table[0xfc00]).toBe(Number.NEGATIVE_INFINITY);
    expect(Number.isNaN(f16Table[0x7e00])).toBe(true);
    expect(Object.is(f16Table[0x8000], -0)).toBe(true);
  });

  it("f32 → f16 → f32 is the identity on every finite half", () => {
    for (let h = 0; h < 65536; h++) {
      if ((h & 0x7c00) === 0x7c00) continue;
      expect(f32ToF16(f16ToF32(h))).toBe(h);
    }
  });

  it("rounds to nearest even, subnormals included, overflowing to infinity", () => {
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie, even stays
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie, rounds up to even
    expect(f32ToF16(2 ** -25)).toBe(0); // tie with 0
    expect(f32ToF16(Math.fround(2 ** -25 * 1.0000001))).toBe(1);
    expect(f32ToF16(3 * 2 ** -25)).toBe(2); // tie between subnormals 1 and 2
    expect(f32ToF16(65519)).toBe(0x7bff);
    expect(f32ToF16(65520)).toBe(0x7c00);
    expect(f32ToF16(-1e10)).toBe(0xfc00);
    expect(f32ToF16(Number.NaN)).toBe(0x7e00);
  });

  it("agrees with ggml's portable conversion on random f32 bit patterns", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (bits) => {
        const v = f32FromBits(bits);
        expect(f32ToF16(v)).toBe(ggmlFp32ToFp16(v));
      }),
      { numRuns: 20000 },
    );
    for (let e = 90; e < 160; e++) {
      for (const m of [0, 1, 0xfff, 0x1000, 0x1001, 0x2000, 0x3000, 0x7fffff]) {
        const v = f32FromBits((e << 23) | m);
        expect(f32ToF16(v)).toBe(ggmlFp32ToFp16(v));
        expect(f32ToF16(-v)).toBe(ggmlFp32ToFp16(-v));
      }
    }
  });

  it("reads and writes little-endian", () => {
    const b = new Uint8Array(4);
    expect(writeF16(b, 1, 1.5)).toBe(1.5);
    expect([...b]).toEqual([0, 0x00, 0x3e, 0]);
    expect(readF16(b, 1)).toBe(1.5);
  });
});

describe("bf16", () => {
  it("rounds to nearest even like ggml", () => {
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(f32ToBf16(f32FromBits(0x3f808000))).toBe(0x3f80); // tie, even stays
    expect(f32ToBf16(f32FromBits(0x3f818000))).toBe(0x3f82); // tie, up to even
    expect(f32ToBf16(f32FromBits(0x3f808001))).toBe(0x3f81);
    expect(f32ToBf16(f32FromBits(0x00000001))).toBe(0x0000); // subnormals round too, not flushed
    expect(f32ToBf16(f32FromBits(0x00018000))).toBe(0x0002);
    expect(f32ToBf16(f32FromBits(0x7f7fffff))).toBe(0x7f80); // overflow to infinity
  });

  it("keeps NaN a NaN (quieted) and infinities", () => {
    expect(f32ToBf16(f32FromBits(0x7f800001))).toBe(0x7fc0);
    expect(f32ToBf16(f32FromBits(0xff800001))).toBe(0xffc0);
    expect(Number.isNaN(bf16ToF32(f32ToBf16(Number.NaN)))).toBe(true);
    expect(f32ToBf16(Number.POSITIVE_INFINITY)).toBe(0x7f80);
    expect(bf16ToF32(0xff80)).toBe(Number.NEGATIVE_INFINITY);
  });

  it("is the top half of the rounded f32", () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true, noDefaultInfinity: true }), (v) => {
        const back = bf16ToF32(f32ToBf16(v));
        if (Number.isFinite(back))
          expect(Math.abs(back - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -8 + 2 ** -134);
      }),
    );
  });
});
