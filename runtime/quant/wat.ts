// Building blocks for the schemes' WebAssembly pieces (see `WasmKernel` in scheme.ts), so each scheme
// states only its block layout. All of them add into an f32x4 sum with activations read at `$x`.

/** `into += lanes × x[off / 4 .. off / 4 + 4]`, lanes an f32x4 expression. */
export const mulAdd = (lanes: string, off: number, into = "$acc") =>
  `(local.set ${into} (f32x4.add (local.get ${into}) (f32x4.mul ${lanes} (v128.load offset=${off} align=4 (local.get $x)))))`;

/** Sixteen signed bytes (an i8x16 expression) times sixteen activations from `off`, into `into`. */
export function i8x16Dot(bytes: string, off: number, into: string): string {
  const lanes = (half: "low" | "high", v: string) => [
    mulAdd(
      `(f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get ${v})))`,
      off + (half === "low" ? 0 : 32),
      into,
    ),
    mulAdd(
      `(f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get ${v})))`,
      off + (half === "low" ? 16 : 48),
      into,
    ),
  ];
  return [
    `(local.set $v0 (i16x8.extend_low_i8x16_s ${bytes}))`,
    `(local.set $v1 (i16x8.extend_high_i8x16_s ${bytes}))`,
    ...lanes("low", "$v0"),
    ...lanes("high", "$v1"),
  ].join("\n");
}

/** `$acc += $v3 × d`, the block's sum scaled by the half-precision scale at byte `off` of the block. */
export const scaleInto = (off: number) =>
  `(local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (local.get $v3) (f32x4.splat (call $f16 (i32.load16_u offset=${off} align=1 (local.get $w)))))))`;

export const zero = (v: string) => `(local.set ${v} (v128.const i32x4 0 0 0 0))`;
