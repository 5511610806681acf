// A scheme's `wasm.dot` piece (one step of one row against one activation vector, see runtime/quant/wat.ts)
// rewritten for several activation vectors at once, for the batched prefill's matrix-matrix kernels.
// Statements that depend only on the weights (loads at `$w`, unpacking nibbles, converting to f32) run
// once; those that read the activations (`$x`) or the accumulator (`$acc`), and the locals they feed, run
// once per column with their own copies (`$x_0`, `$acc_0`, `$v3_0`, …). Inside a per-column statement,
// every weight-only subexpression is computed once, before it, into a new local (`$h0`, …).
//
// Per column the arithmetic is the original piece's, operation for operation, so a column's result is
// bit-identical to the matrix-vector kernel's. Two rules keep it so: a product that a sum adds
// (`f32x4.add (…) (f32x4.mul …)`) is never hoisted alone, so the relaxed-SIMD rewrite still fuses the
// same multiply-adds; and a subexpression that writes a local (`local.tee`) is hoisted only when nothing
// else in its statement touches that local, so hoisting never reorders a write and a read.
import { parse, print, type Sexp } from "./relax.ts";

type Type = "i32" | "i64" | "f32" | "f64" | "v128";

/** The locals the matrix-vector template declares for the pieces, by type. */
export const PIECE_LOCALS: Record<string, Type> = {
  $w: "i32",
  $x: "i32",
  $k: "i32",
  $i0: "i32",
  $i1: "i32",
  $i2: "i32",
  $i3: "i32",
  $f0: "f32",
  $f1: "f32",
  $f2: "f32",
  $f3: "f32",
  $acc: "v128",
  ...Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`$v${i}`, "v128" as Type])),
};

const VECTOR = new Set(["v128", "i8x16", "i16x8", "i32x4", "i64x2", "f32x4", "f64x2"]);
const LANE: Record<string, Type> = {
  i8x16: "i32",
  i16x8: "i32",
  i32x4: "i32",
  i64x2: "i64",
  f32x4: "f32",
  f64x2: "f64",
};
const COMPARE = /^(eq|ne|eqz|lt|gt|le|ge)(_[su])?$/;

export class ColumnsError extends Error {}

const isList = (e: Sexp): e is Sexp[] => Array.isArray(e);

/** The result type of an instruction expression, when its opcode says it; undefined otherwise. */
function typeOf(e: Sexp[], locals: Record<string, Type>): Type | undefined {
  const head = e[0];
  if (typeof head !== "string") return undefined;
  if (head === "local.get" || head === "local.tee") return locals[e[1] as string];
  const [prefix, op = ""] = head.split(".");
  if (VECTOR.has(prefix!)) {
    if (op.startsWith("extract_lane")) return LANE[prefix!];
    if (/all_true|any_true|bitmask/.test(op)) return "i32";
    return "v128";
  }
  if (prefix === "i32" || prefix === "i64" || prefix === "f32" || prefix === "f64") {
    if (op.startsWith("store")) return undefined;
    return COMPARE.test(op) ? "i32" : (prefix as Type);
  }
  return undefined;
}

/** Locals an expression reads (local.get) and writes (local.set, local.tee). */
function refs(e: Sexp, reads = new Set<string>(), writes = new Set<string>()) {
  if (isList(e)) {
    if (e[0] === "local.get") reads.add(e[1] as string);
    if (e[0] === "local.set" || e[0] === "local.tee") writes.add(e[1] as string);
    for (const c of e) refs(c, reads, writes);
  }
  return { reads, writes };
}

const readsAny = (e: Sexp, set: Set<string>) => [...refs(e).reads].some((n) => set.has(n));

/** Locals whose values depend on the activations or the accumulator: the per-column ones. */
function taintedLocals(body: Sexp[]): Set<string> {
  const tainted = new Set(["$x", "$acc"]);
  let changed = true;
  const visit = (e: Sexp) => {
    if (!isList(e)) return;
    if (
      (e[0] === "local.set" || e[0] === "local.tee") &&
      !tainted.has(e[1] as string) &&
      readsAny(e[2]!, tainted)
    ) {
      tainted.add(e[1] as string);
      changed = true;
    }
    for (const c of e) visit(c);
  };
  while (changed) {
    changed = false;
    for (const s of body) visit(s);
  }
  return tainted;
}

