// Properties of every built-in scheme, checked with fast-check.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compileCpuDot } from "../cpu-dot.ts";
import { schemes } from "../index.ts";
import type { QuantScheme } from "../scheme.ts";

const all = schemes();
const BLOCKS = 2;

function elements(s: QuantScheme): number {
  return Math.max(BLOCKS * s.blockSize, 64);
}

function bytesFor(s: QuantScheme, n: number): number {
  return (n / s.blockSize) * s.blockBytes;
}

/** Relative error allowed on a lone outlier that sets its block's scale. */
const outlierTolerance: Record<string, number> = {
  f32: 0,
  f16: 5e-4,
  bf16: 4e-3,
  q8_0: 2e-3,
  q4_0: 2e-3,
  q4_1: 2e-3,
  q5_0: 2e-3,
  q5_1: 2e-3,
  q2_k: 2e-2,
  q3_k: 2e-2,
  q4_k: 2e-2,
  q5_k: 2e-2,
  q6_k: 2e-2,
};

describe.each(all.map((s) => [s.name, s] as const))("%s", (_name, s) => {
  it("decodes all-zero bytes to zeros", () => {
    const n = elements(s);
    const y = new Float32Array(n).fill(7);
    s.decode(new Uint8Array(bytesFor(s, n)), y);
    expect(y.every((v) => v === 0)).toBe(true);
  });

  it("encodes zeros to blocks that decode to zeros", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3 }), (blocks) => {
        const n = blocks * Math.max(s.blockSize, 32);
        const q = new Uint8Array(bytesFor(s, n)).fill(0xa5);
        s.encode(new Float32Array(n), q);
        const y = new Float32Array(n).fill(7);
        s.decode(q, y);
        expect(y.every((v) => v === 0)).toBe(true);
      }),
      { numRuns: 5 },
    );
  });

  it("keeps a single huge outlier and stays finite", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: elements(s) - 1 }),
        fc.double({ min: 100, max: 6e4, noNaN: true }),
        fc.boolean(),
        fc.integer({ min: 1, max: 1 << 30 }),
        (at, magnitude, negative, seed) => {
          const n = elements(s);
          const x = new Float32Array(n);
          let r = seed;
          for (let i = 0; i < n; i++) {
            r = (Math.imul(r, 1103515245) + 12345) >>> 0;
            x[i] = (r / 2 ** 32 - 0.5) * 0.1;
          }
          const m = Math.fround(negative ? -magnitude : magnitude);
          x[at] = m;
          const q = new Uint8Array(bytesFor(s, n));
          s.encode(x, q);
          const y = new Float32Array(n);
          s.decode(q, y);
          expect(y.every(Number.isFinite)).toBe(true);
          expect(Math.abs(y[at]! - m)).toBeLessThanOrEqual(outlierTolerance[s.name]! * Math.abs(m));
        },
      ),
      { numRuns: 40 },
    );
  });

  it("rejects NaN and ±Infinity with an Error naming the value and its place", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: elements(s) - 1 }),
        fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY),
        (at, bad) => {
          const n = elements(s);
          const x = new Float32Array(n).fill(0.5);
          x[at] = bad;
          const q = new Uint8Array(bytesFor(s, n));
          expect(() => s.encode(x, q)).toThrow(Error);
          expect(() => s.encode(x, q)).toThrow(new RegExp(`${s.name}: .*${String(bad)}.* element ${at}\\b`));
        },
      ),
      { numRuns: 20 },
    );
  });

  it("writes exactly its blocks and nothing past them", () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: -1000, max: 1000, noNaN: true }), { minLength: 1, maxLength: 3 }),
        (vals) => {
          const n = elements(s);
          const x = new Float32Array(n);
          for (let i = 0; i < n; i++) x[i] = vals[i % vals.length]! * ((i % 7) - 3);
          const used = bytesFor(s, n);
          const q = new Uint8Array(used + 16).fill(0xcd);
          s.encode(x, q);
          expect(q.subarray(used).every((b) => b === 0xcd)).toBe(true);
        },
      ),
      { numRuns: 10 },
    );
  });

  it("cpu.dot agrees with decode on arbitrary block bytes", () => {
    const nb = Math.max(BLOCKS, 64 / s.blockSize);
    const dot = compileCpuDot(s, nb);
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: nb * s.blockBytes + 8, maxLength: nb * s.blockBytes + 8 }),
        (bytes) => {
          const y = new Float32Array(nb * s.blockSize);
          s.decode(bytes.subarray(4, 4 + nb * s.blockBytes), y);
          if (!y.every(Number.isFinite)) return; // a NaN/Inf scale: nothing to compare
          const x = new Float32Array(y.length + 3);
          for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 1.7);
          let want = 0;
          let mag = 0;
          for (let i = 0; i < y.length; i++) {
            want += y[i]! * x[i + 3]!;
            mag += Math.abs(y[i]! * x[i + 3]!);
          }
          const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
          const got = dot(
            new Uint8Array(buf),
            new Int8Array(buf),
            new Float32Array(buf, 0, buf.byteLength >> 2),
            x,
            4,
            3,
          );
          expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-9 * mag + 1e-4 * Math.abs(want) + 1e-300);
        },
      ),
      { numRuns: 30 },
    );
  });
});
