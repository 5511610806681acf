// Known answers: blocks built byte by byte from the layouts in llama.cpp's ggml-common.h, and the values
// dequantize_row_* gives for them, worked out by hand. These pin the layouts.
import { describe, expect, it } from "vitest";
import { getScheme } from "../index.ts";

// f16 bit patterns, little-endian byte pairs
const H_0_25 = [0x00, 0x34];
const H_0_5 = [0x00, 0x38];
const H_1 = [0x00, 0x3c];
const H_M1 = [0x00, 0xbc];
const H_2 = [0x00, 0x40];

function decode(name: string, block: Uint8Array): number[] {
  const s = getScheme(name);
  expect(block.length).toBe(s.blockBytes);
  const y = new Float32Array(s.blockSize);
  s.decode(block, y);
  return Array.from(y, (v) => (v === 0 ? 0 : v)); // −0 and 0 alike
}

function block(size: number, bytes: Record<number, number | number[]>): Uint8Array {
  const b = new Uint8Array(size);
  for (const [at, v] of Object.entries(bytes)) b.set(typeof v === "number" ? [v] : v, Number(at));
  return b;
}

describe("known answers", () => {
  it("f32: little-endian binary32", () => {
    expect(decode("f32", block(4, { 0: [0x00, 0x00, 0xc0, 0x3f] }))).toEqual([1.5]);
    expect(decode("f32", block(4, { 0: [0x00, 0x00, 0x10, 0xc0] }))).toEqual([-2.25]);
  });

  it("f16: little-endian binary16, subnormals and the largest half", () => {
    expect(decode("f16", new Uint8Array(H_1))).toEqual([1]);
    expect(decode("f16", new Uint8Array([0x00, 0xc0]))).toEqual([-2]);
    expect(decode("f16", new Uint8Array([0x01, 0x00]))).toEqual([2 ** -24]);
    expect(decode("f16", new Uint8Array([0xff, 0x7b]))).toEqual([65504]);
  });

  it("bf16: the top half of an f32", () => {
    expect(decode("bf16", new Uint8Array([0xc0, 0x3f]))).toEqual([1.5]);
    expect(decode("bf16", new Uint8Array([0x80, 0xbf]))).toEqual([-1]);
    expect(decode("bf16", new Uint8Array([0x80, 0x7f]))).toEqual([Number.POSITIVE_INFINITY]);
  });

  it("q8_0: d, then 32 int8", () => {
    const y = decode("q8_0", block(34, { 0: H_0_5, 2: 1, 3: 0xff, 4: 127, 33: 0x80 }));
    expect(y.slice(0, 3)).toEqual([0.5, -0.5, 63.5]);
    expect(y[31]).toBe(-64);
    expect(y.slice(3, 31).every((v) => v === 0)).toBe(true);
  });

  it("q4_0: d, then low nibbles = weights 0..15, high nibbles = 16..31, offset 8", () => {
    const qs: Record<number, number> = {};
    for (let j = 0; j < 16; j++) qs[2 + j] = 0x88;
    const y = decode("q4_0", block(18, { ...qs, 0: H_2, 2: 0x1f, 5: 0x80 }));
    expect(y[0]).toBe(14); // (15 − 8)·2
    expect(y[16]).toBe(-14); // (1 − 8)·2
    expect(y[3]).toBe(-16);
    expect(y[19]).toBe(0);
    expect(y.filter((v) => v !== 0).length).toBe(3);
  });

  it("q4_1: d, m, then nibbles; w = d·q + m", () => {
    const y = decode("q4_1", block(20, { 0: H_0_5, 2: H_M1, 4: 0xf0, 9: 0x37 }));
    expect(y[0]).toBe(-1);
    expect(y[16]).toBe(6.5);
    expect(y[5]).toBe(2.5);
    expect(y[21]).toBe(0.5);
    expect(y[1]).toBe(-1);
  });

  it("q5_0: d, qh (u32 LE: bit j = 5th bit of weight j), nibbles; offset 16", () => {
    // qh = 0x80010001: bits 0, 16 and 31
    const y = decode("q5_0", block(22, { 0: H_1, 2: [0x01, 0x00, 0x01, 0x80], 6: 0x0f, 21: 0xf0 }));
    expect(y[0]).toBe(15); // 15 | 16 − 16
    expect(y[16]).toBe(0); // 0 | 16 − 16
    expect(y[15]).toBe(-16);
    expect(y[31]).toBe(15); // 15 | 16 − 16
    expect(y[1]).toBe(-16);
    expect(y[17]).toBe(-16);
  });

  it("q5_1: d, m, qh, nibbles; w = d·q + m", () => {
    // qh bit 17: the 5th bit of weight 17
    const y = decode("q5_1", block(24, { 0: H_0_25, 2: H_1, 4: [0x00, 0x00, 0x02, 0x00], 9: 0x3a }));
    expect(y[1]).toBe(3.5); // 10·0.25 + 1
    expect(y[17]).toBe(5.75); // 19·0.25 + 1
    expect(y[0]).toBe(1);
    expect(y[16]).toBe(1);
  });

  it("q2_k: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin", () => {
    const y = decode(
      "q2_k",
      block(84, {
        0: 0x21, // sub-block 0: scale 1, min 2
        1: 0x03, // sub-block 1: scale 3, min 0
        2: 0x12, // sub-block 2: scale 2, min 1
        8: 0x40, // sub-block 8: scale 0, min 4
        16: 0x07, // qs[0]: weight 0 ← 3, weight 32 ← 1
        32: 0x02, // qs[16]: weight 16 ← 2
        48: 0x03, // qs[32]: weight 128 ← 3
        80: H_1,
        82: H_0_5,
      }),
    );
    expect(y[0]).toBe(2); // 1·1·3 − 0.5·2
    expect(y[1]).toBe(-1); // 0 − 0.5·2
    expect(y[16]).toBe(6); // 3·2
    expect(y[32]).toBe(1.5); // 2·1 − 0.5·1
    expect(y[33]).toBe(-0.5);
    expect(y[64]).toBe(0);
    expect(y[128]).toBe(-2); // 0·3 − 0.5·4
    expect(y[143]).toBe(-2);
    expect(y[144]).toBe(0);
  });

  it("q3_k: hmask[32], qs[64], 12 bytes of 6-bit scales, d", () => {
    const y = decode(
      "q3_k",
      block(110, {
        0: 0x01, // hmask[0] bit 0: high bit of weight 0
        16: 0x10, // hmask[16] bit 4: high bit of weight 144
        32: 0x03, // qs[0]: weight 0 low bits 3
        80: 0x01, // qs[48]: weight 144 low bits 1
        81: 0x02, // qs[49]: weight 145 low bits 2
        96: 0x02, // sub-block 0 low nibble 2
        97: 0xd0, // sub-block 9 low nibble 13
        104: [0xaa, 0x9a, 0xaa, 0xaa], // high 2 bits: 2 for every sub-block but 9 (1)
        108: H_0_5,
      }),
    );
    // sub-block 0: scale 34 − 32 = 2; sub-block 9: 29 − 32 = −3; the others 32 − 32 = 0
    expect(y[0]).toBe(3); // 0.5·2·(3 + 4 − 4)
    expect(y[1]).toBe(-4); // 0.5·2·(0 − 4)
    expect(y[15]).toBe(-4);
    expect(y.slice(16, 144).every((v) => v === 0)).toBe(true);
    expect(y[144]).toBe(-1.5); // 0.5·−3·(1 + 4 − 4)
    expect(y[145]).toBe(3); // 0.5·−3·(2 − 4)
    expect(y[146]).toBe(6); // 0.5·−3·−4
    expect(y[159]).toBe(6);
    expect(y[160]).toBe(0);
  });

  it("q4_k: d, dmin, 12 bytes of 6-bit scales and mins, qs[128]", () => {
    const y = decode(
      "q4_k",
      block(144, {
        0: H_0_5,
        2: H_1,
        4: 3, // sub-block 0 scale 3
        5: 0x80, // sub-block 5 scale, high 2 bits (2)
        8: 2, // sub-block 0 min 2
        9: 0x40, // sub-block 5 min, high 2 bits (1)
        13: 0x45, // sub-block 5: scale low 4 bits 5, min low 4 bits 4
        16: 0xa7, // qs[0]: weight 0 ← 7 (low), weight 32 ← 10 (high)
        80: 0xc0, // qs[64]: weight 160 ← 12 (high)
      }),
    );
    // sub-block 5: scale 2·16 + 5 = 37, min 16 + 4 = 20
    expect(y[0]).toBe(8.5); // 0.5·3·7 − 1·2
    expect(y[1]).toBe(-2);
    expect(y[32]).toBe(0); // sub-block 1: scale 0, min 0
    expect(y[160]).toBe(202); // 0.5·37·12 − 20
    expect(y[161]).toBe(-20);
    expect(y[128]).toBe(0); // sub-block 4
  });

  it("q5_k: d, dmin, 12 bytes of scales and mins, qh[32], qs[128]", () => {
    const y = decode(
      "q5_k",
      block(176, {
        0: H_0_25,
        2: H_0_5,
        4: 4, // sub-block 0 scale 4
        7: 10, // sub-block 3 scale 10
        8: 1, // sub-block 0 min 1
        11: 3, // sub-block 3 min 3
        16: 0x09, // qh[0]: bit 0 (weight 0), bit 3 (weight 96)
        48: 0x0f, // qs[0]: weight 0 low nibble 15
        80: 0x50, // qs[32]: weight 96 ← 5 (high nibble)
      }),
    );
    expect(y[0]).toBe(30.5); // 0.25·4·31 − 0.5·1
    expect(y[1]).toBe(-0.5);
    expect(y[96]).toBe(51); // 0.25·10·21 − 0.5·3
    expect(y[97]).toBe(-1.5);
    expect(y[32]).toBe(0);
    expect(y[64]).toBe(0);
  });

  it("q6_k: ql[128], qh[64], int8 scales[16], d", () => {
    const y = decode(
      "q6_k",
      block(210, {
        0: 0x05, // ql[0]: weight 0 low 4 bits 5
        32: 0x0a, // ql[32]: weight 32 low 4 bits 10
        80: 0x30, // ql[80]: weight 208 (half 1, +64, l = 16) low 4 bits 3
        128: 0x06, // qh[0]: weight 0 high bits 2, weight 32 high bits 1
        176: 0x30, // qh[48]: weight 208 high bits 3
        192: 2, // scale of sub-block 0
        194: 0xff, // scale of sub-block 2: −1
        205: 4, // scale of sub-block 13
        208: H_0_5,
      }),
    );
    expect(y[0]).toBe(5); // 0.5·2·(37 − 32)
    expect(y[1]).toBe(-32); // 0.5·2·(0 − 32)
    expect(y[32]).toBe(3); // 0.5·−1·(26 − 32)
    expect(y[33]).toBe(16); // 0.5·−1·−32
    expect(y[208]).toBe(38); // 0.5·4·(51 − 32)
    expect(y[209]).toBe(-64); // 0.5·4·−32
    expect(y[16]).toBe(0); // sub-block 1: scale 0
  });
});
