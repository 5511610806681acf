// F32 (ggml type 0): plain little-endian IEEE binary32.
import { assertFinite, assertShapes } from "../numeric.ts";
import type { QuantScheme } from "../scheme.ts";
import { mulAdd } from "../wat.ts";

// Tensors start 4-byte aligned, so the kernel reads the row through the f32 view directly.
const dot = `{
  const wo = row >> 2;
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let j = 0;
  for (; j + 3 < NB; j += 4) {
    s0 += f32[wo + j] * x[xo + j];
    s1 += f32[wo + j + 1] * x[xo + j + 1];
    s2 += f32[wo + j + 2] * x[xo + j + 2];
    s3 += f32[wo + j + 3] * x[xo + j + 3];
  }
  for (; j < NB; j++) s0 += f32[wo + j] * x[xo + j];
  acc += s0 + s1 + s2 + s3;
}`;

export const f32: QuantScheme = {
  name: "f32",
  ggmlType: 0,
  blockSize: 1,
  blockBytes: 4,
  description: "32-bit IEEE float, unquantized (32 bits/weight)",
  encode(src, dst) {
    const n = assertShapes("f32", 1, 4, src.length, dst.length);
    assertFinite("f32", src);
    const view = new DataView(dst.buffer, dst.byteOffset, n * 4);
    for (let i = 0; i < n; i++) view.setFloat32(i * 4, src[i]!, true);
  },
  decode(src, dst) {
    const view = new DataView(src.buffer, src.byteOffset, dst.length * 4);
    for (let i = 0; i < dst.length; i++) dst[i] = view.getFloat32(i * 4, true);
  },
  cpu: { dot },
  wasm: {
    step: 16,
    bytes: 64,
    dot: [0, 16, 32, 48].map((o) => mulAdd(`(v128.load offset=${o} align=4 (local.get $w))`, o)).join("\n"),
  },
  wgsl: {
    dot: `acc += bitcast<f32>($u32(base)) * $x(xi);`,
  },
};
