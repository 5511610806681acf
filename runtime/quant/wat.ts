// Building blocks for the schemes' WebAssembly pieces (see `WasmKernel` in scheme.ts), so each scheme
// states only its block layout. Activations are read at `$x`, packed weights at `$w`. Blocks that produce
// statements name the locals they write; everything else is an expression.

import { Q8_D, Q8_SHADOW, Q8_SUM } from "./q8-activations.ts";
import { byteOrder, type Rows8 } from "./rows8.ts";

const W = "(local.get $w)";
const X = "(local.get $x)";

/** An address: the i32 expression `base` plus index × stride for each [index, stride] (i32 expression, number). */
export const addr = (base: string, ...terms: [string, number][]) =>
  terms.reduce((a, [i, n]) => `(i32.add ${a} (i32.mul ${i} (i32.const ${n})))`, base);

/** An i8x16 constant with every lane `n`. */
export const i8s = (n: number) => `(v128.const i8x16${` ${n}`.repeat(16)})`;

/** The 16 bytes at byte `off` from `base` (the block at `$w` by default). */
export const bytesAt = (off: number, base = W) => `(v128.load offset=${off} align=1 ${base})`;

/** The byte at `off` from `base` as an i32, zero- or sign-extended. */
export const byteAt = (off: number, signed = false, base = W) =>
  `(i32.load8_${signed ? "s" : "u"} offset=${off} ${base})`;

/** The f32 value of the half at byte `off` of the block: `$f16`'s table lookup inlined (the call cost more). */
export const halfAt = (off: number) =>
  `(f32.load (i32.shl (i32.load16_u offset=${off} align=1 ${W}) (i32.const 2)))`;

/** `into += lanes × x[off / 4 .. off / 4 + 4]`, lanes an f32x4 expression. */
export const mulAdd = (lanes: string, off: number, into = "$acc") =>
  `(local.set ${into} (f32x4.add (local.get ${into}) (f32x4.mul ${lanes} (v128.load offset=${off} align=4 ${X}))))`;

/**
 * Per byte of the i8x16 expression `v`: its bits from..from+width−1, moved to start at bit `to`, the
 * other bits zero. One shift and one mask (the mask is dropped when the shift already clears the rest).
 */
export function field(v: string, from: number, width: number, to: number): string {
  const shifted =
    to > from
      ? `(i8x16.shl ${v} (i32.const ${to - from}))`
      : to < from
        ? `(i8x16.shr_u ${v} (i32.const ${from - to}))`
        : v;
  const clean = to < from && from + width === 8 && to === 0; // shr_u shifted zeros in above the field
  return clean ? shifted : `(v128.and ${shifted} ${i8s(((1 << width) - 1) << to)})`;
}

/**
 * 16 bytes, 0xff where bit 16·half + j of the little-endian u32 (splatted across the i32x4 expression's
 * lanes, e.g. `v128.load32_splat`) is set and 0 elsewhere, j = 0..15 the byte: q5_0/q5_1's high bits.
 */
export function bitBytes(splat: string, half: 0 | 1): string {
  const lanes = [2 * half, 2 * half + 1].flatMap((b) => Array<number>(8).fill(b)).join(" ");
  const bits = "(v128.const i8x16 1 2 4 8 16 32 64 128 1 2 4 8 16 32 64 128)";
  return `(i8x16.eq (v128.and (i8x16.shuffle ${lanes} ${splat} ${splat}) ${bits}) ${bits})`;
}

/**
 * Statements: `into` = Σ over `runs` of 16 weights (i8x16 expressions, consecutive runs of 16 consecutive
 * weights, −128..127, or 0..255 when `unsigned`) × the activations from byte `off` of `x`, as f32x4
 * partial sums. Each run's four products are added pairwise before they reach `into`, which keeps the
 * chain of dependent adds short. With `sumX`, `sumX` = Σ of the same activations (for a block's min), each
 * loaded once. Scratch: `$v0`, `$v1`, and `$v8`..`$v11` with `sumX`.
 */
export function dotRuns(
  runs: readonly string[],
  off: number,
  into: string,
  o: { sumX?: string; unsigned?: boolean; x?: string } = {},
): string {
  const sx = o.unsigned ? "u" : "s";
  const out: string[] = [];
  runs.forEach((bytes, r) => {
    const at = (k: number) => `(v128.load offset=${off + 64 * r + 16 * k} align=4 ${o.x ?? X})`;
    const x = (k: number) => (o.sumX ? `(local.tee $v${8 + k} ${at(k)})` : at(k));
    const p = (k: number) =>
      `(f32x4.mul (f32x4.convert_i32x4_s (i32x4.extend_${k % 2 ? "high" : "low"}_i16x8_${sx} (local.get $v${k >> 1}))) ${x(k)})`;
    const run = `(f32x4.add (f32x4.add ${p(0)} ${p(1)}) (f32x4.add ${p(2)} ${p(3)}))`;
    out.push(
      `(local.set $v0 (i16x8.extend_low_i8x16_${sx} (local.tee $v1 ${bytes})))`,
      `(local.set $v1 (i16x8.extend_high_i8x16_${sx} (local.get $v1)))`,
      `(local.set ${into} ${r ? `(f32x4.add (local.get ${into}) ${run})` : run})`,
    );
    if (o.sumX) {
      const xs =
        "(f32x4.add (f32x4.add (local.get $v8) (local.get $v9)) (f32x4.add (local.get $v10) (local.get $v11)))";
      out.push(`(local.set ${o.sumX} ${r ? `(f32x4.add (local.get ${o.sumX}) ${xs})` : xs})`);
    }
  });
  return out.join("\n");
}

