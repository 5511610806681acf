// Every scheme's WebAssembly piece, assembled into the matrix-vector kernel a model gets, against
// dot(decode(row), x) in f64. The tiny specs' rows (32 to 128 weights) never hold a whole k-quant
// super-block, so generated.test.ts cannot reach those pieces; this test can. Rows are either encoded
// weights or random bytes (every bit pattern of quants, scales and mins) with extreme finite halves as the
// block scales. Tolerance: 1e-5 × Σ|w·x|, f32 summation in another order. The relaxed-SIMD twin (fused
// multiply-adds) runs too where this engine has relaxed SIMD (Node 22+, or --experimental-wasm-relaxed-simd).
import { describe, expect, it } from "vitest";
import { f16Table, getScheme, schemes } from "../../runtime/quant/index.ts";
import {
  Q8K_BLOCK_BYTES,
  Q8K_D,
  Q8K_SUMS,
  q8Format,
  quantizeActivations,
  quantizeBlocks,
  quantizeBlocksK,
} from "../../runtime/quant/q8-activations.ts";
import type { QuantScheme } from "../../runtime/quant/scheme.ts";
import { gaussian, rng } from "../../runtime/quant/test-support.ts";
import { needsRelaxedSimd } from "../../test/machine.ts";
import { WasmKernels } from "./wasm.ts";
import { instantiate, q8Region } from "./wasm-instance.ts";

const COLS = 512;
const ENCODED_ROWS = 3;
const RANDOM_ROWS = 13;
const ROWS = ENCODED_ROWS + RANDOM_ROWS;
const TOLERANCE = 1e-5;

/** Byte offsets of the f16 fields in a block, for the schemes with blocks of more than one weight. */
const HALVES: Record<string, number[]> = {
  q8_0: [0],
  q4_0: [0],
  q4_1: [0, 2],
  q5_0: [0],
  q5_1: [0, 2],
  q2_k: [80, 82],
  q3_k: [108],
  q4_k: [0, 2],
  q5_k: [0, 2],
  q6_k: [208],
};
/** ±65504, the smallest subnormal and normal, 1, 0; and a random normal half otherwise. */
const EXTREME_HALVES = [0x7bff, 0xfbff, 0x0001, 0x8001, 0x0400, 0x3c00, 0x0000];

function matrix(s: QuantScheme, seed: number): Uint8Array {
  const rowBytes = (COLS / s.blockSize) * s.blockBytes;
  const out = new Uint8Array(ROWS * rowBytes);
  const w = gaussian(ENCODED_ROWS * COLS, seed, 0.05);
  const r = rng(seed + 1);
  for (let i = 0; i < w.length; i++) if (r() < 0.01) w[i] = w[i]! * 300;
  w.fill(0, 40, 300);
  s.encode(w, out.subarray(0, ENCODED_ROWS * rowBytes));
  const halves = HALVES[s.name];
  if (s.blockSize === 1) {
    // Float formats: random bits would be NaN or Inf; encode values from 1e-9 (f16 subnormals) up instead.
    const v = gaussian(RANDOM_ROWS * COLS, seed + 2);
    const max = s.name === "f16" ? 65504 : 1e30;
    for (let i = 0; i < v.length; i++) {
      const x = v[i]! * 10 ** Math.round(r() * 13 - 9) * (r() < 0.01 ? max : 1);
      v[i] = Math.max(-max, Math.min(max, x));
    }
    s.encode(v, out.subarray(ENCODED_ROWS * rowBytes));
    return out;
  }
  if (!halves) throw new Error(`${s.name}: say where its f16 fields are in HALVES`);
  for (let i = ENCODED_ROWS * rowBytes; i < out.length; i++) out[i] = Math.floor(r() * 256);
  for (let b = ENCODED_ROWS * rowBytes; b < out.length; b += s.blockBytes) {
    for (const o of halves) {
      const pick = Math.floor(r() * (EXTREME_HALVES.length + 3));
      const h = EXTREME_HALVES[pick] ?? (r() < 0.5 ? 0 : 0x8000) | (0x0400 + Math.floor(r() * 0x4c00));
      out[b + o] = h & 0xff;
      out[b + o + 1] = h >> 8;
    }
  }
  return out;
}

