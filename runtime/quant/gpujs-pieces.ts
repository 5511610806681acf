// The gpujs backend's piece of each built-in quantization scheme. gpu.js binds every array as f32, so the
// gpujs backend carries a weight's bytes three to an f32 (an exact integer below 2^24, little-endian:
// runtime/gpu/gpujs-pack.ts) and each scheme decodes its blocks inside the kernel with plain arithmetic
// (gpu.js kernels have no bit operations on f32 data). The statement macros `@u8(name, byte)`,
// `@f16(name, byte)` and `@f32(name, byte)` declare `name` as the byte, half or float at a byte offset
// of the weight (see GpuJsKernel in scheme.ts); `$`-names are renamed per use by the code generator.
import { Q8X_GPUJS, Q8X_GPUJS_AT } from "./q8-activations.ts";
import type { GpuJsKernel } from "./scheme.ts";

/** Nibble k of a 32-weight block whose element j < 16 is the low nibble of byte j and j + 16 the high one. */
const nibble32 = (at: string) => `let $k = $j;
let $hi = 0;
if ($j > 15.5) {
  $k = $j - 16;
  $hi = 1;
}
@u8($b, $base + ${at} + $k);
let $n = $b % 16;
if ($hi > 0.5) {
  $n = Math.floor($b / 16);
}`;

/** Bit j of the 32-bit word at byte `at` of the block (q5_0/q5_1's fifth bits). */
const bit32 = (at: string) => `@u8($hb, $base + ${at} + Math.floor($j / 8));
const $h = Math.floor($hb / Math.pow(2, $j % 8)) % 2;`;

/** q4_k/q5_k: the 6-bit scale and min of sub-block $sb, scale bytes at byte 4 of the block. */
const scaleMinK4 = `let $sc = 0;
let $mn = 0;
if ($sb < 3.5) {
  @u8($s0, $base + 4 + $sb);
  @u8($m0, $base + 8 + $sb);
  $sc = $s0 % 64;
  $mn = $m0 % 64;
} else {
  @u8($s1, $base + 8 + $sb);
  @u8($s2, $base + 4 + $sb);
  @u8($s3, $base + 4 + $sb - 4);
  $sc = ($s1 % 16) + Math.floor($s3 / 64) * 16;
  $mn = Math.floor($s1 / 16) + Math.floor($s2 / 64) * 16;
}`;