/**
 * Statements for a `q8` piece: `into` (i32x4) = Σ over `runs` (one or two) of 16 weights (i8x16 expressions,
 * −128..127, or 0..255 when `unsigned`) × run r's 16 activations, int16 at byte 32r of the q8 block at `$x`.
 * Exact in i32. One expression, so that relaxed SIMD can add both runs' 8-bit products before widening them
 * (compiler/codegen/relax.ts). Scratch: `$v0`, `$v1`.
 */
export function q8Runs(runs: readonly string[], into: string, o: { unsigned?: boolean } = {}): string {
  const sx = o.unsigned ? "u" : "s";
  const run = (r: number) => {
    const dot = (hl: string, off: number) =>
      `(i32x4.dot_i16x8_s (i16x8.extend_${hl}_i8x16_${sx} (local.get $v${r})) (v128.load offset=${off} align=4 ${X}))`;
    return `(i32x4.add ${dot("low", 32 * r)} ${dot("high", 32 * r + 16)})`;
  };
  const sum = runs.map((_, r) => run(r)).reduce((a, b) => `(i32x4.add ${a} ${b})`);
  return [...runs.map((bytes, r) => `(local.set $v${r} ${bytes})`), `(local.set ${into} ${sum})`].join("\n");
}

/** Statements: `into` −= times × Σ of the q8 block's 32 integers, times a power of two: the offset of weights
 * stored as q + times (q4_0, q5_0), which the unsigned runs leave in. */
export const q8Offset = (into: string, times: number) =>
  `(local.set ${into} (i32x4.sub (local.get ${into}) (i32x4.shl (v128.load offset=80 align=4 ${X}) (i32.const ${Math.log2(times)}))))`;

/** `$acc += sum × (scale × d)`, sum an i32x4 local, scale the weights' f32 expression, d the q8 block's (in
 * every lane at byte 64): the splatted scale depends on the weights alone, so a matrix-matrix kernel makes it
 * once for all its columns. */
export const q8ScaleInto = (sum: string, scale: string) =>
  `(local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (f32x4.convert_i32x4_s (local.get ${sum})) (f32x4.mul (f32x4.splat ${scale}) (v128.load offset=64 align=4 ${X})))))`;

/** Statements: `into` (i32x4) = lanes that add up to the sum of the q8 block's 32 integers (for a min), which
 * the quantizer stored with the block. */
export const q8SumX = (into: string) => `(local.set ${into} (v128.load offset=80 align=4 ${X}))`;

/** `into` (+ or −)= `sum` × `scale`, sum a v128 local and scale an f32 expression. */
export const addScaled = (sum: string, scale: string, into = "$acc", minus = false) =>
  `(local.set ${into} (f32x4.${minus ? "sub" : "add"} (local.get ${into}) (f32x4.mul (local.get ${sum}) (f32x4.splat ${scale}))))`;

/** `$acc += $v3 × d`, the block's sum scaled by the half-precision scale at byte `off` of the block. */
export const scaleInto = (off: number) => addScaled("$v3", halfAt(off));

// The k-quants: a 256-weight super-block with halves d (and dmin) and small integer scales (and mins) per
// sub-block. The piece loops over groups of sub-blocks rather than unrolling all 256 weights: V8 hoists
// the loads of a long straight-line block and spills them, which made the unrolled pieces ~2× slower.

/**
 * Statements for one super-block: `$f0` = d (and `$f1` = dmin) from the halves at `d` and `dmin`, then
 * `setup`, then `body` `groups` times in a loop with `$i1` = 0, 1, …
 */
export function superBlock(o: {
  d: number;
  dmin?: number;
  setup?: string;
  groups: number;
  body: string;
}): string {
  return [
    `(local.set $f0 ${halfAt(o.d)})`,
    o.dmin === undefined ? "" : `(local.set $f1 ${halfAt(o.dmin)})`,
    o.setup ?? "",
    "(local.set $i1 (i32.const 0))",
    "(loop $group",
    o.body,
    `(br_if $group (i32.lt_u (local.tee $i1 (i32.add (local.get $i1) (i32.const 1))) (i32.const ${o.groups}))))`,
  ]
    .filter(Boolean)
    .join("\n");
}

/** The loop index of `superBlock`, and its two bits as (h, g) for the 16-sub-block k-quants. */
const I = "(local.get $i1)";
export const H = "(i32.shr_u (local.get $i1) (i32.const 1))";
export const G = "(i32.and (local.get $i1) (i32.const 1))";

/** `$x` plus index × stride for each [index, stride]: where a group's activations start. */
export const xAddr = (...terms: [string, number][]) => addr(X, ...terms);
/** `$w` plus index × stride for each [index, stride]: where a group's bytes start. */
export const wAddr = (...terms: [string, number][]) => addr(W, ...terms);

