// The batched prefill's matrix-matrix kernels against the matrix-vector kernel, column by column: every
// built-in scheme's piece widened to several activation vectors (compiler/codegen/columns.ts) must give
// each column exactly the bits the matrix-vector kernel gives it, for any column count (groups and the
// one-by-one rest), row range, and with accumulation; in the plain and (where the engine has it) the
// relaxed-SIMD build.
import { describe, expect, it } from "vitest";
import { f16Table, schemes } from "../../runtime/quant/index.ts";
import { q8Format } from "../../runtime/quant/q8-activations.ts";
import type { QuantScheme } from "../../runtime/quant/scheme.ts";
import { gaussian } from "../../runtime/quant/test-support.ts";
import { needsRelaxedSimd } from "../../test/machine.ts";
import { columnsPiece } from "./columns.ts";
import { WasmKernels } from "./wasm.ts";
import { instantiate, type Kernel, q8Region } from "./wasm-instance.ts";

const COLS = 512;
const ROWS = 37;
const N = 11;

/** The kernels of one scheme over a memory holding a matrix and N activation vectors. With an integer
 * piece the pair is `mvq_`/`mmq_` (or `mvqk_`/`mmqk_`) over the vectors quantized once by the quantizer;
 * otherwise `mv_`/`mm_`. */
