// The relaxed-SIMD twin of a WAT module: every `acc + a × b` on f32x4 becomes one fused multiply-add
// (`f32x4.relaxed_madd`). The schemes and templates are written once, in plain SIMD; this rewrite is
// the only place that knows about relaxed SIMD. The runtime picks the twin when the engine validates it.
// The integer pieces' 8-bit dot products stay plain SIMD in both builds: Node 20's V8 (11.3) computes
// `i32x4.relaxed_dot_i8x16_i7x16_add_s` wrongly (twice the sum) once a function holds eight or more of
// them live, which every matrix-matrix kernel does.

export type Sexp = string | Sexp[];

export function parse(text: string): Sexp[] {
  const tokens = text.replace(/;;[^\n]*/g, "").match(/\(|\)|"(?:[^"\\]|\\.)*"|[^\s()]+/g) ?? [];
  const stack: Sexp[][] = [[]];
  for (const t of tokens) {
    if (t === "(") stack.push([]);
    else if (t === ")") {
      const list = stack.pop()!;
      stack.at(-1)!.push(list);
    } else stack.at(-1)!.push(t);
  }
  return stack[0]!;
}

export const print = (e: Sexp): string => (typeof e === "string" ? e : `(${e.map(print).join(" ")})`);

const isMul = (e: Sexp): e is Sexp[] => Array.isArray(e) && e[0] === "f32x4.mul" && e.length === 3;

function rewrite(e: Sexp): Sexp {
  if (typeof e === "string") return e;
  const list = e.map(rewrite);
  if (list[0] === "f32x4.add" && list.length === 3) {
    const [, a, b] = list;
    if (isMul(b!)) return ["f32x4.relaxed_madd", b[1]!, b[2]!, a!];
    if (isMul(a!)) return ["f32x4.relaxed_madd", a[1]!, a[2]!, b!];
  }
  return list;
}

/** The module with fused multiply-adds, and how many it fused (0: no twin is worth shipping). */
export function relaxWat(text: string): { text: string; fused: number } {
  const out = parse(text).map(rewrite).map(print).join("\n");
  return { text: out, fused: out.split("f32x4.relaxed_madd").length - 1 };
}

// ---- 8-bit integer products ----
//
// A `q8` piece multiplies unsigned weight bytes by int16 activations in pairs, as plain SIMD must:
// `dot(extend_low_u(W), x[0..8]) + dot(extend_high_u(W), x[8..16])`, 8 products per instruction. Where
// every byte of W is provably below 128, relaxed SIMD's `i16x8.relaxed_dot_i8x16_i7x16_s` does 16 per
// instruction against the same activations as int8, which the quantizer also writes, `shadow` bytes
// after the int16 run (runtime/quant/q8-activations.ts). The result is the same integer: x is within
// ±127, so a pair of products is at most 2 · 127 · 127 and never saturates. Two such runs whose bounds
// allow it are added as int16 before widening, as llama.cpp's maddubs kernels do. The add-accumulate form
// (`i32x4.relaxed_dot_i8x16_i7x16_add_s`) stays unused: see the note at the top of this file.

const isList = (e: Sexp): e is Sexp[] => Array.isArray(e);
const same = (a: Sexp, b: Sexp) => print(a) === print(b);
const RDOT = "i16x8.relaxed_dot_i8x16_i7x16_s";
/** The largest |x| of a quantized activation. */
const X_MAX = 127;

/** Every `local.set` / `local.tee` value of each local in `body`, for `byteBound`. */
function assignments(body: Sexp[]): Map<string, Sexp[]> {
  const out = new Map<string, Sexp[]>();
  const visit = (e: Sexp) => {
    if (!isList(e)) return;
    if ((e[0] === "local.set" || e[0] === "local.tee") && typeof e[1] === "string" && e[2] !== undefined) {
      out.set(e[1], [...(out.get(e[1]) ?? []), e[2]]);
    }
    e.forEach(visit);
  };
  body.forEach(visit);
  return out;
}

