// CST → typed AST. The CST keeps tokens grouped by type; here they are put back in source
// order and given locations.
import type { CstNode, IToken } from "chevrotain";
import type * as A from "./ast.ts";

type Child = CstNode | IToken;

function nodes(n: CstNode, key: string): CstNode[] {
  return (n.children[key] ?? []) as CstNode[];
}
function tokens(n: CstNode, key: string): IToken[] {
  return (n.children[key] ?? []) as IToken[];
}
function node(n: CstNode, key: string): CstNode {
  return nodes(n, key)[0]!;
}
function token(n: CstNode, key: string): IToken {
  return tokens(n, key)[0]!;
}
function isToken(c: Child): c is IToken {
  return (c as IToken).image !== undefined;
}

export class AstBuilder {
  constructor(readonly file: string) {}

  loc(t: IToken): A.Loc {
    return {
      file: this.file,
      line: t.startLine ?? 1,
      col: t.startColumn ?? 1,
      offset: t.startOffset,
      length: t.image.length,
    };
  }

  named(t: IToken): A.Named {
    return { name: t.image, loc: this.loc(t) };
  }

  spec(cst: CstNode): A.SpecFile {
    return {
      file: this.file,
      models: nodes(cst, "modelDecl").map((n) => this.model(n)),
      quants: nodes(cst, "quantDecl").map((n) => this.quant(n)),
      targets: nodes(cst, "targetDecl").map((n) => this.target(n)),
    };
  }

  model(n: CstNode): A.ModelDecl {
    const m: A.ModelDecl = {
      kind: "model",
      ...this.named(token(n, "Identifier")),
      params: [],
      weights: [],
      groups: [],
    };
    for (const p of nodes(n, "paramDecl")) {
      for (const a of nodes(p, "paramAssign")) {
        m.params.push({ ...this.named(token(a, "Identifier")), value: this.expr(node(a, "expression")) });
      }
    }
    for (const w of nodes(n, "weightsDecl")) {
      m.weights.push(...nodes(w, "weightDecl").map((d) => this.weight(d)));
      for (const g of nodes(w, "weightGroup")) {
        const [name, index] = tokens(g, "Identifier");
        m.groups.push({
          ...this.named(name!),
          index: index!.image,
          count: this.expr(node(g, "expression")),
          weights: nodes(g, "weightDecl").map((d) => this.weight(d)),
        });
      }
    }
    const f = nodes(n, "forwardDecl")[0];
    if (f) {
      m.forward = {
        inputs: tokens(f, "Identifier").map((t) => this.named(t)),
        body: this.block(node(f, "block")),
        loc: this.loc(token(f, "Forward")),
      };
    }
    return m;
  }

  weight(n: CstNode): A.WeightDecl {
    const str = tokens(n, "String")[0];
    return {
      ...this.named(token(n, "Identifier")),
      shape: nodes(n, "expression").map((e) => this.expr(e)),
      tensor: str ? { value: unquote(str.image), loc: this.loc(str) } : undefined,
    };
  }

  block(n: CstNode): A.Stmt[] {
    return nodes(n, "statement").map((s) => this.statement(s));
  }

  statement(n: CstNode): A.Stmt {
    const f = nodes(n, "forStmt")[0];
    if (f) {
      return {
        kind: "for",
        index: token(f, "Identifier").image,
        count: this.expr(node(f, "expression")),
        body: this.block(node(f, "block")),
        loc: this.loc(token(f, "For")),
      };
    }
    const r = nodes(n, "returnStmt")[0];
    if (r)
      return { kind: "return", value: this.expr(node(r, "expression")), loc: this.loc(token(r, "Return")) };
    const a = node(n, "assignStmt");
    const name = token(a, "Identifier");
    return { kind: "assign", name: name.image, value: this.expr(node(a, "expression")), loc: this.loc(name) };
  }

