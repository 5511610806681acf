// The kernels over 8 interleaved rows (rows8.ts), for q4_0, q4_1, q5_0, q5_1 and q8_0 (the schemes with that
// layout): the matrix-vector kernel against the same sums computed here in f32, bit for bit (each row: per
// step the exact integer sum, times d_w · d_x, then with a min the integer Σ qx times m · d_x, added in order),
// in the plain and the relaxed-SIMD build (where fused multiply-adds may round once); against
// dot(decode(row), x) within 1e-5 × Σ|w·x|; and the matrix-matrix kernel against the matrix-vector kernel per
// column, bit for bit, with accumulation and a row range.
import { describe, expect, it } from "vitest";
import { f16Table, schemes } from "../../runtime/quant/index.ts";
import { Q8_BLOCK, quantizeActivations, quantizeBlocks } from "../../runtime/quant/q8-activations.ts";
import { interleaveRows8 } from "../../runtime/quant/rows8.ts";
import type { QuantScheme } from "../../runtime/quant/scheme.ts";
import { gaussian, rng } from "../../runtime/quant/test-support.ts";
import { needsRelaxedSimd } from "../../test/machine.ts";
import { WasmKernels } from "./wasm.ts";
import { instantiate, q8Region } from "./wasm-instance.ts";

const COLS = 512;
/** Where a block's f16 min is, in the schemes with this layout that have one (w = d·q + m). */
const MIN: Record<string, number> = { q4_1: 2, q5_1: 2 };
const ROWS = 24;
const N = 5;
const f = Math.fround;

/** Rows of encoded weights, then rows of random bytes whose scales are random or extreme finite halves. */
function matrix(s: QuantScheme): Uint8Array {
  const rowBytes = (COLS / s.blockSize) * s.blockBytes;
  const out = new Uint8Array(ROWS * rowBytes);
  const half = ROWS / 2;
  s.encode(gaussian(half * COLS, 3, 0.05), out.subarray(0, half * rowBytes));
  const r = rng(4);
  const extreme = [0x7bff, 0xfbff, 0x0001, 0x8001, 0x0400, 0x3c00, 0x0000];
  for (let i = half * rowBytes; i < out.length; i++) out[i] = Math.floor(r() * 256);
  // Every block's first two bytes are its f16 scale in the schemes with this layout, and q4_1's and q5_1's next
  // two its min: finite halves, random or extreme.
  for (let b = half * rowBytes; b < out.length; b += s.blockBytes) {
    for (const at of MIN[s.name] === undefined ? [0] : [0, MIN[s.name]!]) {
      const h =
        extreme[Math.floor(r() * 10)] ?? (r() < 0.5 ? 0 : 0x8000) | (0x0400 + Math.floor(r() * 0x4c00));
      [out[b + at], out[b + at + 1]] = [h & 0xff, h >> 8];
    }
  }
  return out;
}

