// composeQ8Kernels with stand-in kernels: what the composed `mv_` hands its quantizer and its product.
import { describe, expect, it } from "vitest";
import { composeQ8Kernels, q8RegionBytes } from "./q8-kernels.ts";

describe("composeQ8Kernels", () => {
  const memory = new SharedArrayBuffer(4096);
  const arena = new Float32Array(memory, 1024, 512);
  const manifest = { q8Scratch: { offset: 256, bytes: 128 } };

  it("quantizes x into the arena's q8 region on the calling thread, then runs the product on it", () => {
    const calls: string[] = [];
    const u32 = new Uint32Array(memory);
    const qx_64 = (xl: number, ql: number, n: number) =>
      calls.push(`qx ${u32[xl >>> 2]} -> ${u32[ql >>> 2]} n=${n}`);
    const mvq_q8_0_64 = (w: number, x: number, y: number, r0: number, r1: number, a: number, acc: number) =>
      calls.push(`mvq ${w} ${x} ${y} ${r0} ${r1} ${a} ${acc}`);
    const out = composeQ8Kernels({ mvq_q8_0_64 }, { qx_64, mvq_q8_0_64 }, manifest, arena);
    const q = 1024 + 256;
    out.mv_q8_0_64!(10, 2000, 3000, 0, 7, 0.5, 1);
    expect(calls).toEqual([`qx 2000 -> ${q} n=1`, `mvq 10 ${q} 3000 0 7 0.5 1`]);
    expect(out.mvq_q8_0_64).toBe(mvq_q8_0_64);
    expect(q8RegionBytes(128)).toBeGreaterThanOrEqual(128 + 8);
  });

  it("leaves models without integer kernels alone, and refuses integer kernels without a region", () => {
    const mv_f32_64 = () => {};
    expect(composeQ8Kernels({ mv_f32_64 }, {}, {}, arena)).toEqual({ mv_f32_64 });
    expect(() => composeQ8Kernels({ mvq_q8_0_64: () => {} }, {}, {}, arena)).toThrow(/no q8 region/);
  });
});