/** What is known of the locals: `at`, each local's bound where the walk knows the value it holds; every
 * value each local is ever set to (`sets`) for the others. */
type Env = { at: Map<string, number>; sets: Map<string, Sexp[]> };

/**
 * An upper bound on every byte of the v128 expression `e` read as unsigned (255 where unknown). A local
 * the walk does not follow here is bounded by the largest of all values it is ever set to in the piece.
 */
export function byteBound(e: Sexp, env: Env, seen = new Set<string>()): number {
  if (!isList(e)) return 255;
  const [op, ...args] = e;
  const arg = (i: number) => byteBound(args[i]!, env, seen);
  const ones = (n: number) => 2 ** Math.ceil(Math.log2(n + 1)) - 1; // every bit up to n's highest
  const imm = (i: number) => (isList(args[i]!) && args[i]![0] === "i32.const" ? Number(args[i]![1]) : NaN);
  switch (op) {
    case "v128.const":
      return args[0] === "i8x16" ? Math.max(...args.slice(1).map((v) => Number(v) & 255)) : 255;
    case "local.tee":
      return arg(1);
    case "local.get": {
      const name = args[0] as string;
      const known = env.at.get(name);
      if (known !== undefined) return known;
      const values = env.sets.get(name);
      if (!values || seen.has(name)) return 255;
      const anywhere = { at: new Map<string, number>(), sets: env.sets };
      const inner = new Set(seen).add(name);
      return Math.max(...values.map((v) => byteBound(v, anywhere, inner)));
    }
    case "v128.and":
      return Math.min(arg(0), arg(1));
    case "v128.or":
    case "v128.xor":
      return ones(Math.max(arg(0), arg(1)));
    case "i8x16.min_u":
      return Math.min(arg(0), arg(1));
    case "i8x16.max_u":
    case "i8x16.shuffle":
      return Math.max(...args.filter(isList).map((a) => byteBound(a, env, seen)));
    case "i8x16.swizzle":
      return arg(0);
    case "i8x16.shr_u":
      return Number.isNaN(imm(1)) ? 255 : arg(0) >> (imm(1) & 7);
    case "i8x16.shl": {
      const b = arg(0) << (imm(1) & 7);
      return !Number.isNaN(imm(1)) && b <= 255 ? b : 255;
    }
    case "i8x16.add": {
      const b = arg(0) + arg(1);
      return Math.min(b, 255);
    }
    default:
      return 255;
  }
}

/** `(v128.load offset=O …)`'s parts, or undefined. */
function load(e: Sexp): { offset: number; rest: Sexp[] } | undefined {
  if (!isList(e) || e[0] !== "v128.load") return undefined;
  const at = e.findIndex((a) => typeof a === "string" && a.startsWith("offset="));
  const offset = at < 0 ? 0 : Number((e[at] as string).slice(7));
  return { offset, rest: e.slice(1).filter((a) => !(typeof a === "string" && /^(offset|align)=/.test(a))) };
}

/** `dot(extend_{half}_u(W) [× S], load)` → { W, S, load }, or undefined. */
function halfDot(e: Sexp, half: "low" | "high") {
  if (!isList(e) || e[0] !== "i32x4.dot_i16x8_s" || e.length !== 3) return undefined;
  let w = e[1]!;
  let scale: Sexp | undefined;
  if (isList(w) && w[0] === "i16x8.mul" && w.length === 3) {
    scale = w[2];
    w = w[1]!;
  }
  if (!isList(w) || w[0] !== `i16x8.extend_${half}_i8x16_u`) return undefined;
  const l = load(e[2]!);
  return l && { w: w[1]!, scale, load: l };
}

/** Where a block's int16 values end (their loads are at smaller offsets, from the block or a point in its
 * values; the sums and scales come after), and how far their int8 shadow is. */
type Format = { values: number; shadow: number };