/** Memory as the runtime lays it out: the half table at 0, then the matrix, x and y. */
function run(s: QuantScheme, weights: Uint8Array, x: Float32Array, relaxed: boolean) {
  const kernels = new WasmKernels();
  const name = kernels.matvec(s.name, COLS);
  if (!name) throw new Error(`${s.name}: no kernel`);
  const wAt = f16Table.byteLength + 4; // tensors start 4-byte aligned, not always on a vector
  const xAt = Math.ceil((wAt + weights.length) / 64) * 64;
  const yAt = xAt + x.byteLength;
  const qAt = Math.ceil((yAt + ROWS * 4) / 64) * 64; // the integer kernels' quantized x
  const pages = Math.ceil((qAt + q8Region(kernels)) / 65536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  new Float32Array(memory.buffer).set(f16Table, 0);
  new Uint8Array(memory.buffer).set(weights, wAt);
  new Float32Array(memory.buffer, xAt, x.length).set(x);
  const mv = instantiate(kernels, memory, relaxed, qAt)[name]!;
  const y = new Float32Array(memory.buffer, yAt, ROWS);
  return {
    y,
    call: (r0: number, r1: number, alpha: number, acc: number) => mv(wAt, xAt, yAt, r0, r1, alpha, acc),
  };
}

/** dot(decode(row r), x) in f64 (x as the scheme's kernels read it), and Σ|w·x| for the tolerance. */
function reference(s: QuantScheme, weights: Uint8Array, xIn: Float32Array, r: number) {
  const x = s.wasm?.q8 === undefined ? xIn : quantizeActivations(xIn, s.wasm.step);
  const rowBytes = (COLS / s.blockSize) * s.blockBytes;
  const w = new Float32Array(COLS);
  s.decode(weights.subarray(r * rowBytes, (r + 1) * rowBytes), w);
  let dot = 0;
  let scale = 0;
  for (let i = 0; i < COLS; i++) {
    dot += w[i]! * x[i]!;
    scale += Math.abs(w[i]! * x[i]!);
  }
  return { dot, scale };
}

/** x through the quantizer of `scheme`'s integer kernels (the plain build): the memory and where its blocks
 * start. */
function quantizeInWasm(scheme: string, x: Float32Array) {
  const kernels = new WasmKernels();
  const q = kernels.matmulQ8(scheme, COLS)!;
  const xAt = 64;
  const qAt = xAt + 4 * COLS;
  const lAt = qAt + q.qBytes;
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  new Float32Array(memory.buffer, xAt, COLS).set(x);
  new Int32Array(memory.buffer, lAt, 2).set([xAt, qAt]);
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(kernels.binary(false)), {
    env: { memory },
  });
  (exports[q.qx] as (xl: number, ql: number, n: number) => void)(lAt, lAt + 4, 1);
  return { q, memory, qAt };
}