  /** Left-associative chains: operands in order, operators sorted back into source order. */
  private chain(n: CstNode, operand: string, ops: string[], sub: (c: CstNode) => A.Expr): A.Expr {
    const operands = nodes(n, operand).map(sub);
    const operators = ops.flatMap((k) => tokens(n, k)).sort((a, b) => a.startOffset - b.startOffset);
    let e = operands[0]!;
    operators.forEach((op, i) => {
      e = { kind: "binary", op: op.image as A.BinaryOp, left: e, right: operands[i + 1]!, loc: this.loc(op) };
    });
    return e;
  }

  expr(n: CstNode): A.Expr {
    return this.chain(n, "term", ["Plus", "Minus"], (t) =>
      this.chain(t, "unary", ["Star", "Slash"], (u) => this.unary(u)),
    );
  }

  unary(n: CstNode): A.Expr {
    const minus = tokens(n, "Minus")[0];
    if (minus) return { kind: "neg", operand: this.unary(node(n, "unary")), loc: this.loc(minus) };
    return this.postfix(node(n, "postfix"));
  }

  postfix(n: CstNode): A.Expr {
    let e = this.atom(node(n, "atom"));
    const names = tokens(n, "Identifier");
    const indices = nodes(n, "expression");
    const suffixes = [...tokens(n, "Dot"), ...tokens(n, "LBracket")].sort(
      (a, b) => a.startOffset - b.startOffset,
    );
    let ni = 0;
    let ii = 0;
    for (const s of suffixes) {
      if (s.image === ".") {
        const name = names[ni++]!;
        e = { kind: "member", target: e, name: name.image, loc: this.loc(name) };
      } else {
        e = { kind: "index", target: e, index: this.expr(indices[ii++]!), loc: this.loc(s) };
      }
    }
    return e;
  }

  atom(n: CstNode): A.Expr {
    const num = tokens(n, "Number")[0];
    if (num) return { kind: "num", value: Number(num.image), text: num.image, loc: this.loc(num) };
    const str = tokens(n, "String")[0];
    if (str) return { kind: "str", value: unquote(str.image), loc: this.loc(str) };
    const c = nodes(n, "call")[0];
    if (c) return this.call(c);
    return this.expr(node(n, "expression"));
  }

  call(n: CstNode): A.Expr {
    const name = token(n, "Identifier");
    if (!tokens(n, "LParen").length) return { kind: "name", name: name.image, loc: this.loc(name) };
    const args = nodes(n, "argument").map((a): A.Arg => {
      const key = tokens(a, "Identifier")[0];
      const value = this.expr(node(a, "expression"));
      return key ? { name: key.image, value, loc: this.loc(key) } : { value, loc: value.loc };
    });
    return { kind: "call", callee: name.image, args, loc: this.loc(name) };
  }

  quant(n: CstNode): A.QuantDecl {
    const [name, model] = tokens(n, "Identifier");
    return {
      kind: "quantization",
      ...this.named(name!),
      model: this.named(model!),
      rules: nodes(n, "quantRule").map((r) => {
        const scheme = token(r, "Identifier");
        const first = tokens(r, "Default")[0] ?? tokens(r, "Colon")[0]!;
        return {
          patterns: nodes(r, "pattern").map((p) => this.pattern(p)),
          scheme: this.named(scheme),
          loc: this.loc(nodes(r, "pattern")[0] ? firstToken(nodes(r, "pattern")[0]!) : first),
        };
      }),
    };
  }

