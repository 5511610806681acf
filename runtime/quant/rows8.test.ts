import { describe, expect, it } from "vitest";
import { getScheme, schemes } from "./index.ts";
import { interleaveRows8, ROWS8 } from "./rows8.ts";

describe("8 interleaved rows", () => {
  for (const s of schemes().filter((x) => x.wasm?.rows8)) {
    const layout = s.wasm!.rows8!;

    it(`${s.name}: a stored step takes every bit of the 8 blocks once`, () => {
      // Each bit of the 8 blocks alone set: it lands on one stored bit, a different one each time.
      const rowBytes = s.blockBytes;
      const seen = new Set<number>();
      for (let b = 0; b < ROWS8 * rowBytes * 8; b++) {
        const rows = new Uint8Array(ROWS8 * rowBytes);
        rows[b >> 3] = 1 << (b & 7);
        const out = new Uint8Array(ROWS8 * rowBytes);
        layout.pack(rows, 0, rowBytes, out, 0);
        const set = [...out.keys()].flatMap((i) =>
          [...Array(8).keys()].filter((k) => (out[i]! >> k) & 1).map((k) => 8 * i + k),
        );
        expect(set, `bit ${b}`).toHaveLength(1);
        seen.add(set[0]!);
      }
      expect(seen.size).toBe(ROWS8 * rowBytes * 8);
    });

    it(`${s.name}: repacking in place leaves the bytes around the rows`, () => {
      const rows = 24;
      const rowBytes = 5 * s.blockBytes;
      const u8 = Uint8Array.from({ length: 7 + rows * rowBytes + 9 }, (_, i) => (i * 131 + 7) & 255);
      const before = u8.slice();
      interleaveRows8(layout, u8, 7, rows, rowBytes, s.blockBytes);
      expect(u8).not.toEqual(before);
      expect(u8.subarray(0, 7)).toEqual(before.subarray(0, 7));
      expect(u8.subarray(7 + rows * rowBytes)).toEqual(before.subarray(7 + rows * rowBytes));
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

  it("q5_0: the fifth bits follow the nibbles, bit c + 4h for chunk c of rows 4h … 4h + 3", () => {
    const s = getScheme("q5_0");
    const u8 = new Uint8Array(8 * 22);
    // Row 5 (h = 1, i = 1): element 6's fifth bit (chunk 1, j = 2, low nibble) and element 16 + 13's
    // (chunk 3, j = 1, high nibble); row 2 (h = 0, i = 2): element 0's.
    const setBit = (r: number, e: number) => {
      u8[22 * r + 2 + (e >> 3)]! |= 1 << (e & 7);
    };
    setBit(5, 6);
    setBit(5, 29);
    setBit(2, 0);
    interleaveRows8(s.wasm!.rows8!, u8, 0, 8, 22, 22);
    const bits = [...u8.subarray(144)].flatMap((v, i) =>
      [...Array(8).keys()].filter((k) => (v >> k) & 1).map((k) => [144 + i, k]),
    );
    expect(bits).toEqual([
      [144 + 4 + 2, 1 + 4], // row 5, element 6: lane 4·1 + 2, chunk 1, h 1
      [144 + 8, 0], // row 2, element 0: lane 4·2 + 0, chunk 0, h 0
      [160 + 4 + 1, 3 + 4], // row 5, element 29: lane 4·1 + 1, chunk 3, h 1
    ]);
  });

  it("refuses rows that are not whole groups, or a range past the buffer", () => {
    const layout = getScheme("q4_0").wasm!.rows8!;
    expect(() => interleaveRows8(layout, new Uint8Array(18 * 12), 0, 12, 18, 18)).toThrow(
      /multiple of 8 rows/,
    );
    expect(() => interleaveRows8(layout, new Uint8Array(18 * 8), 1, 8, 18, 18)).toThrow(/past the end/);
  });
});