function setup(s: QuantScheme, relaxed: boolean) {
  const kernels = new WasmKernels();
  const q = kernels.matmulQ8(s.name, COLS);
  const mv = q?.mv ?? kernels.matvec(s.name, COLS)!;
  const mm = q?.mm ?? kernels.matmul(s.name, COLS);
  expect(mm, `${s.name}: no matrix-matrix kernel`).toBeDefined();
  const rowBytes = (COLS / s.blockSize) * s.blockBytes;
  const weights = new Uint8Array(ROWS * rowBytes);
  const w = gaussian(ROWS * COLS, 5, 0.05);
  for (let i = 0; i < w.length; i += 97) w[i] = w[i]! * 200;
  s.encode(w, weights);
  const wAt = f16Table.byteLength + 4;
  const xAt = Math.ceil((wAt + weights.length) / 64) * 64;
  const xqAt = xAt + N * COLS * 4; // the quantized vectors, when the scheme has an integer piece
  const yAt = xqAt + N * (q?.qBytes ?? 0);
  const lAt = yAt + N * ROWS * 4 * 2;
  const qAt = Math.ceil((lAt + 8 * N) / 64) * 64;
  const pages = Math.ceil((qAt + q8Region(kernels)) / 65536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  new Float32Array(memory.buffer).set(f16Table, 0);
  new Uint8Array(memory.buffer).set(weights, wAt);
  new Float32Array(memory.buffer, xAt, N * COLS).set(gaussian(N * COLS, 6));
  const exports = instantiate(kernels, memory, relaxed, qAt);
  const y = new Float32Array(memory.buffer, yAt, 2 * N * ROWS);
  const lists = new Int32Array(memory.buffer, lAt, 2 * N);
  if (q) {
    for (let j = 0; j < N; j++) [lists[j], lists[N + j]] = [xAt + 4 * COLS * j, xqAt + q.qBytes * j];
    exports[q.qx]!(lAt, lAt + 4 * N, N, 0, 0, 0, 0);
  }
  const col = (j: number) => (q ? xqAt + q.qBytes * j : xAt + 4 * COLS * j);
  return { mv: exports[mv]!, mm: exports[mm!]!, y, lists, wAt, col, yAt, lAt };
}

describe("matrix-matrix kernels equal the matrix-vector kernel per column, bit for bit", () => {
  for (const s of schemes().filter((x) => x.wasm)) {
    for (const relaxed of [false, true]) {
      const needs = relaxed ? needsRelaxedSimd() : {};
      it(`${s.name}${relaxed ? " (relaxed SIMD)" : ""}`, needs, () => {
        const k = setup(s, relaxed);
        for (const n of [1, 3, 4, 5, 8, N]) {
          for (const [r0, r1, acc] of [
            [0, ROWS, 0],
            [3, 20, 1],
          ] as const) {
            // Columns in a shuffled order, outputs to the second half of y; the first half gets the reference.
            const order = Array.from({ length: n }, (_, j) => (j * 7) % N);
            const start = Float32Array.from({ length: 2 * N * ROWS }, (_, i) => ((i % ROWS) % 13) - 6.25);
            k.y.set(start);
            for (let j = 0; j < n; j++) {
              k.lists[j] = k.col(order[j]!);
              k.lists[N + j] = k.yAt + 4 * ROWS * (N + j);
              k.mv(k.wAt, k.lists[j]!, k.yAt + 4 * ROWS * j, r0, r1, 1, acc);
            }
            k.mm(k.wAt, k.lAt, k.lAt + 4 * N, r0, r1, n, acc);
            for (let j = 0; j < n; j++) {
              const want = k.y.subarray(j * ROWS, (j + 1) * ROWS);
              const got = k.y.subarray((N + j) * ROWS, (N + j + 1) * ROWS);
              expect([...got], `${s.name} n=${n} column ${j}`).toEqual([...want]);
            }
          }
        }
      });
    }
  }

  for (const scheme of schemes()
    .filter((x) => x.wasm?.q8)
    .map((x) => x.name)) {
    it(`${scheme} with int8 activations: within the activations' rounding of the exact product`, () => {
      const s = schemes().find((x) => x.name === scheme)!;
      const kernels = new WasmKernels();
      const q = kernels.matmulQ8(scheme, COLS)!;
      const rowBytes = (COLS / s.blockSize) * s.blockBytes;
      const weights = new Uint8Array(ROWS * rowBytes);
      s.encode(gaussian(ROWS * COLS, 7, 0.05), weights);
      const x = gaussian(N * COLS, 8);
      for (let i = 0; i < x.length; i += 61) x[i] = x[i]! * 40; // outliers set their blocks' scales
      x.fill(0, 64, 96); // a block of zeros: scale 0
      const wAt = f16Table.byteLength;
      const xAt = Math.ceil((wAt + weights.length) / 64) * 64;
      const qAt = xAt + x.byteLength;
      const yAt = qAt + N * q.qBytes;
      const lAt = yAt + N * ROWS * 4;
      const pages = Math.ceil((lAt + 16 * N) / 65536);
      const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
      new Float32Array(memory.buffer).set(f16Table, 0);
      new Uint8Array(memory.buffer).set(weights, wAt);
      new Float32Array(memory.buffer, xAt, x.length).set(x);
      const ex = new WebAssembly.Instance(new WebAssembly.Module(kernels.binary(false)), { env: { memory } })
        .exports as Record<string, Kernel>;
      const lists = new Int32Array(memory.buffer, lAt, 4 * N);
      for (let j = 0; j < N; j++) {
        lists[j] = xAt + 4 * COLS * j;
        lists[N + j] = qAt + q.qBytes * j;
        lists[2 * N + j] = qAt + q.qBytes * j;
        lists[3 * N + j] = yAt + 4 * ROWS * j;
      }
      ex[q.qx]!(lAt, lAt + 4 * N, N, 0, 0, 0, 0);
      ex[q.mm]!(wAt, lAt + 8 * N, lAt + 12 * N, 0, ROWS, N, 0);
      const y = new Float32Array(memory.buffer, yAt, N * ROWS);
      const w = new Float32Array(COLS);
      for (let r = 0; r < ROWS; r++) {
        s.decode(weights.subarray(r * rowBytes, (r + 1) * rowBytes), w);
        for (let j = 0; j < N; j++) {
          let exact = 0;
          let bound = 1e-6;
          const block = q8Format(s.wasm!.step)!.block;
          for (let b = 0; b < COLS; b += block) {
            let amax = 0;
            for (let i = b; i < b + block; i++) amax = Math.max(amax, Math.abs(x[j * COLS + i]!));
            for (let i = b; i < b + block; i++) {
              const v = x[j * COLS + i]!;
              exact += w[i]! * v;
              // Half a step of the block's int8 grid, and f32 rounding of the products and sums.
              bound += Math.abs(w[i]!) * ((0.5 * amax) / 127 + 1e-5 * (amax + Math.abs(v)));
            }
          }
          expect(Math.abs(y[j * ROWS + r]! - exact), `${scheme} row ${r} column ${j}`).toBeLessThanOrEqual(
            bound,
          );
        }
      }
    });
  }

  it("hoists the weights' unpacking out of the per-column statements", () => {
    const wide = columnsPiece(schemes().find((s) => s.name === "q8_0")!.wasm!.dot, 4);
    // The int8 → f32 conversions happen once, not once per column.
    const converts = wide.text.split("f32x4.convert_i32x4_s").length - 1;
    expect(converts).toBe(8);
    expect(wide.text).toContain("$acc_3");
  });
});