  pattern(n: CstNode): A.Pattern {
    const segs = nodes(n, "patternSegment");
    const segments = segs.map((s) => {
      const bracket = tokens(s, "LBracket")[0]?.startOffset ?? Number.POSITIVE_INFINITY;
      const all = [...tokens(s, "Identifier"), ...tokens(s, "Star")];
      const parts = all.filter((t) => t.startOffset < bracket).sort((a, b) => a.startOffset - b.startOffset);
      // `w_ *` with a space would lex like `w_*`; only adjacent pieces form one glob.
      for (let i = 1; i < parts.length; i++) {
        if (parts[i]!.startOffset !== parts[i - 1]!.endOffset! + 1) {
          const glob = parts.map((t) => t.image).join("");
          throw new PatternError(
            this.loc(parts[i]!),
            `expected a pattern without spaces (\`${glob}\`), found a space before this`,
          );
        }
      }
      const starIndex = all.some((t) => t.startOffset > bracket);
      // Layer numbers in order; one after a `-` ends a range that the number before it starts.
      const items = [...tokens(s, "Number"), ...tokens(s, "Minus")].sort(
        (a, b) => a.startOffset - b.startOffset,
      );
      const layers: number[] = [];
      let text = "";
      for (let i = 0; i < items.length; i++) {
        const t = items[i]!;
        if (t.image === "-") continue;
        const v = Number(t.image);
        if (!Number.isInteger(v))
          throw new PatternError(this.loc(t), `a layer is a whole number, not ${t.image}`);
        if (items[i - 1]?.image === "-") {
          const from = layers.at(-1)!;
          if (v < from) throw new PatternError(this.loc(t), `the range ${from}-${v} runs backwards`);
          for (let l = from + 1; l <= v; l++) layers.push(l);
          text += `-${v}`;
        } else {
          layers.push(v);
          text += `${text ? ", " : ""}${v}`;
        }
      }
      return {
        glob: parts.map((t) => t.image).join(""),
        index: starIndex ? ("*" as const) : layers.length ? layers : undefined,
        indexText: starIndex ? "*" : text,
      };
    });
    const text = segments.map((s) => s.glob + (s.index === undefined ? "" : `[${s.indexText}]`)).join(".");
    return {
      text,
      segments: segments.map(({ glob, index }) => (index === undefined ? { glob } : { glob, index })),
      loc: this.loc(firstToken(n)),
    };
  }

  target(n: CstNode): A.TargetDecl {
    return {
      kind: "target",
      ...this.named(token(n, "Identifier")),
      props: nodes(n, "targetProp").map((p) => {
        const [key, second] = tokens(p, "Identifier");
        const num = tokens(p, "Number")[0];
        const str = tokens(p, "String")[0];
        let value: A.TargetValue;
        let valueTok: IToken;
        if (num) {
          value = { kind: "num", value: Number(num.image), unit: second?.image };
          valueTok = num;
        } else if (str) {
          value = { kind: "str", value: unquote(str.image) };
          valueTok = str;
        } else {
          value = { kind: "ident", name: second!.image };
          valueTok = second!;
        }
        const unitLoc = num && second ? this.loc(second) : undefined;
        return { key: key!.image, value, loc: this.loc(key!), valueLoc: this.loc(valueTok), unitLoc };
      }),
    };
  }
}

/** Raised while building the AST for a pattern like `w_ *` or `layer[3-1]`; turned into a SpecError by the
 * caller. */
export class PatternError extends Error {
  constructor(
    readonly loc: A.Loc,
    message: string,
  ) {
    super(message);
  }
}

function firstToken(n: CstNode): IToken {
  let best: IToken | undefined;
  const visit = (c: Child) => {
    if (isToken(c)) {
      if (!best || c.startOffset < best.startOffset) best = c;
    } else for (const list of Object.values(c.children)) for (const x of list) visit(x);
  };
  visit(n);
  return best!;
}

const escapes: Record<string, string> = {
  n: "\n",
  t: "\t",
  '"': '"',
  "\\": "\\",
  "/": "/",
  "{": "\\{",
  "}": "\\}",
};

/** `"blk.{i}.x"` → `blk.{i}.x`. Escaped braces stay escaped so `{i}` substitution can tell them apart. */
function unquote(image: string): string {
  return image.slice(1, -1).replace(/\\(.)/g, (_, c: string) => escapes[c] ?? c);
}
