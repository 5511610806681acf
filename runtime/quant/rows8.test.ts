import { describe, expect, it } from "vitest";
import { getScheme, schemes } from "./index.ts";
import { deinterleaveRows8, interleaveRows8, ROWS8 } from "./rows8.ts";

describe("8 interleaved rows", () => {
  for (const s of schemes().filter((x) => x.wasm?.rows8)) {
    const layout = s.wasm!.rows8!;

    it(`${s.name}: the layout is a permutation of a step's 8 blocks`, () => {
      expect(layout.order.length).toBe(ROWS8 * s.blockBytes);
      expect([...layout.order].sort((a, b) => a - b)).toEqual([...Array(ROWS8 * s.blockBytes).keys()]);
    });

    it(`${s.name}: repacking in place and back gives the rows again, and leaves the bytes around them`, () => {
      const rows = 24;
      const rowBytes = 5 * s.blockBytes;
      const u8 = Uint8Array.from({ length: 7 + rows * rowBytes + 9 }, (_, i) => (i * 131 + 7) & 255);
      const before = u8.slice();
      interleaveRows8(layout, u8, 7, rows, rowBytes, s.blockBytes);
      expect(u8).not.toEqual(before);
      expect(u8.subarray(0, 7)).toEqual(before.subarray(0, 7));
      expect(u8.subarray(7 + rows * rowBytes)).toEqual(before.subarray(7 + rows * rowBytes));
      deinterleaveRows8(layout, u8, 7, rows, rowBytes, s.blockBytes);
      expect(u8).toEqual(before);
    });
  }

  it("q4_0: a stored step holds the scales, then 4 elements of 4 rows per 16 bytes", () => {
    const s = getScheme("q4_0");
    const rowBytes = 2 * 18;
    const u8 = new Uint8Array(8 * rowBytes);
    // Row r, block b: scale bytes (r, b), nibble byte j = 16·r + j + b.
    for (let r = 0; r < 8; r++) {
      for (let b = 0; b < 2; b++) {
        const at = r * rowBytes + b * 18;
        [u8[at], u8[at + 1]] = [r, 100 + b];
        for (let j = 0; j < 16; j++) u8[at + 2 + j] = 16 * r + j + b;
      }
    }
    interleaveRows8(s.wasm!.rows8!, u8, 0, 8, rowBytes, 18);
    const step1 = u8.subarray(144, 288);
    // Scales: rows 0, 4, 1, 5, 2, 6, 3, 7.
    expect([...step1.subarray(0, 16)]).toEqual([0, 4, 1, 5, 2, 6, 3, 7].flatMap((r) => [r, 101]));
    // Chunk 1, rows 4–7: bytes 4..7 of each.
    expect([...step1.subarray(16 + 32 + 16, 16 + 32 + 32)]).toEqual(
      [4, 5, 6, 7].flatMap((r) => [4, 5, 6, 7].map((j) => 16 * r + j + 1)),
    );
  });

  it("refuses rows that are not whole groups, or a range past the buffer", () => {
    const layout = getScheme("q4_0").wasm!.rows8!;
    expect(() => interleaveRows8(layout, new Uint8Array(18 * 12), 0, 12, 18, 18)).toThrow(
      /multiple of 8 rows/,
    );
    expect(() => interleaveRows8(layout, new Uint8Array(18 * 8), 1, 8, 18, 18)).toThrow(/past the end/);
  });
});