/**
 * Statements: one sub-block inside `superBlock`: `$acc` += Σ q·x × f32(d·scale), and with `min`,
 * `$acc` −= Σ x × f32(dmin·min): ggml's per-sub-block factors. `runs`, `unsigned` and `x` + `xOff` as for
 * dotRuns; scale and min are i32 expressions, the scale signed when `signedScale`. Writes `$v6`, `$v7` and
 * dotRuns' scratch.
 */
export function subBlock(o: {
  runs: readonly string[];
  x: string;
  xOff: number;
  scale: string;
  signedScale?: boolean;
  min?: string;
  unsigned?: boolean;
}): string {
  const times = (f: string, i: string, signed: boolean) =>
    `(f32.mul (local.get ${f}) (f32.convert_i32_${signed ? "s" : "u"} ${i}))`;
  return [
    dotRuns(o.runs, o.xOff, "$v6", { sumX: o.min ? "$v7" : undefined, unsigned: o.unsigned, x: o.x }),
    addScaled("$v6", times("$f0", o.scale, !!o.signedScale)),
    o.min ? addScaled("$v7", times("$f1", o.min, false), "$acc", true) : "",
  ]
    .filter(Boolean)
    .join("\n");
}

/**
 * Statements: `into` = q4_k/q5_k's 12 packed scale bytes at byte `off` of the block, decoded: lanes 0..7
 * the 6-bit scales of sub-blocks 0..7, lanes 8..15 their 6-bit mins (ggml's get_scale_min_k4; scaleK4 and
 * minK4 in kquant-scales.ts). Reads 16 bytes (the block goes on past them).
 */
export function scalesMinsK4(off: number, into: string): string {
  const v = `(local.get ${into})`;
  const lanes = (...l: number[][]) => `(v128.const i8x16 ${l.flat().join(" ")})`;
  const four = (n: number) => [n, n, n, n];
  // j < 4: b[j] & 63 (scale), b[j + 4] & 63 (min). j ≥ 4: the low (scale) or high (min) nibble of
  // b[j + 4], with the top two bits of b[j − 4] (scale) or b[j] (min) as bits 4 and 5.
  const low = `(i8x16.shuffle 0 1 2 3 8 9 10 11 4 5 6 7 8 9 10 11 ${v} ${v})`;
  const top = `(i8x16.shuffle 0 1 2 3 0 1 2 3 4 5 6 7 4 5 6 7 ${v} ${v})`;
  // One statement: `top` reads the raw bytes, then the tee replaces them with `low` for its high nibbles.
  return [
    `(local.set ${into} ${bytesAt(off)})`,
    `(local.set ${into} (v128.or (v128.and (i8x16.shr_u ${top} (i32.const 2)) ${lanes(four(0), four(0x30), four(0), four(0x30))})`,
    `  (v128.or (v128.and (local.tee ${into} ${low}) ${lanes(four(63), four(15), four(63), four(0))})`,
    `    (v128.and (i8x16.shr_u (local.get ${into}) (i32.const 4)) ${lanes(four(0), four(0), four(0), four(255))}))))`,
  ].join("\n");
}

/**
 * q4_k and q5_k (8 sub-blocks of 32, w = d·scale·q − dmin·min): a loop over the 4 pairs of sub-blocks,
 * 2k and 2k + 1 being the low and high nibbles of the 32 bytes at `qs` + 32k. q5_k's fifth bits come from
 * `fifth`: `setup` before the loop, `bits(s, r)` (an i8x16 expression with bit 4 of each byte set or not)
 * for run r (of 16 weights) of the pair's sub-block s, and `next` at the end of each pair. Scales and mins
 * live decoded in `$v5`, shifted so the pair's are always in lanes 0, 1 and 8, 9.
 */
export function pairsK4(o: {
  qs: number;
  fifth?: { setup: string; bits: (s: number, r: number) => string; next: string };
}): string {
  const lane = (n: number) => `(i8x16.extract_lane_u ${n} (local.get $v5))`;
  return superBlock({
    d: 0,
    dmin: 2,
    setup: [scalesMinsK4(4, "$v5"), o.fifth?.setup ?? ""].filter(Boolean).join("\n"),
    groups: 4,
    body: [
      ...[0, 1].map((s) =>
        subBlock({
          runs: [0, 1].map((r) => {
            const q = field(bytesAt(o.qs + 16 * r, wAddr([I, 32])), 4 * s, 4, 0);
            return o.fifth ? `(v128.or ${q} ${o.fifth.bits(s, r)})` : q;
          }),
          unsigned: true,
          x: xAddr([I, 256]),
          xOff: 128 * s,
          scale: lane(s),
          min: lane(8 + s),
        }),
      ),
      "(local.set $v5 (i64x2.shr_u (local.get $v5) (i32.const 16)))",
      o.fifth?.next ?? "",
    ]
      .filter(Boolean)
      .join("\n"),
  });
}

/**
 * q2_k, q3_k and q6_k (16 sub-blocks of 16): weight 128·h + 32·k + 16·g + i comes from byte 16·g + i of
 * half h's runs of 32 bytes, so sub-blocks 8h + 2k + g (k = 0..3) share their bytes. A loop over the four
 * (h, g) (the i32 expressions H and G): `prepare` loads the shared bytes into `$v2`..`$v4`, then sub-block
 * 8h + 2k + g for each k as `sub(k)` gives it (its runs, scale and min; the activations are placed here).
 */
