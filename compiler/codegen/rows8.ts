// The matrix-vector and matrix-matrix kernels over weights stored 8 rows interleaved (runtime/quant/rows8.ts):
// a group of 8 rows is one pass over the row's steps, with each row's sum in a lane of two f32x4
// accumulators, stored as two vectors. The scheme's `rows8.q8` piece is one step for some columns; these
// loops are the rest. A column's result is the same in both kernels (the same piece, in the same order), so
// the prefill and decoding agree to the bit.

/** Columns a matrix-matrix kernel runs through one group's steps at once: the most, then one by one (more
 * than 2 ran slower: the registers run out). */
const GROUPS = [2, 1];
/** About the bytes of weight rows a matrix-matrix kernel keeps in cache while it runs every column. */
const BLOCK_BYTES = 16384;

export interface Rows8Kernel {
  name: string;
  doc: string;
  /** Steps per row, bytes per row, bytes per stored step of a group (8 blocks), bytes per activation block. */
  steps: number;
  rowBytes: number;
  stepBytes: number;
  xBytes: number;
  /** One step of a group against `cols` columns (the scheme's `rows8.q8` for one build). */
  piece: (cols: number) => string;
  /** Vector constants hoisted into locals (wasm.ts's hoistConstants). */
  hoist: (...texts: string[]) => { texts: string[]; locals: string; sets: string };
}

const range = (n: number) => [...Array(n).keys()];

/** Locals of a piece for `cols` columns and of the loops around it. */
function locals(cols: number): string {
  const perColumn = range(cols).flatMap((j) => [
    `(local $x_${j} i32) (local $xs_${j} i32) (local $q_${j} i32)`,
    `(local $a0_${j} v128) (local $a1_${j} v128) (local $s0_${j} v128) (local $s1_${j} v128) (local $s2_${j} v128) (local $s3_${j} v128)`,
  ]);
  return [
    "(local $w i32) (local $p i32) (local $k i32) (local $r i32) (local $rb i32) (local $re i32) (local $c i32) (local $at i32)",
    "(local $d0 v128) (local $d1 v128) (local $m0 v128) (local $m1 v128) (local $t v128) (local $u v128)",
    "(local $n0 v128) (local $n1 v128) (local $n2 v128) (local $n3 v128) (local $n4 v128) (local $n5 v128) (local $n6 v128) (local $n7 v128)",
    ...perColumn,
  ]
    .map((l) => `    ${l}`)
    .join("\n");
}

/** A group's pass: accumulators zeroed, `cols` columns from `$xs_j`, the steps, `$w` left past the group. */
function pass(k: Rows8Kernel, cols: number, piece: string): string {
  const js = range(cols);
  return [
    ...js.map(
      (j) =>
        `(local.set $a0_${j} (v128.const i32x4 0 0 0 0)) (local.set $a1_${j} (v128.const i32x4 0 0 0 0)) (local.set $x_${j} (local.get $xs_${j}))`,
    ),
    "(local.set $k (i32.const 0))",
    "(loop $steps",
    piece,
    `  (local.set $w (i32.add (local.get $w) (i32.const ${k.stepBytes})))`,
    ...js.map((j) => `  (local.set $x_${j} (i32.add (local.get $x_${j}) (i32.const ${k.xBytes})))`),
    `  (br_if $steps (i32.lt_u (local.tee $k (i32.add (local.get $k) (i32.const 1))) (i32.const ${k.steps}))))`,
  ].join("\n");
}

/** `$at`'s 8 floats = `value(h)` for rows 0–3 (h = 0) and 4–7, plus what is there when accumulating: the
 * value rounded before the sum (never fused), as the one-token MoE's down product and `axpy` add a pick. */
function store8(value: (h: number) => string): string {
  return [0, 1]
    .map((h) => {
      const old = `(v128.load offset=${16 * h} align=4 (local.get $at))`;
      return [
        `(local.set $t ${value(h)})`,
        `(v128.store offset=${16 * h} align=4 (local.get $at) (if (result v128) (local.get $accumulate) (then (f32x4.add (local.get $t) ${old})) (else (local.get $t))))`,
      ].join("\n");
    })
    .join("\n");
}

