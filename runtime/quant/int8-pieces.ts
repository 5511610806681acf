// Integer pieces for the batched prefill (compiler/codegen/wasm.ts, `matmulQ8`): one step of one row
// against activations quantized the way ggml quantizes them for these schemes (blocks of 32 as int8 with
// a scale, llama.cpp's q8_0 activations), so the products are exact 16-bit integer dot products
// (`i32x4.dot_i16x8_s`) and each block is scaled once: `$acc` += f32(Σ q_w·q_x) × (d_w · d_x). An
// activation block at `$x` is 32 values as i16 (64 bytes) and its f32 scale at byte 64 (68 bytes).
// Schemes without a piece here run the prefill on their f32 matrix-matrix kernels.
import { bytesAt, field, halfAt, i8s } from "./wat.ts";

/** Bytes of one quantized activation block of 32: 32 × i16, then the f32 scale. */
export const Q8_BLOCK_BYTES = 68;

const X = "(local.get $x)";
/** `$v3` = Σ over 32 weights (i8x16 locals `lo` for 0..15, `hi` for 16..31) × the block's int activations. */
const intDot = (lo: string, hi: string) => {
  const dot = (v: string, half: "low" | "high", off: number) =>
    `(i32x4.dot_i16x8_s (i16x8.extend_${half}_i8x16_s (local.get ${v})) (v128.load offset=${off} align=2 ${X}))`;
  return `(local.set $v3 (i32x4.add (i32x4.add ${dot(lo, "low", 0)} ${dot(lo, "high", 16)}) (i32x4.add ${dot(hi, "low", 32)} ${dot(hi, "high", 48)})))`;
};
const scaled = `(local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (f32x4.convert_i32x4_s (local.get $v3)) (f32x4.splat (f32.mul ${halfAt(0)} (f32.load offset=64 align=4 ${X}))))))`;

export const INT8_PIECES: Record<string, string> = {
  // block_q8_0: f16 d, 32 × int8.
  q8_0: [
    `(local.set $v1 ${bytesAt(2)})`,
    `(local.set $v2 ${bytesAt(18)})`,
    intDot("$v1", "$v2"),
    scaled,
  ].join("\n"),
  // block_q4_0: f16 d, 16 bytes: element j the low nibble of byte j, element j + 16 its high nibble, minus 8.
  q4_0: [
    `(local.set $v2 ${bytesAt(2)})`,
    `(local.set $v1 (i8x16.sub ${field("(local.get $v2)", 0, 4, 0)} ${i8s(8)}))`,
    `(local.set $v4 (i8x16.sub ${field("(local.get $v2)", 4, 4, 0)} ${i8s(8)}))`,
    intDot("$v1", "$v4"),
    scaled,
  ].join("\n"),
};