export function quadsOf16(o: {
  d: number;
  dmin?: number;
  prepare: string;
  sub: (k: number) => Omit<Parameters<typeof subBlock>[0], "x" | "xOff">;
}): string {
  return superBlock({
    d: o.d,
    dmin: o.dmin,
    groups: 4,
    body: [
      o.prepare,
      ...[0, 1, 2, 3].map((k) => subBlock({ ...o.sub(k), x: xAddr([H, 512], [G, 64]), xOff: 128 * k })),
    ].join("\n"),
  });
}

// The k-quants' integer pieces (`q8`): activations in q8_K blocks (runtime/quant/q8-activations.ts): 256
// integers as int16 at `$x`, their 16 sums of 16 as int16 at byte 512, d as an f32 at byte 544. Weights are
// taken as unsigned (0..63): a scheme whose values are q − c subtracts c·Σ scale·(sum of the sub-block's
// activations) once per block, from the sums, as llama.cpp's bsums do. Each weight is multiplied by its
// sub-block's scale as an int16 (|q·scale| ≤ 63 · 128 fits), then by the activations in 16-bit dot products
// (`i32x4.dot_i16x8_s`); one float multiply per block turns the integer total into f32. In a matrix-matrix
// kernel the weights' part is done once for all columns, and each column costs its dot products alone.

const ZERO = "(v128.const i32x4 0 0 0 0)";

/**
 * Statements: `into` (i32x4) += scale × Σ over `runs` (one or two) of [byte offset from `$i2` of 16 int16
 * activations, 16 unsigned weights (a v128 expression)], scale an i32 expression. The runs' products are one
 * expression, for relaxed SIMD (see q8Runs). Scratch: `$v8`, `$v9`.
 */
export function scaledRuns(
  runs: readonly (readonly [number, string])[],
  scale: string,
  into: string,
): string {
  const s = `(i16x8.splat ${scale})`;
  const run = ([off]: readonly [number, string], r: number) => {
    const half = (hl: string, at: number) =>
      `(i32x4.dot_i16x8_s (i16x8.mul (i16x8.extend_${hl}_i8x16_u (local.get $v${8 + r})) ${s}) (v128.load offset=${at} align=2 (local.get $i2)))`;
    return `(i32x4.add ${half("low", off)} ${half("high", off + 16)})`;
  };
  const sum = runs.map(run).reduce((a, b) => `(i32x4.add ${a} ${b})`);
  return [
    ...runs.map(([, w], r) => `(local.set $v${8 + r} ${w})`),
    `(local.set ${into} (i32x4.add (local.get ${into}) ${sum}))`,
  ].join("\n");
}

/** `$acc` (+ or −)= f32(sum) × f32(d × the q8_K block's d), sum an i32x4 local, d an f32 expression. */
export const q8kScaleInto = (sum: string, d: string, minus = false) =>
  `(local.set $acc (f32x4.${minus ? "sub" : "add"} (local.get $acc) (f32x4.mul (f32x4.convert_i32x4_s (local.get ${sum})) (f32x4.splat (f32.mul ${d} (f32.load offset=544 align=4 ${X}))))))`;

/** An i32x4 whose lanes sum to Σ_j f_j · (sum of sub-block j's activations), j < 16: `lo` and `hi` i16x8
 * expressions holding f_0..f_7 and f_8..f_15. */
export const bySums = (lo: string, hi: string) =>
  `(i32x4.add (i32x4.dot_i16x8_s ${lo} (v128.load offset=512 align=2 ${X})) (i32x4.dot_i16x8_s ${hi} (v128.load offset=528 align=2 ${X})))`;

/**
 * q4_k and q5_k's integer piece (8 sub-blocks of 32, w = d·scale·q − dmin·min): as pairsK4, with the
 * weights of pair k (the 32 bytes at `qs` + 32k, in `$v0`, `$v1`) against int8 activations; the mins
 * through the sums. `fifth.bits(s, r)` adds q5_k's fifth bit (bit 4) to run r of the pair's sub-block s.
 */
