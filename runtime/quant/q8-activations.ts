// Activations quantized to 8-bit blocks, for the integer dot products of the schemes whose WebAssembly
// piece has a `q8` form: what llama.cpp does for the same weights, and several times the speed of widening
// every weight to f32. A piece reads the blocks of its own step:
//
// - q8_0 (step 32: q8_0, q4_0): per 32 values amax = max |x|, d = amax / 127, q = x · (127 / amax) rounded
//   half to even (as x86's round instruction does). In the heap: the 32 values widened to int16 (so a
//   product of 8 pairs is one `i32x4.dot_i16x8_s`), then d as an f32 four times over (a kernel scales each
//   column's block by the weights' d splatted once for all columns, times these lanes: one multiply per
//   column rather than a load, a multiply and a splat), then Σq as four i32 lanes that add up to it (q4_1 and
//   q5_1's min term reads it, as llama.cpp's q8_1 block carries d·Σq, rather than adding up 32 values per
//   column), then the int8 shadow (below), whose unused 16 bytes at 112 hold Σq again in every i32 lane (for
//   the kernels over 8 interleaved rows, runtime/quant/rows8.ts): 144 bytes.
// - q8_K (step 256: the k-quants), llama.cpp's block_q8_K (quantize_row_q8_K_ref): per 256 values
//   iscale = 127 / amax, q = iscale · x rounded half to even, d = 1 / iscale (llama.cpp divides by the
//   signed value of largest magnitude, which negates q and d together: every product is the same), and
//   the sums of each 16 q. In the heap: the 256 q widened to int16 (as q8_0's, for `i32x4.dot_i16x8_s`, which
//   V8 makes one instruction with its load folded in), 16 int16 sums, d as an f32, 12 bytes of padding, then
//   the int8 shadow: 1072.
//
// The shadow: each run of 16 values (32 bytes of int16 at byte o of the block) again as 16 int8 at byte
// o + the int16 values' region and its scales (96, 560), every other 16 bytes unused. Relaxed SIMD's 8-bit
// dot products read it (compiler/codegen/relax.ts), 16 products per instruction; at that fixed distance a
// piece's every int16 load has its int8 twin by adding a constant to the offset, whatever the address.
//
// This file is the reference the kernels are checked against; the kernels quantize in WebAssembly
// (`quantizer` in compiler/codegen/wasm.ts).

export const Q8_BLOCK = 32;
export const Q8_BLOCK_BYTES = 144;
/** Bytes from a run's int16 values to its int8 shadow, in a q8_0 and a q8_K block. */
export const Q8_SHADOW = 96;
/** Byte offsets in a q8_0 block: d in every f32 lane, Σq as four partial sums, Σq in every i32 lane. */
export const Q8_D = 64;
export const Q8_SUMS = 80;
export const Q8_SUM = 112;
export const Q8K_BLOCK = 256;
export const Q8K_BLOCK_BYTES = 1072;
export const Q8K_SHADOW = 560;
/** Byte offsets in a q8_K block: the 16 sums of 16, then d. */
export const Q8K_SUMS = 512;
export const Q8K_D = 544;

/** The activation blocks a `q8` piece of this step reads: values per block, its bytes in the heap, the bytes
 * of its int16 values and the int8 shadow's distance from them; or undefined. */
export function q8Format(
  step: number,
): { block: number; bytes: number; values: number; shadow: number } | undefined {
  if (step === Q8_BLOCK)
    return { block: Q8_BLOCK, bytes: Q8_BLOCK_BYTES, values: 2 * Q8_BLOCK, shadow: Q8_SHADOW };
  if (step === Q8K_BLOCK)
    return { block: Q8K_BLOCK, bytes: Q8K_BLOCK_BYTES, values: 2 * Q8K_BLOCK, shadow: Q8K_SHADOW };
  return undefined;
}

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

/** x's q8_K blocks: the integers q, each block's d and its 16 sums of 16. x.length is a multiple of 256. */
export function quantizeBlocksK(x: Float32Array): { q: Int8Array; d: Float32Array; sums: Int16Array } {
  const q = new Int8Array(x.length);
  const d = new Float32Array(x.length / Q8K_BLOCK);
  const sums = new Int16Array(x.length / 16);
  for (let b = 0; b < x.length; b += Q8K_BLOCK) {
    let amax = 0;
    for (let j = 0; j < Q8K_BLOCK; j++) amax = Math.max(amax, Math.abs(x[b + j]!));
    if (!amax) continue; // d = 0, q = 0
    const iscale = f(127 / amax);
    d[b / Q8K_BLOCK] = f(1 / iscale);
    for (let j = 0; j < Q8K_BLOCK; j++) q[b + j] = roundHalfEven(f(x[b + j]! * iscale));
  }
  for (let i = 0; i < sums.length; i++) {
    let s = 0;
    for (let j = 0; j < 16; j++) s += q[16 * i + j]!;
    sums[i] = s;
  }
  return { q, d, sums };
}

/** x as the integer kernels of a `q8` piece with this step see it: each value replaced by q · d of its
 * block (q8_0 for step 32, q8_K for 256). x.length is a multiple of the step. */
export function quantizeActivations(x: Float32Array, step = Q8_BLOCK): Float32Array {
  const k = step === Q8K_BLOCK;
  const { q, d } = k ? quantizeBlocksK(x) : quantizeBlocks(x);
  const shift = k ? 8 : 5;
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f(q[i]! * d[i >> shift]!);
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
