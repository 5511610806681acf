// The CPU attention's WebAssembly (templates/attention.wat.hbs): its unrolled pieces (the cache's widening
// in registers, the scores of a set of query heads per key, the weighted sum of values with partial sums in
// registers, the softmax's exp) and the whole text, each function's vector constants hoisted.
import { readFileSync } from "node:fs";
import Handlebars from "handlebars";
import { KV_Q8_BLOCK, KV_Q8_BLOCK_BYTES, type KvType } from "../../runtime/kv-type.ts";
import { Q8_BLOCK_BYTES } from "../../runtime/quant/q8-activations.ts";

const template = Handlebars.create().compile(
  readFileSync(new URL("./templates/attention.wat.hbs", import.meta.url), "utf8"),
  { noEscape: true, strict: true },
);

/** What hoisting a text's vector constants gives (wasm.ts's hoistConstants). */
type Hoist = (text: string) => { texts: string[]; locals: string; sets: string };

/**
 * Each function's vector constants hoisted into locals set once at its start (`hoist` for texts that are
 * whole functions): the attention's pieces are small functions called once per tile.
 */
function hoistPerFunction(text: string, hoist: Hoist): string {
  return text
    .split(/\n(?= {2}\(func )/)
    .map((fn) => {
      if (!fn.trimStart().startsWith("(func ")) return fn;
      const lines = fn.split("\n");
      // The header: the func line and the local declarations after it (and comment lines among them).
      let body = 1;
      while (body < lines.length && /^\s*(\(local |;;)/.test(lines[body]!)) body++;
      const k = hoist(lines.slice(body).join("\n"));
      if (!k.locals) return fn;
      return [...lines.slice(0, body), k.locals, k.sets, k.texts[0]!].join("\n");
    })
    .join("\n");
}

/** Dimensions the attention's weighted sum of values takes per pass over a tile's keys: two f32 vectors
 * per head, the partial sums of a set of heads held in registers. */
const ATTENTION_CHUNK = 8;
/** Query heads per set: a key's scores for a set are one vector (the softmax works on all its heads at
 * once), and a pass keeps a set's sums in registers (x64 has 16 vector registers). */
export const ATTENTION_SET = 4;
/** Keys past a tile that a float cache's scores step may read (in the transposed keys) and write (in the
 * scores), whole vectors of keys at a time: the scratch holds a tile and this many more. */
export const ATTENTION_PAD = 16;
/** Bytes of one dimension's row in a KV head's transposed keys. */
export const ktStride = (tile: number) => 4 * (tile + ATTENTION_PAD);

/** The f16 widening leaves this factor out (an exponent rebias: 2^112); the queries and the softmax weights
 * carry it instead, so the products come out right. */
const F16_BIAS = "0x1p112";

/** f16 bits sign-extended to i32 lanes (`lanes`), as f32 × 2^-112 (see widenChunk). */
const widenHalves = (lanes: string) =>
  `(v128.and (i32x4.shl ${lanes} (i32.const 13)) (v128.const i32x4 0x8fffe000 0x8fffe000 0x8fffe000 0x8fffe000))`;

/**
 * WAT that sets $lo (and $hi when `width` is 8) to dimensions [d, d + width) of the cache row at `row`,
 * widened to f32: f32 rows are read as they are; an f16 half is sign-extended and shifted so its exponent
 * and mantissa sit where an f32's do (the three bits copied from the sign between them masked off), which
 * is the half's value × 2^-112 (F16_BIAS; subnormal halves too, wasm keeps f32 subnormals); a q8_0 block's
 * int8 are converted and × its f16 scale, which the chunk at a block's start (or `scale`) reads into $dq.
 */
function widenChunk(type: KvType, row: string, d: number, width: number, scale: boolean): string {
  const get = `(local.get ${row})`;
  if (type === "f32") {
    const lo = `(local.set $lo (v128.load offset=${4 * d} align=4 ${get}))`;
    return width === 8 ? `${lo}\n(local.set $hi (v128.load offset=${4 * d + 16} align=4 ${get}))` : lo;
  }
  if (type === "f16") {
    const load = width === 8 ? "v128.load" : "v128.load64_zero";
    const half = (ext: string) => widenHalves(`(${ext} (local.get $h))`);
    return [
      `(local.set $h (${load} offset=${2 * d} align=2 ${get}))`,
      `(local.set $lo ${half("i32x4.extend_low_i16x8_s")})`,
      ...(width === 8 ? [`(local.set $hi ${half("i32x4.extend_high_i16x8_s")})`] : []),
    ].join("\n");
  }
  const block = Math.floor(d / KV_Q8_BLOCK);
  const at = block * KV_Q8_BLOCK_BYTES;
  const lanes = (ext: string) =>
    `(f32x4.mul (local.get $dq) (f32x4.convert_i32x4_s (${ext} (local.get $h))))`;
  return [
    ...(scale || d % KV_Q8_BLOCK === 0
      ? [`(local.set $dq (f32x4.splat (call $f16 (i32.load16_u offset=${at} align=1 ${get}))))`]
      : []),
    `(local.set $h (i16x8.extend_low_i8x16_s (v128.load64_zero offset=${at + 2 + (d % KV_Q8_BLOCK)} align=1 ${get})))`,
    `(local.set $lo ${lanes("i32x4.extend_low_i16x8_s")})`,
    `(local.set $hi ${lanes("i32x4.extend_high_i16x8_s")})`,
  ].join("\n");
}

/** WAT that stores the 4×4 transpose of the vectors `rows` (lane i of row r goes to lane r of out i): out i
 * at `at(i)`. Unpacks, then the halves' moves (V8 makes each shuffle one instruction); uses $t0…$t3. */
function transpose4(rows: [string, string, string, string], at: (i: number) => string): string {
  const pick = (x: string, y: string, lanes: number[]) =>
    `(i8x16.shuffle ${lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]).join(" ")} ${x} ${y})`;
  const [a, b, c, d] = rows;
  const t = (i: number) => `(local.get $t${i})`;
  return [
    `(local.set $t0 ${pick(a, b, [0, 4, 1, 5])})`,
    `(local.set $t1 ${pick(a, b, [2, 6, 3, 7])})`,
    `(local.set $t2 ${pick(c, d, [0, 4, 1, 5])})`,
    `(local.set $t3 ${pick(c, d, [2, 6, 3, 7])})`,
    `(v128.store ${at(0)} ${pick(t(0), t(2), [0, 1, 4, 5])})`,
    `(v128.store ${at(1)} ${pick(t(0), t(2), [2, 3, 6, 7])})`,
    `(v128.store ${at(2)} ${pick(t(1), t(3), [0, 1, 4, 5])})`,
    `(v128.store ${at(3)} ${pick(t(1), t(3), [2, 3, 6, 7])})`,
  ].join("\n");
}

/** Four vectors' horizontal sums as one vector's lanes (two rounds of shuffles and adds). */
function transposeSum(a: string, b: string, c: string, d: string): string {
  const pick = (x: string, y: string, lanes: number[]) =>
    `(i8x16.shuffle ${lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]).join(" ")} ${x} ${y})`;
  const pair = (x: string, y: string) =>
    `(f32x4.add ${pick(x, y, [0, 4, 1, 5])} ${pick(x, y, [2, 6, 3, 7])})`;
  return [
    `(local.set $t0 ${pair(a, b)})`,
    `(local.set $t1 ${pair(c, d)})`,
    `(f32x4.add ${pick("(local.get $t0)", "(local.get $t1)", [0, 1, 4, 5])} ${pick("(local.get $t0)", "(local.get $t1)", [2, 3, 6, 7])})`,
  ].join("\n");
}

/** The attention's unrolled pieces: per key, the scores of the group's heads (the queries already scaled);
 * per chunk of dimensions, the weighted sum of values over a tile's keys; and the locals they need. A key's
 * scores are a vector per set of heads, `keyBytes` per key. */
function attentionPieces(
  type: KvType,
  headDim: number,
  rowBytes: number,
  group: number,
  keyBytes: number,
  ktRow: number,
) {
  const chunks: { d: number; width: number }[] = [];
  for (let d = 0; d < headDim; d += ATTENTION_CHUNK)
    chunks.push({ d, width: Math.min(ATTENTION_CHUNK, headDim - d) });
  const sets: number[][] = [];
  for (let g = 0; g < group; g += ATTENTION_SET)
    sets.push(Array.from({ length: Math.min(ATTENTION_SET, group - g) }, (_, i) => g + i));
  const madd = (acc: string, a: string, b: string) =>
    `(local.set ${acc} (f32x4.add (local.get ${acc}) (f32x4.mul ${a} ${b})))`;
  const zero = (acc: string) => `(local.set ${acc} (v128.const i32x4 0 0 0 0))`;
  // Scores: each chunk of the key row widened once for the heads of a set; or, for a q8_0 cache, each
  // block's int8 extended to int16 once, against the queries' q8_0 blocks (Q8_BLOCK_BYTES each) in integer
  // dot products, as llama.cpp computes q·k with a q8_0 cache, the softmax scale applied to the sums.
  const integer = type === "q8_0";
  const blocks = headDim / KV_Q8_BLOCK;
  const qBlock = (g: number, b: number) => Q8_BLOCK_BYTES * (g * blocks + b);
  const dots = (g: number, b: number) => {
    const dot = (k: number) =>
      `(i32x4.dot_i16x8_s (local.get $i${k}) (v128.load offset=${qBlock(g, b) + 16 * k} align=2 (local.get $q)))`;
    return `(f32x4.convert_i32x4_s (i32x4.add (i32x4.add ${dot(0)} ${dot(1)}) (i32x4.add ${dot(2)} ${dot(3)})))`;
  };
  const scoreChunks = (heads: number[]) =>
    integer
      ? Array.from({ length: blocks }, (_, b) => [
          `(local.set $dq (f32x4.splat (call $f16 (i32.load16_u offset=${b * KV_Q8_BLOCK_BYTES} align=1 (local.get $k)))))`,
          `(local.set $h (v128.load offset=${b * KV_Q8_BLOCK_BYTES + 2} align=1 (local.get $k)))`,
          "(local.set $i0 (i16x8.extend_low_i8x16_s (local.get $h)))",
          "(local.set $i1 (i16x8.extend_high_i8x16_s (local.get $h)))",
          `(local.set $h (v128.load offset=${b * KV_Q8_BLOCK_BYTES + 18} align=1 (local.get $k)))`,
          "(local.set $i2 (i16x8.extend_low_i8x16_s (local.get $h)))",
          "(local.set $i3 (i16x8.extend_high_i8x16_s (local.get $h)))",
          ...heads.map((g, i) =>
            madd(
              `$a${i}`,
              `(f32x4.mul (local.get $dq) (v128.load32_splat offset=${qBlock(g, b) + 64} align=4 (local.get $q)))`,
              dots(g, b),
            ),
          ),
        ]).flat()
      : chunks.flatMap(({ d, width }) => [
          widenChunk(type, "$k", d, width, false),
          ...heads.flatMap((g, i) => {
            const q = (o: number) => `(v128.load offset=${4 * (g * headDim + d) + o} align=4 (local.get $q))`;
            return [
              madd(`$a${i}`, q(0), "(local.get $lo)"),
              ...(width === 8 ? [madd(`$a${i}`, q(16), "(local.get $hi)")] : []),
            ];
          }),
        ]);
  // A float cache's scores against the tile's keys transposed (ktStride bytes per dimension, a key per
  // lane; `kt` writes them): per step, `vecs` vectors of 4 keys for each head of a set, the head's query
  // element splat, one multiply-add per (head, vector) and dimension, each score its own sum over the
  // dimensions in order; then a 4×4 transpose per vector turns each key's lanes into its vector of heads.
  // Enough vectors that a set's multiply-adds do not wait on each other (8 sums in registers).
  const heads0 = Math.min(ATTENTION_SET, group);
  const vecs = Math.min(4, Math.floor(8 / heads0));
  const stepKeys = 4 * vecs;
  const tacc = (i: number, v: number) => `$a${i * vecs + v}`;
  const zeroV = "(v128.const i32x4 0 0 0 0)";
  const qkT = sets.flatMap((heads, u) => [
    "(local.set $kk (local.get $k))",
    "(local.set $ss (local.get $s))",
    "(local.set $j (i32.const 0))",
    `(loop $steps${u}`,
    ...heads.flatMap((_, i) => Array.from({ length: vecs }, (_, v) => zero(tacc(i, v)))),
    "(local.set $kp (local.get $kk))",
    "(local.set $qp (local.get $q))",
    "(local.set $d (i32.const 0))",
    `(loop $dims${u}`,
    ...Array.from(
      { length: vecs },
      (_, v) => `(local.set $kv${v} (v128.load offset=${16 * v} align=4 (local.get $kp)))`,
    ),
    ...heads.flatMap((g, i) => [
      `(local.set $w (v128.load32_splat offset=${4 * g * headDim} align=4 (local.get $qp)))`,
      ...Array.from({ length: vecs }, (_, v) => madd(tacc(i, v), "(local.get $w)", `(local.get $kv${v})`)),
    ]),
    `(local.set $kp (i32.add (local.get $kp) (i32.const ${ktRow})))`,
    "(local.set $qp (i32.add (local.get $qp) (i32.const 4)))",
    `(br_if $dims${u} (i32.lt_u (local.tee $d (i32.add (local.get $d) (i32.const 1))) (i32.const ${headDim}))))`,
    ...Array.from({ length: vecs }, (_, v) =>
      transpose4(
        [0, 1, 2, 3].map((i) => (i < heads.length ? `(local.get ${tacc(i, v)})` : zeroV)) as [
          string,
          string,
          string,
          string,
        ],
        (m) => `offset=${(4 * v + m) * keyBytes + 16 * u} align=4 (local.get $ss)`,
      ),
    ),
    `(local.set $kk (i32.add (local.get $kk) (i32.const ${4 * stepKeys})))`,
    `(local.set $ss (i32.add (local.get $ss) (i32.const ${stepKeys * keyBytes})))`,
    `(br_if $steps${u} (i32.lt_u (local.tee $j (i32.add (local.get $j) (i32.const ${stepKeys}))) (local.get $cnt))))`,
  ]);
  // The transpose of 4 keys' rows (at $r0…$r3), 4 dimensions of each widened to f32, to 4 dimensions' rows
  // of 4 keys at $tp.
  const rowLanes = (r: number) =>
    type === "f32"
      ? `(v128.load align=4 (local.get $r${r}))`
      : widenHalves(`(i32x4.extend_low_i16x8_s (v128.load64_zero align=2 (local.get $r${r})))`);
  const ktBody = [
    ...[0, 1, 2, 3].map((r) => `(local.set $x${r} ${rowLanes(r)})`),
    transpose4(
      ["(local.get $x0)", "(local.get $x1)", "(local.get $x2)", "(local.get $x3)"],
      (i) => `offset=${i * ktRow} align=4 (local.get $tp)`,
    ),
    ...[0, 1, 2, 3].map(
      (r) => `(local.set $r${r} (i32.add (local.get $r${r}) (i32.const ${type === "f32" ? 16 : 8})))`,
    ),
    `(local.set $tp (i32.add (local.get $tp) (i32.const ${4 * ktRow})))`,
  ];
  const qk = sets.flatMap((heads, u) => {
    const sum = transposeSum(
      ...([0, 1, 2, 3].map((i) =>
        i < heads.length ? `(local.get $a${i})` : "(v128.const i32x4 0 0 0 0)",
      ) as [string, string, string, string]),
    );
    return [
      ...heads.map((_, i) => zero(`$a${i}`)),
      ...scoreChunks(heads),
      `(v128.store offset=${16 * u} align=4 (local.get $s) ${integer ? `(f32x4.mul (local.get $scale) ${sum})` : sum})`,
    ];
  });
  // Values: per set of heads and chunk, one pass over the tile's keys with the sums in registers; from the
  // cache (`type`, rows of `rowBytes`) or from a tile's values widened to f32 beforehand (`wide`).
  const avFor = (type: KvType, rowBytes: number) =>
    sets.flatMap((heads) =>
      chunks.flatMap(({ d, width }) => {
        const parts = width === 8 ? ["lo", "hi"] : ["lo"];
        const acc = (i: number, part: string) => `$a${2 * i + (part === "hi" ? 1 : 0)}`;
        return [
          ...heads.flatMap((_, i) => parts.map((part) => zero(acc(i, part)))),
          "(local.set $j (i32.const 0))",
          "(local.set $vp (local.get $v))",
          "(local.set $ep (local.get $e))",
          "(loop $keys",
          widenChunk(type, "$vp", d, width, true),
          ...heads.flatMap((g, i) => [
            `(local.set $w (v128.load32_splat offset=${4 * g} align=4 (local.get $ep)))`,
            ...parts.map((part) => madd(acc(i, part), "(local.get $w)", `(local.get $${part})`)),
          ]),
          `(local.set $vp (i32.add (local.get $vp) (i32.const ${rowBytes})))`,
          `(local.set $ep (i32.add (local.get $ep) (i32.const ${keyBytes})))`,
          "(br_if $keys (i32.lt_u (local.tee $j (i32.add (local.get $j) (i32.const 1))) (local.get $cnt))))",
          ...heads.flatMap((g, i) => [
            `(local.set $w (v128.load32_splat offset=${4 * g} align=4 (local.get $c)))`,
            ...parts.map((part, k) => {
              const at = `offset=${4 * (g * headDim + d) + 16 * k} align=4 (local.get $y)`;
              return `(v128.store ${at} (f32x4.add (f32x4.mul (local.get $w) (v128.load ${at})) (local.get ${acc(i, part)})))`;
            }),
          ]),
        ];
      }),
    );
  const accs = Math.max(2 * heads0, integer ? heads0 : heads0 * vecs);
  return {
    qkBody: integer ? qk.join("\n") : qkT.join("\n"),
    ktBody: integer ? undefined : ktBody.join("\n"),
    kvLocals: Array.from({ length: vecs }, (_, v) => `(local $kv${v} v128)`).join(" "),
    avBody: avFor(type, rowBytes).join("\n"),
    // A narrow cache's tile of values widened once (vw_) for a prefill batch's tokens, and its sums.
    wide:
      type === "f32"
        ? undefined
        : {
            body: avFor("f32", 4 * headDim).join("\n"),
            widen: chunks
              .flatMap(({ d, width }) => [
                widenChunk(type, "$r", d, width, false),
                `(v128.store offset=${4 * d} align=4 (local.get $tp) (local.get $lo))`,
                ...(width === 8
                  ? [`(v128.store offset=${4 * d + 16} align=4 (local.get $tp) (local.get $hi))`]
                  : []),
              ])
              .join("\n"),
          },
    accLocals: Array.from({ length: accs }, (_, i) => `(local $a${i} v128)`).join(" "),
    bias: type === "f16" ? F16_BIAS : undefined,
    integer: integer || undefined,
    qBlocks: group * blocks,
  };
}

/** WAT that sets `dst` to e^x for the four x in `x`, which are ≤ 0 (a score less the max), clamped below at
 * -87 (e^-87 is as good as 0 beside a sum ≥ 1): ggml's ggml_v_expf, a degree-5 polynomial on the remainder
 * after x·log2(e)'s integer part, which goes in the exponent. pmax, not max: V8 gives it one instruction
 * (max's NaN and −0 rules take several), and no x here is NaN. Uses the locals $ez $en $eb $eu $ek $ej. */
export function expWat(dst: string, x: string): string {
  const c = (v: string) => `(v128.const f32x4 ${v} ${v} ${v} ${v})`;
  return [
    `(local.set ${x} (f32x4.pmax (local.get ${x}) ${c("-87")}))`,
    `(local.set $ez (f32x4.add ${c("0x1.8p23")} (f32x4.mul (local.get ${x}) ${c("0x1.715476p+0")})))`,
    `(local.set $en (f32x4.sub (local.get $ez) ${c("0x1.8p23")}))`,
    `(local.set $eb (f32x4.sub (f32x4.sub (local.get ${x}) (f32x4.mul (local.get $en) ${c("0x1.62e4p-1")})) (f32x4.mul (local.get $en) ${c("0x1.7f7d1cp-20")})))`,
    `(local.set $ek (i32x4.add (i32x4.shl (local.get $ez) (i32.const 23)) (v128.const i32x4 0x3f800000 0x3f800000 0x3f800000 0x3f800000)))`,
    "(local.set $eu (f32x4.mul (local.get $eb) (local.get $eb)))",
    `(local.set $ej (f32x4.add (f32x4.mul ${c("0x1.ffffecp-1")} (local.get $eb)) (f32x4.mul (f32x4.add (f32x4.add ${c("0x1.fffdb6p-2")} (f32x4.mul ${c("0x1.555e66p-3")} (local.get $eb))) (f32x4.mul (f32x4.add ${c("0x1.573e2ep-5")} (f32x4.mul ${c("0x1.0e402p-7")} (local.get $eb))) (local.get $eu))) (local.get $eu))))`,
    `(local.set ${dst} (f32x4.add (local.get $ek) (f32x4.mul (local.get $ej) (local.get $ek))))`,
  ].join("\n");
}

/** The parameters of one attention's WebAssembly: see WasmKernels.attention. */
export interface AttentionShape {
  type: KvType;
  headDim: number;
  rowBytes: number;
  kvHeads: number;
  group: number;
  tile: number;
  window: number;
}

/** The attention's functions (names from `names`: qk, sm, av and the exported mva; the keys' transpose is
 * qk's name with `kt` for `qk`, a narrow cache's value widening and its sums av's with `vw` and `avw`), as
 * WAT. */
export function attentionWat(
  names: { qk: string; sm: string; av: string; mva: string },
  s: AttentionShape,
  hoist: Hoist,
): string {
  const { type, headDim, rowBytes, kvHeads, group, tile, window } = s;
  const sets = Math.ceil(group / ATTENTION_SET);
  const text = template({
    ...names,
    kt: names.qk.replace(/^qk/, "kt"),
    vw: names.av.replace(/^av/, "vw"),
    avw: names.av.replace(/^av/, "avw"),
    vwHeadBytes: tile * headDim * 4,
    type,
    ...attentionPieces(type, headDim, rowBytes, group, 16 * sets, ktStride(tile)),
    ktHeadBytes: headDim * ktStride(tile),
    ktStride: ktStride(tile),
    rowBytes4: 4 * rowBytes,
    exp: expWat("$e", "$ex"),
    headDim,
    headBytes: headDim * 4,
    rowBytes,
    group,
    tile,
    tileLess: tile - 1,
    sets,
    keyBytes: 16 * sets,
    chunk: ATTENTION_CHUNK,
    window: window || undefined,
    windowLess: window - 1,
    groupBytes: group * headDim * 4,
    groupScoreBytes: (tile + ATTENTION_PAD) * 16 * sets,
    groupCorrBytes: 16 * sets,
    groupMlBytes: 48 * sets,
    headRowBytes: rowBytes / kvHeads,
    absMax: [1, 2, 3, 4, 5, 6, 7].map((k) => 16 * k),
    narrow: [0, 1, 2, 3].map((k) => ({ out: 16 * k, a: 32 * k, b: 32 * k + 16 })),
    q8BlockBytes: Q8_BLOCK_BYTES,
  });
  return hoistPerFunction(text, hoist);
}