export function pairsK4Q8(o: {
  qs: number;
  fifth?: { setup: string; bits: (s: number, r: number) => string; next: string };
}): string {
  const scale = (s: number) => `(i8x16.extract_lane_u ${s} (local.get $v5))`;
  const run = (s: number, r: number) => {
    const q = field(`(local.get $v${r})`, 4 * s, 4, 0);
    return o.fifth ? `(v128.or ${q} ${o.fifth.bits(s, r)})` : q;
  };
  // Each min twice, as int16, against the sums of 16 in pairs: lane j of the dot is min_j · (sum of 32).
  const mins = (from: number) =>
    `(i8x16.shuffle ${[0, 1, 2, 3].map((j) => `${from + j} 16 ${from + j} 16`).join(" ")} (local.get $v5) ${ZERO})`;
  return [
    scalesMinsK4(4, "$v5"),
    `(local.set $v11 ${bySums(mins(8), mins(12))})`,
    o.fifth?.setup ?? "",
    `(local.set $v10 ${ZERO})`,
    "(local.set $i1 (i32.const 0))",
    "(loop $pair",
    `(local.set $v0 ${bytesAt(o.qs, wAddr([I, 32]))})`,
    `(local.set $v1 ${bytesAt(o.qs + 16, wAddr([I, 32]))})`,
    `(local.set $i2 ${xAddr([I, 128])})`,
    ...[0, 1].map((s) =>
      scaledRuns(
        [0, 1].map((r) => [64 * s + 32 * r, run(s, r)] as const),
        scale(s),
        "$v10",
      ),
    ),
    "(local.set $v5 (i64x2.shr_u (local.get $v5) (i32.const 16)))",
    o.fifth?.next ?? "",
    "(br_if $pair (i32.lt_u (local.tee $i1 (i32.add (local.get $i1) (i32.const 1))) (i32.const 4))))",
    q8kScaleInto("$v10", halfAt(0)),
    q8kScaleInto("$v11", halfAt(2), true),
  ]
    .filter(Boolean)
    .join("\n");
}

/**
 * q2_k, q3_k and q6_k's integer piece (16 sub-blocks of 16): as quadsOf16, sub-block 8h + 2k + g of the
 * (h, g) loop's four giving its unsigned weights (`run`, 0..127) and scale (an i32 expression, held in
 * `$i0`); activations 128h + 32k + 16g. The block's integer total less `offset.times` × Σ scale ×
 * (sum of the sub-block's activations): from `offset.factors` (the 16 scales as two i16x8 expressions)
 * once per block, or without them per sub-block. `mins`: `$acc` −= dmin × Σ min_j × sum_j.
 */
export function quadsOf16Q8(o: {
  d: number;
  prepare: string;
  sub: (k: number) => { run: string; scale: string };
  offset?: { times: number; factors?: readonly [string, string]; setup?: string };
  mins?: { dmin: number; factors: readonly [string, string] };
}): string {
  const perSub = o.offset && !o.offset.factors;
  const sumAt = (k: number) => `(i32.load16_s offset=${512 + 4 * k} align=2 ${xAddr([H, 16], [G, 2])})`;
  const times = (n: number) => `(v128.const i32x4 ${n} ${n} ${n} ${n})`;
  return [
    `(local.set $v10 ${ZERO})`,
    perSub ? "(local.set $i3 (i32.const 0))" : "",
    "(local.set $i1 (i32.const 0))",
    "(loop $quad",
    o.prepare,
    `(local.set $i2 ${xAddr([H, 256], [G, 32])})`,
    ...[0, 1, 2, 3].flatMap((k) => {
      const { run, scale } = o.sub(k);
      return [
        `(local.set $i0 ${scale})`,
        scaledRuns([[64 * k, run]], "(local.get $i0)", "$v10"),
        perSub ? `(local.set $i3 (i32.add (local.get $i3) (i32.mul (local.get $i0) ${sumAt(k)})))` : "",
      ];
    }),
    "(br_if $quad (i32.lt_u (local.tee $i1 (i32.add (local.get $i1) (i32.const 1))) (i32.const 4))))",
    o.offset?.factors ? (o.offset.setup ?? "") : "",
    o.offset?.factors
      ? `(local.set $v10 (i32x4.sub (local.get $v10) (i32x4.mul ${bySums(...o.offset.factors)} ${times(o.offset.times)})))`
      : "",
    perSub
      ? `(local.set $v10 (i32x4.sub (local.get $v10) (i32x4.replace_lane 0 ${ZERO} (i32.mul (local.get $i3) (i32.const ${o.offset!.times})))))`
      : "",
    q8kScaleInto("$v10", halfAt(o.d)),
    o.mins ? `(local.set $v11 ${bySums(...o.mins.factors)})` : "",
    o.mins ? q8kScaleInto("$v11", halfAt(o.mins.dmin), true) : "",
  ]
    .filter(Boolean)
    .join("\n");
}

/**
 * The bytes an 8-row layout moves (runtime/quant/rows8.ts's byteOrder), for nibbleRows8 and byteRows8: each
 * f16 at a byte of `halves` (the scale, then the min) for rows 0, 4, 1, 5, 2, 6, 3, 7, so that as i32 lanes
 * row i's half is the low 16 bits of lane i and row i + 4's the high 16; then `chunks` chunks of 16 + 16 bytes,
 * bytes 4c … 4c + 3 of rows 0–3, then of rows 4–7, from the block's bytes at `qs`.
 */
function rows8Order(blockBytes: number, halves: number[], qs: number, chunks: number): number[] {
  const order: number[] = [];
  for (const at of halves)
    for (const r of [0, 4, 1, 5, 2, 6, 3, 7]) order.push(r * blockBytes + at, r * blockBytes + at + 1);
  for (let c = 0; c < chunks; c++)
    for (let h = 0; h < 2; h++)
      for (let i = 0; i < 4; i++)
        for (let j = 0; j < 4; j++) order.push((4 * h + i) * blockBytes + qs + 4 * c + j);
  return order;
}