function setup(s: QuantScheme, relaxed: boolean) {
  const kernels = new WasmKernels();
  const q = kernels.matmulQ8(s.name, COLS, true)!;
  expect(q.mm).toMatch(/x8_/);
  const rowBytes = (COLS / s.blockSize) * s.blockBytes;
  const rowMajor = matrix(s);
  const wAt = f16Table.byteLength + 4;
  const xAt = Math.ceil((wAt + rowMajor.length) / 64) * 64;
  const xqAt = xAt + N * COLS * 4;
  const yAt = xqAt + N * q.qBytes;
  const lAt = yAt + 2 * N * ROWS * 4;
  const qAt = Math.ceil((lAt + 8 * N) / 64) * 64;
  const pages = Math.ceil((qAt + q8Region(kernels)) / 65536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const u8 = new Uint8Array(memory.buffer);
  new Float32Array(memory.buffer).set(f16Table, 0);
  u8.set(rowMajor, wAt);
  interleaveRows8(s.wasm!.rows8!, u8, wAt, ROWS, rowBytes, s.blockBytes);
  const x = gaussian(N * COLS, 6);
  x.fill(0, 64, 96); // a block of zeros: d = 0
  new Float32Array(memory.buffer, xAt, N * COLS).set(x);
  const exports = instantiate(kernels, memory, relaxed, qAt);
  const lists = new Int32Array(memory.buffer, lAt, 2 * N);
  for (let j = 0; j < N; j++) [lists[j], lists[N + j]] = [xAt + 4 * COLS * j, xqAt + q.qBytes * j];
  exports[q.qx]!(lAt, lAt + 4 * N, N, 0, 0, 0, 0);
  const y = new Float32Array(memory.buffer, yAt, 2 * N * ROWS);
  return { q, exports, rowMajor, x, y, lists, wAt, xqAt, yAt, lAt, rowBytes };
}

/** Row r's sum as the kernels compute it, with or without each multiply-add fused: per block, the exact
 * integer Σ q·qx, where q (the weight over its scale) comes from decoding the block with its scale set to 1
 * (every scheme with this layout keeps an f16 scale in its first two bytes) and its min to 0, times d_w · d_x;
 * then, with a min, the integer Σ qx times m · d_x. */
function expected(s: QuantScheme, rowMajor: Uint8Array, x: Float32Array, r: number, fused: boolean): number {
  const { q, d } = quantizeBlocks(x);
  const dv = new DataView(rowMajor.buffer, rowMajor.byteOffset);
  const rowBytes = (COLS / s.blockSize) * s.blockBytes;
  const unit = new Uint8Array(s.blockBytes);
  const w = new Float32Array(Q8_BLOCK);
  const min = MIN[s.name];
  let acc = 0;
  const add = (n: number, m: number) => {
    acc = fused ? f(acc + n * m) : f(acc + f(n * m));
  };
  for (let b = 0; b < COLS / Q8_BLOCK; b++) {
    const at = r * rowBytes + b * s.blockBytes;
    unit.set(rowMajor.subarray(at, at + s.blockBytes));
    [unit[0], unit[1]] = [0x00, 0x3c];
    if (min !== undefined) [unit[min], unit[min + 1]] = [0, 0];
    s.decode(unit, w);
    let isum = 0;
    let qsum = 0;
    for (let i = 0; i < Q8_BLOCK; i++) [isum, qsum] = [isum + w[i]! * q[32 * b + i]!, qsum + q[32 * b + i]!];
    add(isum, f(f16Table[dv.getUint16(at, true)]! * d[b]!));
    if (min !== undefined) add(qsum, f(f16Table[dv.getUint16(at + min, true)]! * d[b]!));
  }
  return acc;
}

describe("kernels over 8 interleaved rows", () => {
  it("q4_0, q4_1, q5_0, q5_1 and q8_0 are the built-in schemes with the layout", () => {
    expect(
      schemes()
        .filter((x) => x.wasm?.rows8)
        .map((x) => x.name)
        .sort(),
    ).toEqual(["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]);
  });
  for (const s of schemes().filter((x) => x.wasm?.rows8)) {
    for (const relaxed of [false, true]) {
      const tag = `${s.name}${relaxed ? " (relaxed SIMD)" : ""}`;
      const needs = relaxed ? needsRelaxedSimd() : {};

      it(`${tag}: the matrix-vector kernel's sums, bit for bit, and near dot(decode(row), x)`, needs, () => {
        const { q, exports, rowMajor, x, y, wAt, lists, yAt, rowBytes } = setup(s, relaxed);
        const x0 = x.subarray(0, COLS);
        exports[`mv_${q.mv.slice(4)}`]!(wAt, lists[0]!, yAt, 0, ROWS, 1, 0);
        const xq = quantizeActivations(x0);
        const w = new Float32Array(COLS);
        for (let r = 0; r < ROWS; r++) {
          const plain = expected(s, rowMajor, x0, r, false);
          const fused = expected(s, rowMajor, x0, r, true);
          if (relaxed) expect([plain, fused], `row ${r}`).toContain(y[r]);
          else expect(y[r], `row ${r}`).toBe(plain);
          s.decode(rowMajor.subarray(r * rowBytes, (r + 1) * rowBytes), w);
          let dot = 0;
          let mag = 0;
          for (let i = 0; i < COLS; i++) [dot, mag] = [dot + w[i]! * xq[i]!, mag + Math.abs(w[i]! * xq[i]!)];
          expect(Math.abs(y[r]! - dot), `row ${r}: ${y[r]} vs ${dot}`).toBeLessThanOrEqual(1e-5 * mag);
        }
      });

      it(`${tag}: the matrix-matrix kernel equals the matrix-vector kernel per column`, needs, () => {
        const { q, exports, y, wAt, xqAt, yAt, lAt } = setup(s, relaxed);
        const lists = new Int32Array(y.buffer, lAt, 2 * N);
        const ref = new Float32Array(N * ROWS);
        for (let j = 0; j < N; j++) {
          exports[q.mv]!(wAt, xqAt + q.qBytes * j, yAt + 4 * ROWS * j, 8, ROWS, 1, 0);
          ref.set(y.subarray(ROWS * j, ROWS * (j + 1)), ROWS * j);
        }
        y.fill(0.5);
        for (let j = 0; j < N; j++) [lists[j], lists[N + j]] = [xqAt + q.qBytes * j, yAt + 4 * ROWS * j];
        exports[q.mm]!(wAt, lAt, lAt + 4 * N, 8, ROWS, N, 1);
        for (let j = 0; j < N; j++) {
          for (let r = 0; r < ROWS; r++) {
            const want = r < 8 ? 0.5 : f(ref[ROWS * j + r]! + 0.5);
            expect(y[ROWS * j + r], `column ${j} row ${r}`).toBe(want);
          }
        }
      });
    }
  }
});
