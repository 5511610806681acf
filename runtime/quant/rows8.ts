// Weights stored with 8 rows interleaved, for the CPU's integer products (llama.cpp's repacked layouts, such
// as block_q4_0x8, do the same). A row-major matrix-vector kernel ends every block of every row with a
// reduction across lanes and a scale; with 8 rows side by side, one 8-bit product instruction works on 8
// rows against the same activations, the lanes stay rows, and a block's 8 scales are applied in two vector
// multiplies. The layout is a scheme's choice (`WasmKernel.rows8`): a rearrangement of the bits of 8 rows'
// blocks at the same step into as many bytes, so a group of 8 rows takes exactly the bytes it took before
// and is repacked in place when the weights load. The file on disk stays as it is.

/** Rows per interleaved group. */
export const ROWS8 = 8;

export interface Rows8 {
  /**
   * One step of a group stored: reads the 8 rows' blocks at that step (row r's at `at + r · rowBytes` of
   * `rows`) and writes the step's 8 · blockBytes stored bytes at `outAt` of `out`.
   */
  pack(rows: Uint8Array, at: number, rowBytes: number, out: Uint8Array, outAt: number): void;
  /**
   * WAT statements: one step of a group against `cols` activation vectors quantized to the q8 blocks of the
   * scheme's `q8` piece, at `$x_j` (j < cols). For each j they add to `$a0_j` and `$a1_j` (f32x4: rows 0–3 and
   * rows 4–7) the step's exact integer Σ w·x per row, converted once, times (row scale × the block's d).
   * `relaxed`: the build with relaxed SIMD's 8-bit products (against the int8 shadow); otherwise 16-bit ones.
   * Scratch: `$d0`, `$d1`, `$m0`, `$m1`, `$t`, `$u`, `$n0`…`$n7` (v128), `$p` (i32), and per column
   * `$s0_j`…`$s3_j` (v128) and `$q_j` (i32).
   */
  q8(cols: number, relaxed: boolean): string;
}

/**
 * `pack` for the bytes a layout only moves: stored byte i of a step (i < order.length) is byte `order[i]` of
 * the step's 8 blocks laid one after another (row r's block at r · blockBytes). A layout that moves every
 * byte gives all 8 · blockBytes of them; one that rearranges bits too writes those after.
 */
export function byteOrder(order: readonly number[], blockBytes: number): Rows8["pack"] {
  const step = ROWS8 * blockBytes;
  if (new Set(order).size !== order.length || order.some((o) => !(Number.isInteger(o) && o >= 0 && o < step)))
    throw new RangeError(`a byte order must take distinct bytes of a step's ${step}`);
  const row = Int32Array.from(order, (o) => Math.floor(o / blockBytes));
  const byte = Int32Array.from(order, (o) => o % blockBytes);
  return (rows, at, rowBytes, out, outAt) => {
    for (let i = 0; i < row.length; i++) out[outAt + i] = rows[at + row[i]! * rowBytes + byte[i]!]!;
  };
}

/** Rows 8g … 8g + 7 of a matrix (rows of `rowBytes`, steps of `blockBytes`) at byte `at` of `u8`, interleaved in
 * place: each step's 8 blocks become the layout's stored bytes. `rows` is a multiple of 8. */
export function interleaveRows8(
  layout: Pick<Rows8, "pack">,
  u8: Uint8Array,
  at: number,
  rows: number,
  rowBytes: number,
  blockBytes: number,
): void {
  const group = checkGroups(u8, at, rows, rowBytes);
  for (let g = at; g < at + rows * rowBytes; g += group.length) {
    group.set(u8.subarray(g, g + group.length));
    for (let s = 0; s < rowBytes; s += blockBytes) layout.pack(group, s, rowBytes, u8, g + ROWS8 * s);
  }
}

/** A scratch group after checking the range: whole groups of 8 rows, inside the buffer. */
function checkGroups(u8: Uint8Array, at: number, rows: number, rowBytes: number): Uint8Array {
  if (rows % ROWS8 !== 0) throw new RangeError(`interleaving needs a multiple of ${ROWS8} rows, not ${rows}`);
  if (at + rows * rowBytes > u8.length) throw new RangeError(`rows past the end of the buffer`);
  return new Uint8Array(ROWS8 * rowBytes);
}