/**
 * The 8-row interleaved layout (runtime/quant/rows8.ts) of a scheme whose block is an f16 scale at byte
 * `scale` and 16 bytes of nibbles at byte `qs` (byte j: element j in the low nibble, element j + 16 in the
 * high one), each weight stored as q + `offset`: q4_0; with `qh`, a little-endian u32 there whose bit e is
 * element e's fifth bit: q5_0; with `min` too, an f16 min there, w = d·q + m: q5_1. One step of a group (8
 * blocks) is stored as
 *
 * - bytes 0–15: the 8 rows' scales, row i's at 4i and row 4 + i's at 4i + 2 (i < 4); with `min`, bytes
 *   16–31 their mins, in the same order; the nibbles start after them, at N = 16 or 32;
 * - bytes N + 32c + 16h + 4i + j (c, i, j < 4, h < 2): byte 4c + j of row 4h + i's nibbles;
 * - with `qh`, bytes N + 128 + 16n + 4i + j (n < 2): bit c + 4h is the fifth bit of element 16n + 4c + j of
 *   row 4h + i, the one whose nibble is at the same place of the 16 bytes at N + 32c + 16h,
 *
 * so 16 bytes hold 4 elements of 4 rows, which one 8-bit product multiplies by the same 4 activations
 * (splatted) into 8 pair sums, 2 per row; chunk c's fifth bits are shifted down one place per chunk. The
 * step's integer sums per row are exact, as the scheme's `q8` piece's: Σ q·qx over the stored q, less
 * offset · Σ qx (the q8 block's Σq at Q8_SUM), and with `min`, m · dx · Σ qx added apart.
 */