describe("WebAssembly matrix-vector pieces equal dot(decode(row), x)", () => {
  const withPiece = schemes().filter((s) => s.wasm);

  it("every built-in scheme has a piece", () => {
    expect(withPiece.map((s) => s.name).sort()).toEqual(
      schemes()
        .map((s) => s.name)
        .sort(),
    );
  });

  for (const s of withPiece) {
    for (const relaxed of [false, true]) {
      const tag = relaxed ? " (relaxed SIMD)" : "";
      const needs = relaxed ? needsRelaxedSimd() : {};
      it(`${s.name}${tag}: encoded rows and random blocks with extreme scales`, needs, () => {
        const weights = matrix(s, 31);
        const x = gaussian(COLS, 32);
        x.fill(0, 100, 120);
        const { y, call } = run(s, weights, x, relaxed);
        call(0, ROWS, 1, 0);
        for (let r = 0; r < ROWS; r++) {
          const want = reference(s, weights, x, r);
          expect(Number.isFinite(y[r]), `${s.name} row ${r}: ${y[r]}`).toBe(true);
          expect(
            Math.abs(y[r]! - want.dot),
            `${s.name} row ${r}: ${y[r]} vs ${want.dot}`,
          ).toBeLessThanOrEqual(TOLERANCE * want.scale);
        }
      });

      it(`${s.name}${tag}: rows r0..r1 only, times alpha, accumulated onto y`, needs, () => {
        const weights = matrix(s, 41);
        const x = gaussian(COLS, 42);
        const { y, call } = run(s, weights, x, relaxed);
        const before = Float32Array.from({ length: ROWS }, (_, r) => r - 3.5);
        y.set(before);
        call(2, 5, 0.5, 1);
        for (let r = 0; r < ROWS; r++) {
          if (r < 2 || r >= 5) {
            expect(y[r]).toBe(before[r]);
            continue;
          }
          const want = reference(s, weights, x, r);
          expect(Math.abs(y[r]! - before[r]! - 0.5 * want.dot)).toBeLessThanOrEqual(
            TOLERANCE * (0.5 * want.scale + Math.abs(before[r]!)),
          );
        }
      });
    }
  }

  it("the integer kernels quantize x exactly as quantizeActivations does, ties to even", () => {
    // q8_0 rows picking one element each (scale 1, weight 1): y[r] = x[r] as quantized.
    const s = getScheme("q8_0");
    const weights = new Uint8Array(ROWS * (COLS / 32) * 34);
    for (let r = 0; r < ROWS; r++) {
      for (let b = 0; b < COLS / 32; b++) weights.set([0x00, 0x3c], (r * (COLS / 32) + b) * 34); // half 1.0
      weights[(r * (COLS / 32) + Math.floor(r / 32)) * 34 + 2 + (r % 32)] = 1;
    }
    const x = gaussian(COLS, 7);
    // Block 0 has amax 127, so id = 1: x.5 values are ties.
    x.set([127, 2.5, 3.5, -2.5, -3.5, 0.5, -0.5, 1.5, 126.5], 0);
    const { y, call } = run(s, weights, x, false);
    call(0, ROWS, 1, 0);
    const want = quantizeActivations(x);
    // (+ 0: an integer product has no −0)
    expect([...y.subarray(0, 9)].map((v) => v + 0)).toEqual([127, 2, 4, -2, -4, 0, 0, 2, 126]);
    for (let r = 0; r < ROWS; r++) expect(y[r]! + 0).toBe(want[r]! + 0);
  });

  it("the q8_K quantizer writes llama.cpp's block_q8_K exactly (its q widened to int16): q, the sums of 16, d", () => {
    const x = gaussian(COLS, 9);
    x.fill(0, 256, 512); // a block of zeros: d = 0, q = 0
    x.set([100, -2.5, 2.5, 0.5, -0.5, 1.5], 0); // iscale = 1.27: no ties, but the extremes
    const { q, memory, qAt } = quantizeInWasm("q4_k", x);
    expect(q.qx).toBe(`qxk_${COLS}`);
    const want = quantizeBlocksK(x);
    expect(q.qBytes).toBe((COLS / 256) * Q8K_BLOCK_BYTES);
    for (let b = 0; b < COLS / 256; b++) {
      const at = qAt + b * Q8K_BLOCK_BYTES;
      expect([...new Int16Array(memory.buffer, at, 256)]).toEqual([
        ...want.q.subarray(256 * b, 256 * (b + 1)),
      ]);
      expect([...new Int16Array(memory.buffer, at + Q8K_SUMS, 16)]).toEqual([
        ...want.sums.subarray(16 * b, 16 * (b + 1)),
      ]);
      expect(new Float32Array(memory.buffer, at + Q8K_D, 1)[0]).toBe(want.d[b]);
    }
    expect(want.d[1]).toBe(0);
    expect(Math.max(...want.q.subarray(0, 256).map(Math.abs))).toBe(127);
  });

  for (const [scheme, step] of [
    ["q4_0", 32],
    ["q4_k", 256],
  ] as const) {
    it(`the quantizer of ${step}-blocks writes each run of 16 again as int8, its shadow for relaxed SIMD`, () => {
      const format = q8Format(step)!;
      const x = gaussian(COLS, 11);
      const { memory, qAt } = quantizeInWasm(scheme, x);
      const want = step === 32 ? quantizeBlocks(x).q : quantizeBlocksK(x).q;
      for (let b = 0; b < COLS / step; b++) {
        for (let run = 0; run < step / 16; run++) {
          const at = qAt + b * format.bytes + 32 * run;
          const values = [...want.subarray(b * step + 16 * run, b * step + 16 * (run + 1))];
          expect([...new Int16Array(memory.buffer, at, 16)]).toEqual(values);
          expect([...new Int8Array(memory.buffer, at + format.shadow, 16)]).toEqual(values);
        }
      }
    });
  }

  it("no kernel when the step does not divide the row", () => {
    expect(new WasmKernels().matvec("q4_k", 64)).toBeUndefined();
  });
});