/** y[r] = alpha · dot(row r, x) (+ y[r] when accumulate) for rows r0 ≤ r < r1, both multiples of 8. */
export function rows8Matvec(k: Rows8Kernel): string {
  const h = k.hoist(k.piece(1));
  return `  ;; ${k.doc}
  ;; y[r] = alpha · dot(row r, x) (+ y[r] when accumulate) for rows r0 ≤ r < r1, multiples of 8: groups of 8
  ;; interleaved rows, ${k.steps} steps each.
  (func $${k.name} (export "${k.name}") (param $w0 i32) (param $x0 i32) (param $y i32) (param $r0 i32) (param $r1 i32) (param $alpha f32) (param $accumulate i32)
${locals(1)}
${h.locals}
${h.sets}
    (local.set $xs_0 (local.get $x0))
    (local.set $r (local.get $r0))
    (local.set $w (i32.add (local.get $w0) (i32.mul (local.get $r0) (i32.const ${k.rowBytes}))))
    (block $done
      (loop $groups
        (br_if $done (i32.ge_u (local.get $r) (local.get $r1)))
${pass(k, 1, h.texts[0]!)}
        (local.set $at (i32.add (local.get $y) (i32.shl (local.get $r) (i32.const 2))))
${store8((i) => `(f32x4.mul (f32x4.splat (local.get $alpha)) (local.get $a${i}_0))`)}
        (local.set $r (i32.add (local.get $r) (i32.const 8)))
        (br $groups)))
  )
`;
}

/**
 * For columns j < n, with activations at xl[j] and outputs at yl[j] (i32 lists): y_j[r] = dot(row r, x_j)
 * (+ y_j[r] when accumulate) for rows r0 ≤ r < r1 (multiples of 8), each exactly as the matrix-vector kernel.
 * Groups of rows go in blocks whose weights stay in cache across the columns.
 */
export function rows8Matmul(k: Rows8Kernel): string {
  const h = k.hoist(...GROUPS.map((c) => k.piece(c)));
  const groupBytes = 8 * k.rowBytes;
  const block = 8 * Math.max(1, Math.floor(BLOCK_BYTES / groupBytes));
  const columns = (cols: number, piece: string) => {
    const js = range(cols);
    return `        (block $columnsDone${cols}
          (loop $columns${cols}
            (br_if $columnsDone${cols} (i32.gt_u (i32.add (local.get $c) (i32.const ${cols})) (local.get $n)))
${js.map((j) => `            (local.set $xs_${j} (i32.load offset=${4 * j} (i32.add (local.get $xl) (i32.shl (local.get $c) (i32.const 2)))))`).join("\n")}
            (local.set $r (local.get $rb))
            (local.set $w (i32.add (local.get $w0) (i32.mul (local.get $rb) (i32.const ${k.rowBytes}))))
            (loop $rows${cols}
${pass(k, cols, piece)}
${js
  .map(
    (j) =>
      `              (local.set $at (i32.add (i32.load offset=${4 * j} (i32.add (local.get $yl) (i32.shl (local.get $c) (i32.const 2)))) (i32.shl (local.get $r) (i32.const 2))))\n${store8((i) => `(local.get $a${i}_${j})`)}`,
  )
  .join("\n")}
              (br_if $rows${cols} (i32.lt_u (local.tee $r (i32.add (local.get $r) (i32.const 8))) (local.get $re))))
            (local.set $c (i32.add (local.get $c) (i32.const ${cols})))
            (br $columns${cols})))`;
  };
  return `  ;; ${k.doc}
  ;; For columns 0 ≤ j < n, with activations at the address xl[j] and outputs at yl[j] (i32 lists):
  ;; y_j[r] = dot(row r, x_j) (+ y_j[r] when accumulate) for rows r0 ≤ r < r1 (multiples of 8), each sum as
  ;; the matrix-vector kernel computes it. Rows in blocks of ${block}, columns ${GROUPS.join(", then ")} at a time.
  (func (export "${k.name}") (param $w0 i32) (param $xl i32) (param $yl i32) (param $r0 i32) (param $r1 i32) (param $n i32) (param $accumulate i32)
${locals(GROUPS[0]!)}
${h.locals}
${h.sets}
    (local.set $rb (local.get $r0))
    (block $done
      (loop $blocks
        (br_if $done (i32.ge_u (local.get $rb) (local.get $r1)))
        (local.set $re (i32.add (local.get $rb) (i32.const ${block})))
        (if (i32.gt_u (local.get $re) (local.get $r1)) (then (local.set $re (local.get $r1))))
        (local.set $c (i32.const 0))
${GROUPS.map((c, i) => columns(c, h.texts[i]!)).join("\n")}
        (local.set $rb (local.get $re))
        (br $blocks)))
  )
`;
}
