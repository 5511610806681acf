import { describe, expect, it } from "vitest";
import { minK4, packScaleMinK4, packScaleQ3K, scaleK4, scaleQ3K } from "./kquant-scales.ts";

describe("k-quant scale packing", () => {
  it("q4_k/q5_k: 8 (scale, min) pairs of 6 bits round-trip through 12 bytes", () => {
    for (let t = 0; t < 200; t++) {
      const ls = Array.from({ length: 8 }, (_, j) => (t * 7 + j * 13) % 64);
      const lm = Array.from({ length: 8 }, (_, j) => (t * 11 + j * 5 + 3) % 64);
      const b = new Uint8Array(14);
      for (let j = 0; j < 8; j++) packScaleMinK4(b, 1, j, ls[j]!, lm[j]!);
      expect(b[0]).toBe(0);
      expect(b[13]).toBe(0);
      for (let j = 0; j < 8; j++) {
        expect(scaleK4(b, 1, j)).toBe(ls[j]);
        expect(minK4(b, 1, j)).toBe(lm[j]);
      }
    }
  });

  it("q4_k/q5_k: the bit positions of ggml's get_scale_min_k4", () => {
    const b = new Uint8Array(12);
    packScaleMinK4(b, 0, 0, 0, 0);
    packScaleMinK4(b, 0, 4, 0b110101, 0b101100);
    // j = 4: scale low 4 bits in b[8] low nibble, high 2 in b[0] bits 6..7; min low 4 in b[8] high, high 2 in b[4]
    expect(b[8]).toBe(0b1100_0101);
    expect(b[0]).toBe(0b11 << 6);
    expect(b[4]).toBe(0b10 << 6);
  });

  it("q3_k: 16 signed 6-bit scales round-trip through 12 bytes", () => {
    for (let t = 0; t < 200; t++) {
      const l = Array.from({ length: 16 }, (_, j) => (t * 5 + j * 23) % 64);
      const b = new Uint8Array(12);
      for (let j = 0; j < 16; j++) packScaleQ3K(b, 0, j, l[j]!);
      for (let j = 0; j < 16; j++) expect(scaleQ3K(b, 0, j)).toBe(l[j]! - 32);
    }
  });

  it("q3_k: the bit positions of dequantize_row_q3_K", () => {
    const b = new Uint8Array(12);
    for (let j = 0; j < 16; j++) packScaleQ3K(b, 0, j, j === 9 ? 0b01_1101 : 0);
    expect(b[1]).toBe(0xd0); // low 4 bits of scale 9 in the high nibble of byte 9 − 8
    expect(b[9]).toBe(0b01 << 4); // high 2 bits at byte 8 + 9 % 4, shift 2·⌊9/4⌋
  });
});
