// NF4: 4-bit NormalFloat (Dettmers et al., QLoRA, 2023) with a per-block absmax, as a moec plugin.
// One file: the block layout, encode, decode (the reference) and the CPU kernel snippet.
//
//   moec quantize model.gguf -o model-nf4.gguf --scheme nf4 --plugin examples/custom-quant/nf4.ts
//
// Block (64 weights, 34 bytes, 4.25 bits/weight):
//   bytes 0–1   f16 absmax d of the block
//   bytes 2–33  32 bytes of 4-bit codes: byte j holds weight j (low nibble) and weight j + 32 (high)
//   w = d · NF4[code], where NF4 is bitsandbytes' 16-level table (quantiles of N(0, 1) scaled to [-1, 1])
//   stored as f16, so the table the kernel reads and the one decode uses are the same numbers.
//
// The kernel snippet must not allocate, so the table is a 16-character string of f16 bit patterns,
// read with charCodeAt and the f16 → f32 table every generated kernel has in scope.
//
// Only a type is imported: the file has no runtime dependency on moec, so it works from anywhere.
import type { QuantScheme } from "../../runtime/quant/scheme.ts";

const QK = 64;
const BYTES = 34;

/** bitsandbytes' NF4 code book. */
const NF4_F32 = [
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
];

// f32 ↔ f16 (round to nearest even), enough for this file.
const f32b = new Float32Array(1);
const u32b = new Uint32Array(f32b.buffer);
function toF16(v: number): number {
  f32b[0] = v;
  const x = u32b[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && m & 1)) m++;
    return sign | m;
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && m & 1)) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}
function fromF16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

const CODE_BITS = NF4_F32.map(toF16);
/** The code book as the kernel sees it: each level rounded to f16. */
export const NF4 = CODE_BITS.map(fromF16);
/** Decision thresholds: midpoints between neighbouring levels. */
const MID = NF4.slice(1).map((v, i) => (v + NF4[i]!) / 2);
const TABLE = CODE_BITS.map((b) => `\\u${b.toString(16).padStart(4, "0")}`).join("");

function nearest(v: number): number {
  let q = 0;
  while (q < 15 && v > MID[q]!) q++;
  return q;
}

const dot = `{
  const T = "${TABLE}";
  let qo = row;
  let qx = xo;
  for (let qb = 0; qb < NB; qb++, qo += ${BYTES}, qx += ${QK}) {
    let s0 = 0;
    let s1 = 0;
    for (let j = 0; j < 32; j++) {
      const b = u8[qo + 2 + j];
      s0 += f16[T.charCodeAt(b & 15)] * x[qx + j];
      s1 += f16[T.charCodeAt(b >> 4)] * x[qx + j + 32];
    }
    acc += f16[u8[qo] | (u8[qo + 1] << 8)] * (s0 + s1);
  }
}`;

export const nf4: QuantScheme = {
  name: "nf4",
  blockSize: QK,
  blockBytes: BYTES,
  description: "4-bit NormalFloat (QLoRA), blocks of 64 with an f16 absmax (4.25 bits/weight)",
  encode(src, dst) {
    if (src.length % QK !== 0)
      throw new Error(`nf4: ${src.length} elements is not a whole number of blocks of ${QK}`);
    const nb = src.length / QK;
    if (dst.length < nb * BYTES)
      throw new Error(`nf4: ${nb} blocks need ${nb * BYTES} bytes, the buffer has ${dst.length}`);
    for (let i = 0; i < nb; i++) {
      const xo = i * QK;
      const o = i * BYTES;
      let amax = 0;
      for (let j = 0; j < QK; j++) {
        const v = src[xo + j]!;
        if (!Number.isFinite(v))
          throw new Error(`nf4: cannot encode non-finite value ${v} at element ${xo + j}`);
        amax = Math.max(amax, Math.abs(v));
      }
      const h = toF16(amax);
      const d = fromF16(h);
      const id = d > 0 ? 1 / d : 0;
      dst[o] = h & 0xff;
      dst[o + 1] = h >> 8;
      for (let j = 0; j < 32; j++) {
        dst[o + 2 + j] = nearest(src[xo + j]! * id) | (nearest(src[xo + j + 32]! * id) << 4);
      }
    }
  },
  decode(src, dst) {
    const nb = dst.length / QK;
    for (let i = 0; i < nb; i++) {
      const o = i * BYTES;
      const d = fromF16(src[o]! | (src[o + 1]! << 8));
      for (let j = 0; j < 32; j++) {
        const b = src[o + 2 + j]!;
        dst[i * QK + j] = d * NF4[b & 15]!;
        dst[i * QK + j + 32] = d * NF4[b >> 4]!;
      }
    }
  },
  cpu: { dot },
  // The webgpu backend's piece (WGSL): the same code book as a private table, the codes read from the
  // packed u32 words by byte (`$u8`, `$f16` and `$x` are defined by the kernel; see runtime/quant/scheme.ts).
  wgsl: {
    helpers: `var<private> $book: array<f32, 16> = array<f32, 16>(${NF4.map((v) => (Number.isInteger(v) ? `${v}.0` : String(v))).join(", ")});`,
    dot: `var s: f32 = 0.0;
for (var j = 0u; j < 32u; j++) {
  let b = $u8(base + 2u + j);
  s += $book[b & 15u] * $x(xi + j) + $book[b >> 4u] * $x(xi + j + 32u);
}
acc += $f16(base) * s;`,
  },
};

export default nf4;
