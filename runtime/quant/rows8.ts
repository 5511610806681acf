// Weights stored with 8 rows interleaved, for the CPU's integer products (llama.cpp's repacked layouts, such
// as block_q4_0x8, do the same). A row-major matrix-vector kernel ends every block of every row with a
// reduction across lanes and a scale; with 8 rows side by side, one 8-bit product instruction works on 8
// rows against the same activations, the lanes stay rows, and a block's 8 scales are applied in two vector
// multiplies. The layout is a scheme's choice (`WasmKernel.rows8`): a permutation of the bytes of 8 rows'
// blocks at the same step, so a group of 8 rows takes exactly the bytes it took before and is repacked in
// place when the weights load. The file on disk stays as it is.

/** Rows per interleaved group. */
export const ROWS8 = 8;

export interface Rows8 {
  /**
   * The stored bytes of one step of a group: stored byte i is byte `order[i]` of the group's 8 blocks at that
   * step laid one after another (row r's block at r · blockBytes). A permutation of 0 … 8 · blockBytes − 1.
   */
  order: readonly number[];
  /**
   * WAT statements: one step of a group against `cols` activation vectors quantized to the q8 blocks of the
   * scheme's `q8` piece, at `$x_j` (j < cols). For each j they add to `$a0_j` and `$a1_j` (f32x4: rows 0–3 and
   * rows 4–7) the step's exact integer Σ w·x per row, converted once, times (row scale × the block's d).
   * `relaxed`: the build with relaxed SIMD's 8-bit products (against the int8 shadow); otherwise 16-bit ones.
   * Scratch: `$d0`, `$d1`, `$t`, `$u`, `$n0`…`$n7` (v128), `$p` (i32), and per column `$s0_j`…`$s3_j` (v128)
   * and `$q_j` (i32).
   */
  q8(cols: number, relaxed: boolean): string;
}

/** Rows 8g … 8g + 7 of a matrix (rows of `rowBytes`, steps of `blockBytes`) at byte `at` of `u8`, interleaved in
 * place: each step's 8 blocks become the layout's stored bytes. `rows` is a multiple of 8. */
export function interleaveRows8(
  layout: Pick<Rows8, "order">,
  u8: Uint8Array,
  at: number,
  rows: number,
  rowBytes: number,
  blockBytes: number,
): void {
  permuteGroups(layout.order, u8, at, rows, rowBytes, blockBytes, true);
}

/** The inverse of interleaveRows8: the row-major bytes back. */
export function deinterleaveRows8(
  layout: Pick<Rows8, "order">,
  u8: Uint8Array,
  at: number,
  rows: number,
  rowBytes: number,
  blockBytes: number,
): void {
  permuteGroups(layout.order, u8, at, rows, rowBytes, blockBytes, false);
}

function permuteGroups(
  order: readonly number[],
  u8: Uint8Array,
  at: number,
  rows: number,
  rowBytes: number,
  blockBytes: number,
  forward: boolean,
): void {
  const groupBytes = ROWS8 * rowBytes;
  const stepBytes = ROWS8 * blockBytes;
  if (rows % ROWS8 !== 0) throw new RangeError(`interleaving needs a multiple of ${ROWS8} rows, not ${rows}`);
  if (order.length !== stepBytes)
    throw new RangeError(`a layout of ${order.length} bytes for steps of ${stepBytes}`);
  if (at + rows * rowBytes > u8.length) throw new RangeError(`rows past the end of the buffer`);
  // Where each stored byte of a group comes from in the row-major group: byte o of a step's blocks is row
  // o / blockBytes, byte o % blockBytes of that row's block at the step.
  const from = new Int32Array(groupBytes);
  for (let s = 0; s < rowBytes / blockBytes; s++) {
    for (let i = 0; i < stepBytes; i++) {
      const o = order[i]!;
      from[s * stepBytes + i] = Math.floor(o / blockBytes) * rowBytes + s * blockBytes + (o % blockBytes);
    }
  }
  const group = new Uint8Array(groupBytes);
  for (let g = at; g < at + rows * rowBytes; g += groupBytes) {
    group.set(u8.subarray(g, g + groupBytes));
    if (forward) for (let i = 0; i < groupBytes; i++) u8[g + i] = group[from[i]!]!;
    else for (let i = 0; i < groupBytes; i++) u8[g + from[i]!] = group[i]!;
  }
}
