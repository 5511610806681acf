// Activations quantized to q8_0 blocks, for the integer dot products of the schemes whose WebAssembly
// piece has a `q8` form (q8_0, q4_0): what llama.cpp does for the same weights, and twice the speed of
// widening every weight to f32. Per 32 values: amax = max |x|, d = amax / 127, q = x · (127 / amax)
// rounded half to even (as x86's round instruction does). One block in the heap is the 32 values widened
// to int16 (so a product of 8 pairs is one `i32x4.dot_i16x8_s`), then d as an f32: 68 bytes. This file is the reference the kernels are checked against; the kernels
// quantize in WebAssembly (`quantizer` in compiler/codegen/wasm.ts).

export const Q8_BLOCK = 32;
export const Q8_BLOCK_BYTES = 68;

const f = Math.fround;

function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** x's blocks quantized: the integers q and each block's d. x.length is a multiple of 32. */
export function quantizeBlocks(x: Float32Array): { q: Int8Array; d: Float32Array } {
  const q = new Int8Array(x.length);
  const d = new Float32Array(x.length / Q8_BLOCK);
  for (let b = 0; b < x.length; b += Q8_BLOCK) {
    let amax = 0;
    for (let j = 0; j < Q8_BLOCK; j++) amax = Math.max(amax, Math.abs(x[b + j]!));
    d[b / Q8_BLOCK] = amax / 127;
    const id = amax ? f(127 / amax) : 0;
    for (let j = 0; j < Q8_BLOCK; j++) q[b + j] = roundHalfEven(f(x[b + j]! * id));
  }
  return { q, d };
}

/** x as the integer kernels see it: each value replaced by q · d of its block. x.length is a multiple of 32. */
export function quantizeActivations(x: Float32Array): Float32Array {
  const { q, d } = quantizeBlocks(x);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f(q[i]! * d[i >> 5]!);
  return out;
}

// The same quantizer as text for the gpujs pieces of the schemes with a `q8` piece (q8_0, q4_0), so that
// backend multiplies those weights with the same integers as the CPU (`gpujs.dot` in gpujs-pieces.ts);
// `$`-names are renamed per use. The webgpu backend quantizes each input once, in its own kernel
// (compiler/codegen/wgsl/templates/quantize.wgsl.hbs), and the schemes' `wgsl` pieces read the integers.
// GPU f32 division need not be correctly rounded (WGSL allows 2.5 ulp), so d and id may be an ulp off the
// reference's, and an x·id within that of a half may round the other way.

/**
 * gpujs: the block's 32 activations `$x[i]` (i < 32) quantized: `$dx` (d) and `$id` (127 / amax). gpu.js kernels have
 * no local arrays, so each element is quantized where it is used, by Q8X_GPUJS_AT.
 */
export const Q8X_GPUJS = `let $amax = 0;
for (let $i = 0; $i < 32; $i++) {
  $amax = Math.max($amax, Math.abs($x[$i]));
}
const $dx = $amax / 127;
let $id = 0;
if ($amax > 0) {
  $id = 127 / $amax;
}`;

/**
 * gpujs: `$qx` = activation `$j` of the block quantized, rounded half to even by hand (gpu.js's
 * Math.round is not ties-to-even in every mode, and floor(t + 0.5) rounds t + 0.5 first): t − floor(t) is
 * exact in f32, so the comparisons with one half are too.
 */
export const Q8X_GPUJS_AT = `const $t = $x[$j] * $id;
let $qx = Math.floor($t);
const $fr = $t - $qx;
if ($fr > 0.5) {
  $qx = $qx + 1;
} else {
  if ($fr >= 0.5) {
    if ($qx - 2 * Math.floor($qx / 2) > 0.5) {
      $qx = $qx + 1;
    }
  }
}`;