export function nibbleRows8(o: {
  scale: number;
  min?: number;
  qs: number;
  qh?: number;
  blockBytes: number;
  offset: number;
}): Rows8 {
  const qs8 = o.min === undefined ? 16 : 32; // where the nibbles start in a stored step, after the halves
  const qh8 = qs8 + 128; // where the fifth bits start, after the nibbles
  const halves = o.min === undefined ? [o.scale] : [o.scale, o.min];
  const moved = byteOrder(rows8Order(o.blockBytes, halves, o.qs, 4), o.blockBytes);
  const qh = o.qh;
  const q8 = (cols: number, relaxed: boolean): string => {
    const js = [...Array(cols).keys()];
    const get = (n: string) => `(local.get ${n})`;
    const mask = i8s(15);
    // Relaxed: a chunk's pair sums are i16. Nibbles (≤ 15) keep 4 chunks' sums within i16 (4 · 2 · 2 · 15 ·
    // 127 < 32768); 5-bit values (≤ 31) do not, so each chunk's sums are widened to i32 as they are added.
    const wide = !relaxed || qh !== undefined;
    const out: string[] = [];
    // The 4 chunks of 4 elements as a loop, not unrolled: V8 hoists the loads of a long straight-line block
    // and spills them (unrolled, it ran at 0.7× the speed). `$p` walks the weights, `$q_j` column j's
    // activations (int8 or int16).
    const xStep = relaxed ? 4 : 8;
    out.push(
      `(local.set $p ${W})`,
      ...js.flatMap((j) => [
        `(local.set $q_${j} (local.get $x_${j}))`,
        ...[0, 1, 2, 3]
          .map((k) => `(local.set $s${k}_${j} (v128.const i32x4 0 0 0 0))`)
          .slice(0, relaxed ? 2 : 4),
      ]),
      qh === undefined ? "" : `(local.set $n4 (v128.load offset=${qh8} align=1 ${W}))`,
      qh === undefined ? "" : `(local.set $n5 (v128.load offset=${qh8 + 16} align=1 ${W}))`,
      "(loop $chunks",
    );
    const P = "(local.get $p)";
    out.push(
      `(local.set $n0 (v128.load offset=${qs8} align=1 ${P}))`,
      `(local.set $n1 (v128.load offset=${qs8 + 16} align=1 ${P}))`,
      `(local.set $n2 (v128.and (i16x8.shr_u (local.get $n0) (i32.const 4)) ${mask}))`,
      `(local.set $n3 (v128.and (i16x8.shr_u (local.get $n1) (i32.const 4)) ${mask}))`,
      `(local.set $n0 (v128.and (local.get $n0) ${mask}))`,
      `(local.set $n1 (v128.and (local.get $n1) ${mask}))`,
    );
    if (qh !== undefined) {
      // This chunk's fifth bits: bit 0 of $n4 (low nibbles) and $n5 (high) for rows 0–3, bit 4 for rows
      // 4–7, each moved to 16's place; then the next chunk's bits down one place. 16-bit shifts are exact
      // here: the bits they carry across a byte land outside 16's place (the shift left) or above the bits
      // the chunks after read (the shift right).
      const fifth = (v: string) => `(v128.and (i16x8.shl ${get(v)} (i32.const 4)) ${i8s(16)})`;
      const or = (n: string, bits: string) => `(local.set ${n} (v128.or ${get(n)} ${bits}))`;
      out.push(
        or("$n0", fifth("$n4")),
        or("$n1", `(v128.and ${get("$n4")} ${i8s(16)})`),
        or("$n2", fifth("$n5")),
        or("$n3", `(v128.and ${get("$n5")} ${i8s(16)})`),
        `(local.set $n4 (i16x8.shr_u ${get("$n4")} (i32.const 1)))`,
        `(local.set $n5 (i16x8.shr_u ${get("$n5")} (i32.const 1)))`,
      );
    }
    for (const j of js) {
      const q = get(`$q_${j}`);
      const acc = (s: number, v: string) =>
        `(local.set $s${s}_${j} (${wide ? "i32x4" : "i16x8"}.add (local.get $s${s}_${j}) ${v}))`;
      if (relaxed) {
        // Elements 4c … 4c + 3 (low nibbles) and 16 + 4c … (high) against the int8 shadow's runs.
        const rdot = (a: string, b: string) => `(i16x8.relaxed_dot_i8x16_i7x16_s ${get(a)} ${get(b)})`;
        const sum = (a: string, b: string) => {
          const s = `(i16x8.add ${rdot("$t", a)} ${rdot("$u", b)})`;
          return wide ? `(i32x4.extadd_pairwise_i16x8_s ${s})` : s;
        };
        out.push(
          `(local.set $t (v128.load32_splat offset=${Q8_SHADOW} align=1 ${q}))`,
          `(local.set $u (v128.load32_splat offset=${Q8_SHADOW + 32} align=1 ${q}))`,
          acc(0, sum("$n0", "$n2")),
          acc(1, sum("$n1", "$n3")),
        );
      } else {
        // The same against the int16 values: a row's 4 elements widened, two rows per product.
        const dot = (hl: string, n: string, xs: string) =>
          `(i32x4.dot_i16x8_s (i16x8.extend_${hl}_i8x16_u ${get(n)}) ${get(xs)})`;
        out.push(
          `(local.set $t (v128.load64_splat offset=0 align=2 ${q}))`,
          `(local.set $u (v128.load64_splat offset=32 align=2 ${q}))`,
        );
        [
          ["low", "$n0", "$n2"],
          ["high", "$n0", "$n2"],
          ["low", "$n1", "$n3"],
          ["high", "$n1", "$n3"],
        ].forEach(([hl, lo, hi], s) =>
          out.push(acc(s, `(i32x4.add ${dot(hl!, lo!, "$t")} ${dot(hl!, hi!, "$u")})`)),
        );
      }
    }
    out.push(
      ...js.map((j) => `(local.set $q_${j} (i32.add (local.get $q_${j}) (i32.const ${xStep})))`),
      `(br_if $chunks (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 32))) (i32.add ${W} (i32.const 128)))))`,
    );
    out.push(rows8Scales(), o.min === undefined ? "" : rows8Scales("$m", 16));
    for (const j of js) {
      // Per row, the 2 (relaxed) or 2 × 2 (plain) partial sums added: rows 0–3, then rows 4–7.
      const rows = (h: number) => {
        if (!relaxed) return plainRows(j, h);
        const s = `(local.get $s${h}_${j})`;
        return wide ? s : `(i32x4.extadd_pairwise_i16x8_s ${s})`;
      };
      out.push(rows8Add(j, rows, o.offset, o.min !== undefined));
    }
    return out.filter(Boolean).join("\n");
  };
  // The fifth bits: stored byte 144 + 16n + 4i + j gathers bits 16n + 4c + j (c < 4) of row i's qh as its
  // bits c and row 4 + i's as bits 4 + c.
  const chunks = (v: number) => (v & 1) | ((v >>> 3) & 2) | ((v >>> 6) & 4) | ((v >>> 9) & 8);
  const u32 = (u8: Uint8Array, b: number) =>
    u8[b]! | (u8[b + 1]! << 8) | (u8[b + 2]! << 16) | (u8[b + 3]! << 24);
  const pack: Rows8["pack"] =
    qh === undefined
      ? moved
      : (rows, at, rowBytes, out, outAt) => {
          moved(rows, at, rowBytes, out, outAt);
          for (let i = 0; i < 4; i++) {
            const lo = u32(rows, at + i * rowBytes + qh);
            const hi = u32(rows, at + (4 + i) * rowBytes + qh);
            for (let e = 0; e < 8; e++) {
              const shift = 16 * (e >> 2) + (e & 3); // n = e >> 2, j = e & 3
              out[outAt + qh8 + 16 * (e >> 2) + 4 * i + (e & 3)] =
                chunks(lo >>> shift) | (chunks(hi >>> shift) << 4);
            }
          }
        };
  return { pack, q8 };
}

/** `${to}0`, `${to}1`: 8 halves of a stored step (at byte `at`, rows 0, 4, 1, 5, …; its scales at 0) as f32
 * lanes, rows 0–3 and 4–7. Loaded after the products, so that they are not live (in registers) through them. */
function rows8Scales(to = "$d", at = 0): string {
  // A half h as f32 bits: (h << 16) >> 3 (arithmetic) with the sign's copies cleared is h's bits in f32's
  // places, the value h / 2^112 for every finite half (subnormals too), so one multiply gives h.
  const halves = (top: string) =>
    `(f32x4.mul (v128.and (i32x4.shr_s ${top} (i32.const 3)) (v128.const i32x4 0x8fffffff 0x8fffffff 0x8fffffff 0x8fffffff)) (v128.const i32x4 0x77800000 0x77800000 0x77800000 0x77800000))`;
  return [
    `(local.set $t (v128.load offset=${at} align=1 ${W}))`,
    `(local.set ${to}0 ${halves("(i32x4.shl (local.get $t) (i32.const 16))")})`,
    `(local.set ${to}1 ${halves("(v128.and (local.get $t) (v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000))")})`,
  ].join("\n");
}

