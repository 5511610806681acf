// Turns a scheme's cpu.dot snippet into a callable, the way a generated kernel inlines it: the snippet
// sees u8, i8, f32, f16, x, row, xo, NB (a literal) and adds to `acc`. For tests, tools and fallback
// paths; generated kernels inline the snippet themselves.
import { f16Table } from "./half.ts";
import type { QuantScheme } from "./scheme.ts";

/** u8, i8 and f32 view the same bytes; f32 needs them to start 4-byte aligned (see CpuKernel). */
export type RowDot = (
  u8: Uint8Array,
  i8: Int8Array,
  f32: Float32Array,
  x: Float32Array,
  row: number,
  xo: number,
) => number;

/** dot(row of `nb` blocks at byte offset row, x[xo ..]) through the scheme's cpu.dot snippet. */
export function compileCpuDot(scheme: QuantScheme, nb: number): RowDot {
  if (!Number.isInteger(nb) || nb < 0)
    throw new Error(`compileCpuDot: block count ${nb} is not a natural number`);
  const body = `"use strict";\nconst NB = ${nb};\nlet acc = 0;\n${scheme.cpu.dot}\nreturn acc;`;
  const fn = new Function("u8", "i8", "f32", "f16", "x", "row", "xo", body) as (
    u8: Uint8Array,
    i8: Int8Array,
    f32: Float32Array,
    f16: Float32Array,
    x: Float32Array,
    row: number,
    xo: number,
  ) => number;
  return (u8, i8, f32, x, row, xo) => fn(u8, i8, f32, f16Table, x, row, xo);
}
