// The row kernels (templates/rows.wat.hbs: RMSNorm, RoPE's rotation, SwiGLU, a pick's weighted sum, the
// router's logits, softmax and top-k) against the TypeScript the generated kernels ran before them, in the
// plain and (where the engine has it) the relaxed-SIMD build. RoPE, the weighted sum and the router's logits
// (f64 sums in cpu.dot's order) compute the same operations and match to the bit; RMSNorm sums its squares in
// two f64 lanes rather than one (within an f32 ulp); SwiGLU and the softmax use ggml's expf (within a few f32
// ulps of Math.exp).
import { describe, expect, it } from "vitest";
import { getScheme } from "../../runtime/quant/index.ts";
import { gaussian } from "../../runtime/quant/test-support.ts";
import { needsRelaxedSimd } from "../../test/machine.ts";
import { ROWS, WasmKernels } from "./wasm.ts";

type Fn = (...args: number[]) => void;

function instance(relaxed: boolean) {
  const kernels = new WasmKernels();
  kernels.rows();
  const memory = new WebAssembly.Memory({ initial: 4, maximum: 4, shared: true });
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(kernels.binary(relaxed)), {
    env: { memory },
  });
  const f32 = new Float32Array(memory.buffer);
  const f64 = new Float64Array(memory.buffer);
  return { k: exports as Record<string, Fn>, f32, f64 };
}

const ULP = 2 ** -23;