/** Rows 4h … 4h + 3's sums from 16-bit products of runs of 4 elements: `$s{2h}_j` holds rows 4h and 4h + 1,
 * `$s{2h+1}_j` rows 4h + 2 and 4h + 3, each in two lanes (elements 0–1 and 2–3); the lanes of a row added. */
function plainRows(j: number, h: number): string {
  const [p, q] = [`(local.get $s${2 * h}_${j})`, `(local.get $s${2 * h + 1}_${j})`];
  return `(i32x4.add (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27 ${p} ${q}) (i8x16.shuffle 4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31 ${p} ${q}))`;
}

/** Column j's step done: the rows' integer sums (`rows(h)`, i32x4), less `offset` · Σ qx where weights are
 * stored as q + offset, converted, times row scale × the block's d, added to `$a0_j` and `$a1_j`; with
 * `mins` (the rows' mins in `$m0`, `$m1`, as w = d·q + m), then min × d · Σ qx added as well. */
function rows8Add(j: number, rows: (h: number) => string, offset: number, mins = false): string {
  const x = `(local.get $x_${j})`;
  const dx = `(v128.load offset=${Q8_D} align=4 ${x})`;
  const less = (v: string) =>
    offset
      ? `(i32x4.sub ${v} (i32x4.shl (v128.load offset=${Q8_SUM} align=4 ${x}) (i32.const ${Math.log2(offset)})))`
      : v;
  const add = (h: number, n: string, scale: string) =>
    `(local.set $a${h}_${j} (f32x4.add (local.get $a${h}_${j}) (f32x4.mul (f32x4.convert_i32x4_s ${n}) (f32x4.mul (local.get ${scale}${h}) ${dx}))))`;
  return [0, 1]
    .flatMap((h) => [
      add(h, less(rows(h)), "$d"),
      mins ? add(h, `(v128.load offset=${Q8_SUM} align=4 ${x})`, "$m") : "",
    ])
    .filter(Boolean)
    .join("\n");
}

/**
 * The 8-row interleaved layout (runtime/quant/rows8.ts) of a scheme whose block is an f16 scale at byte
 * `scale` and 32 signed bytes at byte `qs`: q8_0. One step of a group (8 blocks) is stored as
 *
 * - bytes 0–15: the 8 rows' scales, as nibbleRows8's;
 * - bytes 16 + 32c + 16h + 4i + j (c < 8, i, j < 4, h < 2): element 4c + j of row 4h + i.
 *
 * Signed bytes are not what relaxed SIMD's 8-bit products take, so both builds use 16-bit ones: 16 bytes,
 * widened, are 4 elements of 4 rows against the same 4 int16 activations (splatted). Exact in i32.
 */
export function byteRows8(o: { scale: number; qs: number; blockBytes: number }): Rows8 {
  const q8 = (cols: number): string => {
    const js = [...Array(cols).keys()];
    const P = "(local.get $p)";
    // The 8 chunks of 4 elements as a loop, as nibbleRows8's.
    const out = [
      `(local.set $p ${W})`,
      ...js.flatMap((j) => [
        `(local.set $q_${j} (local.get $x_${j}))`,
        ...[0, 1, 2, 3].map((k) => `(local.set $s${k}_${j} (v128.const i32x4 0 0 0 0))`),
      ]),
      "(loop $chunks",
      `(local.set $n0 (v128.load offset=16 align=1 ${P}))`,
      `(local.set $n1 (v128.load offset=32 align=1 ${P}))`,
      "(local.set $n2 (i16x8.extend_low_i8x16_s (local.get $n0)))",
      "(local.set $n3 (i16x8.extend_high_i8x16_s (local.get $n0)))",
      "(local.set $n4 (i16x8.extend_low_i8x16_s (local.get $n1)))",
      "(local.set $n5 (i16x8.extend_high_i8x16_s (local.get $n1)))",
    ];
    for (const j of js) {
      out.push(`(local.set $t (v128.load64_splat align=2 (local.get $q_${j})))`);
      ["$n2", "$n3", "$n4", "$n5"].forEach((n, s) =>
        out.push(
          `(local.set $s${s}_${j} (i32x4.add (local.get $s${s}_${j}) (i32x4.dot_i16x8_s (local.get ${n}) (local.get $t))))`,
        ),
      );
    }
    out.push(
      ...js.map((j) => `(local.set $q_${j} (i32.add (local.get $q_${j}) (i32.const 8)))`),
      `(br_if $chunks (i32.lt_u (local.tee $p (i32.add ${P} (i32.const 32))) (i32.add ${W} (i32.const 256)))))`,
      rows8Scales(),
      ...js.map((j) => rows8Add(j, (h) => plainRows(j, h), 0)),
    );
    return out.join("\n");
  };
  return { pack: byteOrder(rows8Order(o.blockBytes, [o.scale], o.qs, 8), o.blockBytes), q8 };
}