const isConst = (e: Sexp[]) => typeof e[0] === "string" && (e[0].endsWith(".const") || e[0] === "local.get");

/**
 * The piece for `cols` activation vectors: column c reads `$x_c` and adds into `$acc_c`. Returns the text
 * and the locals it adds beyond PIECE_LOCALS (per-column copies and hoisted values) with their types.
 * Throws ColumnsError when the piece's control flow depends on the activations.
 */
export function columnsPiece(dot: string, cols: number): { text: string; locals: [string, Type][] } {
  const body = parse(dot);
  const tainted = taintedLocals(body);
  const types: Record<string, Type> = { ...PIECE_LOCALS };
  const added = new Map<string, Type>();
  for (const n of tainted) {
    const t = types[n];
    if (!t) throw new ColumnsError(`the piece uses a local ${n} the template does not declare`);
    for (let c = 0; c < cols; c++) added.set(`${n}_${c}`, t);
  }
  let hoisted = 0;
  const rename = (e: Sexp, c: number): Sexp => {
    if (!isList(e)) return e;
    if (
      (e[0] === "local.get" || e[0] === "local.set" || e[0] === "local.tee") &&
      tainted.has(e[1] as string)
    ) {
      return [e[0], `${e[1]}_${c}`, ...e.slice(2).map((x) => rename(x, c))];
    }
    return e.map((x) => rename(x, c));
  };

  const statement = (s: Sexp): Sexp[] => {
    if (!isList(s)) return [s];
    if (s[0] === "loop" || s[0] === "block") {
      const label = typeof s[1] === "string" && s[1].startsWith("$") ? [s[1]] : [];
      const rest = s.slice(1 + label.length);
      return [[s[0], ...label, ...rest.flatMap(statement)]];
    }
    const { reads, writes } = refs(s);
    const perColumn = [...reads, ...writes].some((n) => tainted.has(n));
    if (!perColumn) return [s];
    if (s[0] === "br_if" || s[0] === "br" || s[0] === "if" || s[0] === "br_table") {
      throw new ColumnsError("the piece's control flow depends on the activations");
    }
    const before: Sexp[] = [];
    // Counts of each local's references in the statement, to check a hoisted tee is self-contained.
    const count = new Map<string, number>();
    const tally = (e: Sexp) => {
      if (!isList(e)) return;
      if (e[0] === "local.get" || e[0] === "local.set" || e[0] === "local.tee")
        count.set(e[1] as string, (count.get(e[1] as string) ?? 0) + 1);
      e.forEach(tally);
    };
    tally(s);
    const hoist = (e: Sexp, parent: string | undefined): Sexp => {
      if (!isList(e)) return e;
      const head = e[0] as string;
      if (!isConst(e) && !readsAny(e, tainted)) {
        const type = typeOf(e, types);
        const fusedProduct = head === "f32x4.mul" && parent === "f32x4.add";
        let selfContained = true;
        const { writes: w } = refs(e);
        if (w.size) {
          const inner = new Map<string, number>();
          const t = (x: Sexp) => {
            if (!isList(x)) return;
            if (x[0] === "local.get" || x[0] === "local.set" || x[0] === "local.tee")
              inner.set(x[1] as string, (inner.get(x[1] as string) ?? 0) + 1);
            x.forEach(t);
          };
          t(e);
          selfContained = [...w].every((n) => !tainted.has(n) && inner.get(n) === count.get(n));
        }
        if (type && !fusedProduct && selfContained) {
          const name = `$h${hoisted++}`;
          added.set(name, type);
          types[name] = type;
          before.push(["local.set", name, e]);
          return ["local.get", name];
        }
      }
      return [head, ...e.slice(1).map((x) => hoist(x, head))];
    };
    const shared = hoist(s, undefined);
    return [...before, ...Array.from({ length: cols }, (_, c) => rename(shared, c))];
  };

  const out = body.flatMap(statement);
  return { text: out.map(print).join("\n"), locals: [...added] };
}
