// Evaluates a model's `param`s in dependency order, whatever order they are written in.
import type { Expr, Loc, ModelDecl, ParamDecl } from "./ast.ts";
import { Consequence, didYouMean, SpecError } from "./errors.ts";

export type Env = ReadonlyMap<string, number>;

/** Arithmetic over params. Throws SpecError for unknown names and division by zero. */
export function evalExpr(e: Expr, env: Env, what = "an expression"): number {
  switch (e.kind) {
    case "num":
      if (!Number.isFinite(e.value)) throw new SpecError(e.loc, `expected a finite number, found ${e.text}`);
      return e.value;
    case "name": {
      const v = env.get(e.name);
      if (v === undefined)
        throw new SpecError(e.loc, `undefined name \`${e.name}\``, didYouMean(e.name, env.keys()));
      // A param whose own definition failed: that error is already reported.
      if (Number.isNaN(v)) throw new Consequence(e.loc, `\`${e.name}\` has no value`);
      return v;
    }
    case "neg":
      return -evalExpr(e.operand, env, what);
    case "binary": {
      const a = evalExpr(e.left, env, what);
      const b = evalExpr(e.right, env, what);
      if (e.op === "/" && b === 0) throw new SpecError(e.loc, "division by zero");
      const r = e.op === "+" ? a + b : e.op === "-" ? a - b : e.op === "*" ? a * b : a / b;
      if (!Number.isFinite(r)) throw new SpecError(e.loc, `${what} overflows`);
      return r;
    }
    default:
      throw new SpecError(e.loc, `expected a number in ${what}, found ${describe(e)}`);
  }
}

export function describe(e: Expr): string {
  switch (e.kind) {
    case "str":
      return "a string";
    case "call":
      return `a call of \`${e.callee}\``;
    case "index":
    case "member":
      return "a weight reference";
    default:
      return "an expression";
  }
}

/** The whole extent of an arithmetic expression: `hidden / 3`, not just its `/`. */
export function span(e: Expr): Loc {
  const parts =
    e.kind === "binary"
      ? [span(e.left), span(e.right)]
      : e.kind === "neg"
        ? [e.loc, span(e.operand)]
        : [e.loc];
  const first = parts[0]!;
  const last = parts.at(-1)!;
  return { ...first, length: Math.max(first.length, last.offset + last.length - first.offset) };
}

/** A positive integer dimension, or a SpecError saying why not. */
export function evalDim(e: Expr, env: Env, what: string): number {
  const v = evalExpr(e, env, what);
  const shown = Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
  if (!Number.isInteger(v)) throw new SpecError(span(e), `${what} must be an integer, found ${shown}`);
  if (v <= 0) throw new SpecError(span(e), `${what} must be positive, found ${shown}`);
  if (!Number.isSafeInteger(v)) throw new SpecError(span(e), `${what} is too large (${shown})`);
  return v;
}

function namesIn(e: Expr, out: Expr[] = []): Expr[] {
  if (e.kind === "name") out.push(e);
  else if (e.kind === "binary") namesIn(e.left, namesIn(e.right, out));
  else if (e.kind === "neg") namesIn(e.operand, out);
  return out;
}

export function evalParams(m: ModelDecl, errors: SpecError[]): Map<string, number> {
  const decls = new Map<string, ParamDecl>();
  const env = new Map<string, number>();
  const state = new Map<string, "visiting" | "done">();
  for (const p of m.params) {
    const first = decls.get(p.name);
    if (first)
      errors.push(
        new SpecError(p.loc, `param \`${p.name}\` is declared twice (first at line ${first.loc.line})`),
      );
    else decls.set(p.name, p);
  }
  // Depth-first, so a param may use one declared after it; a back edge is a cycle.
  // A param that fails is NaN in `env`, so that its uses stop quietly (see Consequence).
  const visit = (name: string, path: string[]): boolean => {
    if (state.get(name) === "done") return !Number.isNaN(env.get(name));
    const p = decls.get(name)!;
    if (state.get(name) === "visiting") {
      const cycle = [...path.slice(path.indexOf(name)), name].join(" → ");
      errors.push(new SpecError(p.loc, `params form a cycle: ${cycle}`));
      return false;
    }
    state.set(name, "visiting");
    let ok = true;
    for (const ref of namesIn(p.value)) {
      if (ref.kind === "name" && decls.has(ref.name)) ok = visit(ref.name, [...path, name]) && ok;
    }
    state.set(name, "done");
    env.set(name, Number.NaN);
    if (!ok) return false;
    try {
      env.set(name, evalExpr(p.value, env, `param \`${name}\``));
      return true;
    } catch (e) {
      if (e instanceof SpecError) errors.push(e);
      else throw e;
      return false;
    }
  };
  for (const p of m.params) visit(p.name, []);
  return env;
}
