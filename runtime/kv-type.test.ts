import { readFileSync } from "node:fs";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { kvBytesPerValue, kvRowBytes, kvTypeProblem, roundKv } from "./kv-type.ts";
import { f16Table, f32ToF16 } from "./quant/half.ts";

describe("KV cache types", () => {
  it("sizes rows exactly: 4, 2 and 34/32 bytes a value; q8_0 in whole blocks", () => {
    expect(kvRowBytes(1024, "f32")).toBe(4096);
    expect(kvRowBytes(1024, "f16")).toBe(2048);
    expect(kvRowBytes(1024, "q8_0")).toBe(32 * 34);
    expect(kvBytesPerValue("q8_0") * 1024).toBe(kvRowBytes(1024, "q8_0"));
    expect(() => kvRowBytes(48, "q8_0")).toThrow(/whole 32-value blocks, not 48/);
    expect(kvTypeProblem("q8_0", 8)).toMatch(/multiple of 32.*not 8/);
    expect(kvTypeProblem("f16", 8)).toBeUndefined();
  });

  it("f16 rounds each value to nearest even, as ggml's GGML_FP32_TO_FP16", () => {
    const x = Float32Array.from([1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 1e-7, -3.14159, 7e4]);
    const want = Array.from(x, (v) => f16Table[f32ToF16(v)]!);
    expect([...roundKv(Float32Array.from(x), "f16")]).toEqual(want);
    expect(want.slice(0, 3)).toEqual([1, 1, 1 + 4 * 2 ** -11]); // the ties, to even
  });

  it("q8_0 keeps d = max|x|/127 in f16 and rounds x·127/max|x| half to even, as ggml's quantize_row_q8_0", () => {
    const x = new Float32Array(64);
    for (let i = 0; i < 64; i++) x[i] = Math.sin(i * 1.7) * (i < 32 ? 1 : 1e-3);
    x[5] = -1.27; // the first block's max: its values are multiples of d = 0.01 in f16
    x[6] = 0.025; // 2.5 steps: a tie, to 2
    x[7] = 0.035; // 3.5 steps: to 4
    const y = roundKv(Float32Array.from(x), "q8_0");
    const d = f16Table[f32ToF16(Math.fround(1.27 / 127))]!;
    expect(y[5]).toBe(Math.fround(-127 * d));
    expect(y[6]).toBe(Math.fround(2 * d));
    expect(y[7]).toBe(Math.fround(4 * d));
    // Half a step, plus d's own f16 rounding (2^-11 relative) times up to 127 steps.
    const amax = Math.max(...x.subarray(32).map(Math.abs));
    for (let i = 32; i < 64; i++)
      expect(Math.abs(y[i]! - x[i]!)).toBeLessThanOrEqual(amax * (1 / 254 + 2 ** -11));
    expect([...roundKv(new Float32Array(32), "q8_0")]).toEqual(new Array(32).fill(0));
  });

  it("the generated modules' own f32 → f16 (templates/to_half.hbs) is half.ts's, bit for bit", () => {
    const src = readFileSync(new URL("../compiler/codegen/templates/to_half.hbs", import.meta.url), "utf8");
    const js = ts.transpileModule(src, { compilerOptions: { target: ts.ScriptTarget.ES2022 } }).outputText;
    const toHalf = new Function(`${js}; return to_half;`)() as (v: number) => number;
    const u = new Uint32Array(1);
    const f = new Float32Array(u.buffer);
    for (let i = 0; i < 200_000; i++) {
      u[0] = (Math.imul(i, 2654435761) ^ (i << 7)) >>> 0;
      expect(toHalf(f[0]!)).toBe(f32ToF16(f[0]!));
    }
    for (const v of [0, -0, 65504, 65520, 1e9, -1e9, 2 ** -24, 2 ** -25, 3 * 2 ** -26, Infinity, Number.NaN])
      expect(toHalf(v), String(v)).toBe(f32ToF16(v));
    // Every f32 around the edges of the normal halves' one-add path (the smallest normal, the largest finite).
    for (const edge of [0x38800000, 0x477ff000])
      for (let b = edge - 0x2000; b < edge + 0x2000; b++)
        for (const s of [0, 0x80000000]) {
          u[0] = (b | s) >>> 0;
          if (toHalf(f[0]!) !== f32ToF16(f[0]!))
            expect(toHalf(f[0]!), `bits ${u[0]!.toString(16)}`).toBe(f32ToF16(f[0]!));
        }
  });
});