describe("row kernels", () => {
  for (const relaxed of [false, true]) {
    const needs = relaxed ? needsRelaxedSimd() : {};
    const build = relaxed ? " (relaxed SIMD)" : "";

    it(`RMSNorm, whole vectors and groups, several vectors apart${build}`, needs, () => {
      const { k, f32 } = instance(relaxed);
      for (const [n, d] of [
        [640, 640],
        [10, 10],
        [7, 7],
        [384, 128],
        [15, 5],
      ] as const) {
        const count = 3;
        const stride = 1024; // floats
        const g0 = 64;
        const x0 = 1024;
        const y0 = 8192;
        const x = gaussian(count * stride, n, 3);
        x[5] = 200; // an outlier sets the scale
        f32.set(x, x0);
        f32.set(gaussian(d, d + 1), g0);
        const eps = 1e-5;
        k[ROWS.rms]!(4 * x0, 4 * g0, 4 * y0, n, d, eps, count, 4 * stride);
        for (let v = 0; v < count; v++) {
          for (let h = 0; h < n; h += d) {
            let ss = 0;
            for (let i = h; i < h + d; i++) ss += x[v * stride + i]! * x[v * stride + i]!;
            const rms = 1 / Math.sqrt(ss / d + eps);
            for (let i = h; i < h + d; i++) {
              const want = Math.fround(x[v * stride + i]! * rms * f32[g0 + i - h]!);
              const got = f32[y0 + v * stride + i]!;
              expect(Math.abs(got - want), `n ${n} d ${d} vector ${v} [${i}]`).toBeLessThanOrEqual(
                ULP * Math.abs(want),
              );
            }
          }
        }
        // In place (y = x), as the q/k norm epilogue runs.
        k[ROWS.rms]!(4 * x0, 4 * g0, 4 * x0, n, d, eps, 1, 0);
        for (let i = 0; i < n; i++) expect(f32[x0 + i]).toBe(f32[y0 + i]);
      }
    });

    it(`RoPE, both pair styles, to the bit${build}`, needs, () => {
      const { k, f32, f64 } = instance(relaxed);
      for (const interleaved of [0, 1]) {
        const heads = 3;
        const half = 8;
        const count = 2;
        const stride = 128; // floats between vectors
        const y0 = 1024;
        const cs0 = 2048; // f64 index
        const csStride = 256; // bytes, room for 8 cosines and 8 sines
        const y = gaussian(count * stride, 9 + interleaved, 2);
        f32.set(y, y0);
        const angles = (v: number) => Array.from({ length: half }, (_, j) => (v + 3) * 1e6 ** (-j / half));
        for (let v = 0; v < count; v++)
          angles(v).forEach((a, j) => {
            f64[cs0 + (v * csStride) / 8 + j] = Math.cos(a);
            f64[cs0 + (v * csStride) / 8 + half + j] = Math.sin(a);
          });
        k[ROWS.rope]!(4 * y0, 4 * stride, count, 8 * cs0, csStride, heads, half, interleaved);
        for (let v = 0; v < count; v++) {
          const want = Float32Array.from(y.subarray(v * stride, v * stride + heads * 2 * half));
          const a = angles(v);
          for (let h = 0; h < heads; h++)
            for (let j = 0; j < half; j++) {
              const ia = h * 2 * half + (interleaved ? 2 * j : j);
              const ib = ia + (interleaved ? 1 : half);
              const [va, vb, c, s] = [want[ia]!, want[ib]!, Math.cos(a[j]!), Math.sin(a[j]!)];
              want[ia] = va * c - vb * s;
              want[ib] = va * s + vb * c;
            }
          expect([...f32.subarray(y0 + v * stride, y0 + v * stride + want.length)]).toEqual([...want]);
        }
      }
    });

    it(`SwiGLU within 4 f32 ulps of Math.exp's, every length${build}`, needs, () => {
      const { k, f32 } = instance(relaxed);
      for (const n of [1, 3, 4, 17, 1792]) {
        const g = gaussian(n, n, 4);
        if (n > 4) [g[0], g[1], g[2], g[3]] = [100, -100, 0, -0.5];
        const u = gaussian(n, n + 1, 2);
        f32.set(g, 0);
        f32.set(u, 2048);
        k[ROWS.swiglu]!(0, 4 * 2048, 4 * 4096, n);
        for (let i = 0; i < n; i++) {
          const want = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
          expect(Math.abs(f32[4096 + i]! - want), `n ${n} [${i}]`).toBeLessThanOrEqual(
            4 * ULP * Math.abs(want) + 1e-30,
          );
        }
      }
    });

    it(`a pick's weighted sum rounds the product, then adds, to the bit${build}`, needs, () => {
      const { k, f32 } = instance(relaxed);
      for (const n of [640, 7]) {
        const x = gaussian(n, 5, 3);
        const y = gaussian(n, 6, 3);
        f32.set(x, 0);
        f32.set(y, 1024);
        const w = Math.fround(0.37);
        k[ROWS.axpy]!(w, 0, 4 * 1024, n);
        const want = y.map((v, i) => Math.fround(w * x[i]!) + v);
        expect([...f32.subarray(1024, 1024 + n)]).toEqual([...want]);
      }
    });

    it(
      `the router's logits: f32 rows summed in f64 as the f32 scheme's cpu.dot sums them, to the bit${build}`,
      needs,
      () => {
        const { k, f32 } = instance(relaxed);
        // The reference's routing: the f32 scheme's cpu.dot snippet, run as the generated code runs it.
        const dot = new Function(
          "f32",
          "x",
          "xo",
          "row",
          "NB",
          `let acc = 0; ${getScheme("f32").cpu.dot} return acc;`,
        ) as (w: Float32Array, x: Float32Array, xo: number, row: number, nb: number) => number;
        for (const n of [640, 7, 513, 4]) {
          const rows = 8;
          const w = gaussian(rows * n, n, 0.5);
          const x = gaussian(n, n + 1, 3);
          // A near-tie: rows 1 and 2 copy row 0, row 2 with its last element changed a little.
          w.set(w.subarray(0, n), n);
          w.set(w.subarray(0, n), 2 * n);
          w[3 * n - 1] = Math.fround(w[3 * n - 1]! * (1 + 2 ** -20));
          w.fill(0, 3 * n, 4 * n);
          // Row 3: one tiny product alone, −1e-60, which f32 rounds to −0.
          const t = n > 5 ? 5 : 0;
          w[3 * n + t] = -1e-30;
          x[t] = 1e-30;
          // Row 4 cancels: 1e17, then 1, 1, 1, then −1e17. In cpu.dot's four sums that is 3; one running sum
          // would lose the 1s to 1e17's ulp and give 0.
          if (n > 5) {
            w.fill(0, 4 * n, 5 * n);
            w.set([1e17, 1, 1, 1, -1e17], 4 * n);
            x.set([1, 1, 1, 1, 1]);
          }
          x[n - 1] = 1e30;
          const [w0, x0, y0] = [0, 8192, 12288];
          f32.set(w, w0);
          f32.set(x, x0);
          k[ROWS.router]!(4 * w0, 4 * x0, n, rows, 4 * y0);
          for (let e = 0; e < rows; e++) {
            const want = Math.fround(dot(w, x, 0, 4 * e * n, n));
            expect(Object.is(f32[y0 + e], want), `n ${n}, row ${e}: ${f32[y0 + e]} vs ${want}`).toBe(true);
          }
        }
      },
    );

    it(`the router's softmax and top-k: ties to the lower id, renormalized or not${build}`, needs, () => {
      const { k, f32 } = instance(relaxed);
      const logits = [0.5, 2, -1, 2, 1.5, -30, 0.25, 2];
      for (const normalize of [0, 1]) {
        for (const topK of [1, 2, 3]) {
          f32.set(logits, 0);
          k[ROWS.topk]!(0, logits.length, topK, 4 * 64, normalize);
          const max = Math.max(...logits);
          const p = logits.map((v) => Math.exp(v - max));
          const sum = p.reduce((a, b) => a + b);
          const ids = [1, 3, 7].slice(0, topK); // the three 2s, lowest id first
          expect([...f32.subarray(64, 64 + topK)]).toEqual(ids);
          const chosen = ids.reduce((a, e) => a + p[e]! / sum, 0);
          for (let j = 0; j < topK; j++) {
            const want = p[ids[j]!]! / sum / (normalize ? chosen : 1);
            expect(f32[64 + topK + j]!).toBeCloseTo(want, 6);
          }
        }
      }
    });
  }
});
