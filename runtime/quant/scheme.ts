// A quantization scheme: how a row of weights is stored in fixed-size blocks, and how to get it back.
// The compiler, the planner, the checkpoint readers and the CLI only ever see this interface.

import type { Rows8 } from "./rows8.ts";

export interface CpuKernel {
  /**
   * TypeScript statements that add dot(row, x) for one weight row to the local `acc` (a number).
   * The generated kernel inlines it into its inner loop. Names in scope:
   *   u8: Uint8Array and i8: Int8Array over the packed weights, f32: Float32Array over the same bytes
   *   (the tensor starts 4-byte aligned, so an f32 row begins at f32[row >> 2]), f16: Float32Array(65536) mapping a
   *   half's bits to its value, x: Float32Array activations, row: byte offset of the row's first block,
   *   xo: element offset into x, NB: the number of blocks in the row (a literal).
   * The snippet may declare locals inside its own block; it must not allocate.
   */
  dot: string;
}

/**
 * The WebAssembly SIMD piece of a scheme: WAT instructions that add the dot product of `step` weights
 * (`bytes` bytes at the byte address in local `$w`) with `step` f32 activations (at `$x`) into the
 * f32x4 accumulator `$acc`. The generated matrix-vector kernel loops over a row in steps and advances
 * `$w` and `$x` itself. Scratch locals, free at the start of every step: `$v0`..`$v11` (v128),
 * `$i0`..`$i3` (i32), `$f0`..`$f3` (f32); the building blocks in wat.ts say which of them they write
 * (`dotRuns`: `$v0`, `$v1`, `$v8`..`$v11`; the k-quants' `superBlock` and `subBlock`: also `$i1`, `$f0`,
 * `$f1`, `$v6`, `$v7`). A piece may hold loops (label them other than `$rows`, `$steps`, `$done`).
 * `(call $f16 (i32))` turns half bits into an f32 (heap address 0 holds the 65536-entry table; `halfAt`
 * reads it inline). A scheme without one runs on the TypeScript kernels.
 */
export interface WasmKernel {
  step: number;
  bytes: number;
  dot: string;
  /**
   * Optional, with step 32 or 256: the same step's dot product against activations quantized to q8_0 or
   * q8_K blocks at `$x` (their layout in runtime/quant/q8-activations.ts), added into `$acc` (`q8Runs`,
   * `q8ScaleInto`, `scaledRuns` in wat.ts). With it, the scheme's products run in integers as llama.cpp's
   * do, and the reference executor quantizes the activations the same way: the numerics are the scheme's.
   * Runs of unsigned weights in the shape `q8Runs` and `scaledRuns` write become 8-bit products in the
   * relaxed-SIMD build where their bytes are provably below 128 (compiler/codegen/relax.ts); their loads
   * must read activation values, at offsets below the values' end from the block or from a point in them.
   */
  q8?: string;
  /**
   * Optional, with `q8`: the layout of 8 interleaved rows and its step (runtime/quant/rows8.ts), which the
   * CPU's products use for every matrix whose rows come in eights and whose only uses are products (the
   * runtime repacks those as they load): one 8-bit product then works on 8 rows, and a block's scales on 8
   * rows at once, as llama.cpp's repacked layouts do.
   */
  rows8?: Rows8;
}

/**
 * The WGSL piece of a scheme, for the webgpu backend: statements that add the dot product of one block
 * with the activations to the local `acc` (f32). Weights stay packed as u32 words in a storage buffer;
 * the piece reads them by byte offset through functions the kernel defines for each weight it binds.
 * In scope: `base: u32` (byte offset of the block's first byte in the weight), `xi: u32` (index of the
 * block's first element in the activations), and
 *   `$u8(b)`, `$u16(b)` (b even), `$u32(b)` (any b) → u32: bytes at byte offset b, little-endian;
 *   `$i8(b)` → i32: a signed byte; `$f16(b)` → f32: the half at byte offset b (b even);
 *   `$x(i)` → f32: activation i;
 *   with `q8`, the activations quantized to q8_0 (runtime/quant/q8-activations.ts) once for all rows by
 *   a `quantize` kernel before the product: `$xq(i)` → i32: activation i; `$xq4(i)` → u32: activations
 *   i..i+3 (i a multiple of 4) as packed int8, for `dot4I8Packed`; `$xd(i)` → f32: the d of the block
 *   holding activation i; `$xs(i)` → i32: the sum of that block's 32 integers.
 * Every `$name` is renamed per weight when the kernel is rendered, so `helpers` (WGSL functions at module
 * scope that the piece calls) name themselves `$name` too and may call the same functions.
 */
export interface WgslKernel {
  dot: string;
  helpers?: string;
  /** The piece reads the activations quantized to q8_0 (`$xq`, `$xd`) rather than as f32 (`$x`). */
  q8?: boolean;
}

/**
 * The gpujs piece of a scheme, for the gpujs backend (gpu.js kernels, which bind every array as f32): the
 * weight's bytes are carried three to an f32 (an exact integer below 2^24) and decoded in the kernel with
 * plain arithmetic. `elem` is statements that set `$v` to element `$j` (0 ≤ $j < blockSize) of the block
 * starting at byte `$base`; `block` (optional) runs once per block before its elements and may declare
 * locals `elem` reads (a scale). Statement macros: `@u8(name, byte)`, `@f16(name, byte)` and
 * `@f32(name, byte)` declare `name` (a `let`) as the unsigned byte, half or float at that byte offset of
 * the weight. Every `$name` is renamed per use, so pieces declare their locals as `$name`.
 * `dot` (optional) is the block's dot product itself, for a scheme whose products do not go element by
 * element (q8_0 and q4_0 quantize the block's activations first, as their `q8` piece): statements after
 * `block` that add it to `$acc`, reading activation i (0 ≤ i < blockSize) of the block as `$x[i]`. The
 * embedding, a row pick, always decodes with `elem`.
 */
export interface GpuJsKernel {
  block?: string;
  elem: string;
  dot?: string;
}

export interface QuantScheme {
  /** Lower-case name used in specs and on the command line, e.g. "q4_k". */
  readonly name: string;
  /** GGUF/ggml tensor type id, when the scheme is one of GGUF's. */
  readonly ggmlType?: number;
  /** Elements per block and bytes per block: a row of n elements takes n / blockSize * blockBytes bytes. */
  readonly blockSize: number;
  readonly blockBytes: number;
  /** One line for `moec inspect` and the README. */
  readonly description: string;
  /** f32 → blocks. src.length is a multiple of blockSize; dst has room for every block. */
  encode(src: Float32Array, dst: Uint8Array): void;
  /** blocks → f32: the reference every kernel is checked against. */
  decode(src: Uint8Array, dst: Float32Array): void;
  readonly cpu: CpuKernel;
  readonly wasm?: WasmKernel;
  /** The webgpu backend's decode/dot piece; a scheme without one cannot run there. */
  readonly wgsl?: WgslKernel;
  /** The gpujs backend's decode piece; a scheme without one cannot run there. */
  readonly gpujs?: GpuJsKernel;
}

export function bitsPerWeight(s: QuantScheme): number {
  return (s.blockBytes * 8) / s.blockSize;
}

/** Bytes a tensor of `elements` elements takes, rows of `rowLength`; null if a row does not fill whole blocks. */
export function tensorBytes(s: QuantScheme, elements: number, rowLength: number): number | null {
  if (rowLength % s.blockSize !== 0) return null;
  return (elements / s.blockSize) * s.blockBytes;
}