export const gpujsPieces: Record<string, GpuJsKernel> = {
  f32: { elem: "@f32($w, $base);\n$v = $w;" },
  f16: { elem: "@f16($w, $base);\n$v = $w;" },
  bf16: {
    elem: `@u8($lo, $base);
@u8($hi, $base + 1);
const $e = ($hi % 128) * 2 + Math.floor($lo / 128);
const $m = $lo % 128;
if ($e > 0.5) {
  $v = (1 + $m / 128) * Math.pow(2, $e - 127);
} else {
  $v = $m * Math.pow(2, -126) / 128;
}
if ($hi > 127.5) {
  $v = -$v;
}`,
  },
  // q8_0 and q4_0 multiply against the block's activations quantized to q8_0, as their `q8` (CPU) piece:
  // the integer products summed (exact in f32, |s| < 2^20), then scaled by d_w·d_x.
  q8_0: {
    block: "@f16($d, $base);",
    elem: `@u8($q, $base + 2 + $j);
if ($q > 127.5) {
  $q = $q - 256;
}
$v = $q * $d;`,
    dot: `${Q8X_GPUJS}
let $s = 0;
for (let $j = 0; $j < 32; $j++) {
@u8($q, $base + 2 + $j);
if ($q > 127.5) {
  $q = $q - 256;
}
${Q8X_GPUJS_AT}
$s += $q * $qx;
}
$acc += $s * ($d * $dx);`,
  },
  q4_0: {
    block: "@f16($d, $base);",
    elem: `${nibble32("2")}
$v = ($n - 8) * $d;`,
    dot: `${Q8X_GPUJS}
let $s = 0;
for (let $j = 0; $j < 32; $j++) {
${nibble32("2")}
${Q8X_GPUJS_AT}
$s += ($n - 8) * $qx;
}
$acc += $s * ($d * $dx);`,
  },
  q4_1: {
    block: "@f16($d, $base);\n@f16($m, $base + 2);",
    elem: `${nibble32("4")}
$v = $n * $d + $m;`,
  },
  q5_0: {
    block: "@f16($d, $base);",
    elem: `${nibble32("6")}
${bit32("2")}
$v = ($n + 16 * $h - 16) * $d;`,
  },
  q5_1: {
    block: "@f16($d, $base);\n@f16($m, $base + 2);",
    elem: `${nibble32("8")}
${bit32("4")}
$v = ($n + 16 * $h) * $d + $m;`,
  },
  // Element j = 128h + 32k + r: scale byte ⌊j/16⌋ (low nibble scale, high nibble min), 2-bit value k of byte 16 + 32h + r.
  q2_k: {
    block: "@f16($d, $base + 80);\n@f16($dm, $base + 82);",
    elem: `const $h = Math.floor($j / 128);
const $k = Math.floor(($j - 128 * $h) / 32);
const $r = $j - 128 * $h - 32 * $k;
@u8($sc, $base + Math.floor($j / 16));
@u8($q, $base + 16 + 32 * $h + $r);
const $qv = Math.floor($q / Math.pow(4, $k)) % 4;
$v = $d * ($sc % 16) * $qv - $dm * Math.floor($sc / 16);`,
  },
  // Element j = 128h + 32k + l: 2 low bits k of byte 32 + 32h + l, high bit 4h + k of hmask byte l (clear: −4).
  q3_k: {
    block: "@f16($d, $base + 108);",
    elem: `const $h = Math.floor($j / 128);
const $k = Math.floor(($j - 128 * $h) / 32);
const $l = $j - 128 * $h - 32 * $k;
const $is = Math.floor($j / 16);
@u8($q, $base + 32 + 32 * $h + $l);
@u8($hm, $base + $l);
const $qv = Math.floor($q / Math.pow(4, $k)) % 4;
const $hb = Math.floor($hm / Math.pow(2, 4 * $h + $k)) % 2;
let $low = 0;
if ($is < 7.5) {
  @u8($l0, $base + 96 + $is);
  $low = $l0 % 16;
} else {
  @u8($l1, $base + 96 + $is - 8);
  $low = Math.floor($l1 / 16);
}
@u8($hs, $base + 104 + ($is % 4));
const $high = Math.floor($hs / Math.pow(4, Math.floor($is / 4))) % 4;
$v = $d * ($low + 16 * $high - 32) * ($qv - 4 + 4 * $hb);`,
  },
  // Element j = 64k + 32·half + l: sub-block 2k + half, nibble half of byte 16 + 32k + l.
  q4_k: {
    block: "@f16($d, $base);\n@f16($dm, $base + 2);",
    elem: `const $sb = Math.floor($j / 32);
const $k = Math.floor($j / 64);
const $l = $j - 32 * $sb;
${scaleMinK4}
@u8($q, $base + 16 + 32 * $k + $l);
let $n = $q % 16;
if ($sb - 2 * $k > 0.5) {
  $n = Math.floor($q / 16);
}
$v = $d * $sc * $n - $dm * $mn;`,
  },
  q5_k: {
    block: "@f16($d, $base);\n@f16($dm, $base + 2);",
    elem: `const $sb = Math.floor($j / 32);
const $k = Math.floor($j / 64);
const $l = $j - 32 * $sb;
${scaleMinK4}
@u8($q, $base + 48 + 32 * $k + $l);
@u8($qh, $base + 16 + $l);
let $n = $q % 16;
if ($sb - 2 * $k > 0.5) {
  $n = Math.floor($q / 16);
}
$n = $n + 16 * (Math.floor($qh / Math.pow(2, $sb)) % 2);
$v = $d * $sc * $n - $dm * $mn;`,
  },
  // Element j = 128h + 32p + l: nibble ⌊p/2⌋ of ql byte 64h + l + 32(p mod 2), bits 2p of qh byte 128 + 32h + l.
  q6_k: {
    block: "@f16($d, $base + 208);",
    elem: `const $h = Math.floor($j / 128);
const $p = Math.floor(($j - 128 * $h) / 32);
const $l = $j - 128 * $h - 32 * $p;
@u8($ql, $base + 64 * $h + $l + 32 * ($p % 2));
@u8($qh, $base + 128 + 32 * $h + $l);
@u8($sc, $base + 192 + 8 * $h + Math.floor($l / 16) + 2 * $p);
let $lo = $ql % 16;
if ($p > 1.5) {
  $lo = Math.floor($ql / 16);
}
const $q = $lo + 16 * (Math.floor($qh / Math.pow(4, $p)) % 4) - 32;
let $s = $sc;
if ($s > 127.5) {
  $s = $s - 256;
}
$v = $d * $s * $q;`,
  },
};