/** A rewritten run: its int16 pair sums, the bound of its weights, and the int16 scale it is widened by. */
type Run = { pairs: Sexp; bound: number; scale?: Sexp };

function runOf(e: Sexp, env: Env, format: Format): Run | undefined {
  if (!isList(e) || e[0] !== "i32x4.add" || e.length !== 3) return undefined;
  const lo = halfDot(e[1]!, "low");
  const hi = halfDot(e[2]!, "high");
  if (!lo || !hi || !same(lo.w, hi.w) || !same(lo.load.rest, hi.load.rest)) return undefined;
  if (hi.load.offset !== lo.load.offset + 16 || hi.load.offset + 16 > format.values) return undefined;
  if ((lo.scale === undefined) !== (hi.scale === undefined)) return undefined;
  if (lo.scale && !same(lo.scale, hi.scale!)) return undefined;
  const bound = byteBound(lo.w, env);
  if (bound > 127) return undefined;
  const x: Sexp = ["v128.load", `offset=${lo.load.offset + format.shadow}`, "align=1", ...lo.load.rest];
  return { pairs: [RDOT, x, lo.w], bound, scale: lo.scale };
}

const widen = (r: Run): Sexp =>
  r.scale ? ["i32x4.dot_i16x8_s", r.pairs, r.scale] : ["i32x4.extadd_pairwise_i16x8_s", r.pairs];

/** Two runs added as int16 first, where their pair sums cannot overflow and they share a scale. */
function merge(a: Run, b: Run): Run | undefined {
  if ((a.scale === undefined) !== (b.scale === undefined)) return undefined;
  if (a.scale && !same(a.scale, b.scale!)) return undefined;
  if (2 * X_MAX * (a.bound + b.bound) > 32767) return undefined;
  return { pairs: ["i16x8.add", a.pairs, b.pairs], bound: a.bound + b.bound, scale: a.scale };
}

/**
 * A `q8` piece for relaxed SIMD: its provably 7-bit runs as 8-bit dot products against the int8 activations
 * `format.shadow` bytes after the int16 ones. Returns the text and how many runs it rewrote.
 */
export function relaxIntegers(piece: string, format: Format): { text: string; runs: number } {
  const body = parse(piece);
  const sets = assignments(body);
  const asRun = (e: Sexp, env: Env): Run | undefined => {
    const r = runOf(e, env, format);
    if (r) return r;
    // (add A B) of two runs, merged where allowed
    if (isList(e) && e[0] === "i32x4.add" && e.length === 3) {
      const a = asRun(e[1]!, env);
      const b = a && asRun(e[2]!, env);
      if (a && b) return merge(a, b);
    }
    return undefined;
  };
  const rewrite = (e: Sexp, env: Env): Sexp => {
    if (!isList(e)) return e;
    const r = asRun(e, env);
    return r ? widen(r) : e.map((c) => rewrite(c, env));
  };
  // Statements in order, following what each local holds: a loop's or block's locals are known inside it
  // only from their sets there, and after it not at all.
  const walk = (list: Sexp[], at: Map<string, number>): Sexp[] =>
    list.map((st) => {
      if (!isList(st)) return st;
      const set = [...assignments([st]).keys()];
      for (const n of set) at.delete(n);
      if (["loop", "block", "if", "then", "else"].includes(st[0] as string)) {
        const inside = new Map(at);
        return st.map((c) => (isList(c) ? walk([c], inside)[0]! : c));
      }
      const env = { at, sets };
      const out = rewrite(st, env);
      const record = (e: Sexp) => {
        if (!isList(e)) return;
        e.forEach(record);
        if ((e[0] === "local.set" || e[0] === "local.tee") && typeof e[1] === "string") {
          at.set(e[1], byteBound(e[2]!, env));
        }
      };
      record(st);
      return out;
    });
  const text = walk(body, new Map()).map(print).join("\n");
  return { text, runs: text.split(RDOT).length - 1 };
}
