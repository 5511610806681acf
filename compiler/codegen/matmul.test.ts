// The batched prefill's matrix-matrix kernels against the matrix-vector kernel, column by column: every
// built-in scheme's piece widened to several activation vectors (compiler/codegen/columns.ts) must give
// each column exactly the bits the matrix-vector kernel gives it, for any column count (groups and the
// one-by-one rest), row range, and with accumulation; in the plain and (where the engine has it) the
// relaxed-SIMD build.
import { describe, expect, it } from "vitest";
import { f16Table, schemes } from "../../runtime/quant/index.ts";
import type { QuantScheme } from "../../runtime/quant/scheme.ts";
import { gaussian } from "../../runtime/quant/test-support.ts";
import { columnsPiece } from "./columns.ts";
import { WasmKernels } from "./wasm.ts";
import { instantiate, q8Region } from "./wasm-instance.ts";

const COLS = 512;
const ROWS = 37;
const N = 11;

const relaxedHere = (() => {
  const k = new WasmKernels();
  k.matvec("q8_0", 32);
  return WebAssembly.validate(k.binary(true));
})();

function setup(s: QuantScheme, relaxed: boolean) {
  const kernels = new WasmKernels();
  const mv = kernels.matvec(s.name, COLS)!;
  const mm = kernels.matmul(s.name, COLS);
  expect(mm, `${s.name}: no matrix-matrix kernel`).toBeDefined();
  const rowBytes = (COLS / s.blockSize) * s.blockBytes;
  const weights = new Uint8Array(ROWS * rowBytes);
  const w = gaussian(ROWS * COLS, 5, 0.05);
  for (let i = 0; i < w.length; i += 97) w[i] = w[i]! * 200;
  s.encode(w, weights);
  const wAt = f16Table.byteLength + 4;
  const xAt = Math.ceil((wAt + weights.length) / 64) * 64;
  const yAt = xAt + N * COLS * 4;
  const lAt = yAt + N * ROWS * 4 * 2;
  const qAt = Math.ceil((lAt + 8 * N) / 64) * 64;
  const pages = Math.ceil((qAt + q8Region(kernels, N)) / 65536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  new Float32Array(memory.buffer).set(f16Table, 0);
  new Uint8Array(memory.buffer).set(weights, wAt);
  new Float32Array(memory.buffer, xAt, N * COLS).set(gaussian(N * COLS, 6));
  const exports = instantiate(kernels, memory, relaxed, qAt, N);
  const y = new Float32Array(memory.buffer, yAt, 2 * N * ROWS);
  const lists = new Int32Array(memory.buffer, lAt, 2 * N);
  return { mv: exports[mv]!, mm: exports[mm!]!, y, lists, wAt, xAt, yAt, lAt };
}

describe("matrix-matrix kernels equal the matrix-vector kernel per column, bit for bit", () => {
  for (const s of schemes().filter((x) => x.wasm)) {
    for (const relaxed of [false, true]) {
      const it_ = relaxed ? it.runIf(relaxedHere) : it;
      it_(`${s.name}${relaxed ? " (relaxed SIMD)" : ""}`, () => {
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
              k.lists[j] = k.xAt + 4 * COLS * order[j]!;
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

  it("hoists the weights' unpacking out of the per-column statements", () => {
    const wide = columnsPiece(schemes().find((s) => s.name === "q8_0")!.wasm!.dot, 4);
    // The int8 → f32 conversions happen once, not once per column.
    const converts = wide.text.split("f32x4.convert_i32x4_s").length - 1;
    expect(converts).toBe(8);
    expect(wide.text).toContain("$acc_3");
  });
});
