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

/** x as the integer kernels see it: each value replaced by q · d of its block. x.length is a multiple of 32. */
export function quantizeActivations(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let b = 0; b < x.length; b += Q8_BLOCK) {
    let amax = 0;
    for (let j = 0; j < Q8_BLOCK; j++) amax = Math.max(amax, Math.abs(x[b + j]!));
    const d = f(amax / 127);
    const id = amax ? f(127 / amax) : 0;
    for (let j = 0; j < Q8_BLOCK; j++) out[b + j] = f(roundHalfEven(f(x[b + j]! * id)) * d);
  }
  return out;
}
