// The front end in one call: text → tokens → CST → AST → checked spec, or every error found.
import { readFileSync } from "node:fs";
import type { IToken } from "chevrotain";
import type { SpecFile } from "./ast.ts";
import { type CheckedSpec, checkSpec } from "./check.ts";
import { closest, SpecError, SpecErrors } from "./errors.ts";
import { BadString, Identifier, KEYWORDS, moeLexer } from "./lexer.ts";
import { parser } from "./parser.ts";
import { AstBuilder, PatternError } from "./to-ast.ts";
import "../../runtime/quant/index.ts";

/** Specs are small; anything larger is not a spec and would only make the parser slow. */
const MAX_SPEC_BYTES = 1 << 20;

export function parseSpec(source: string, file: string): SpecFile {
  const errors: SpecError[] = [];
  const loc = (line: number, col: number, offset: number, length: number) => ({
    file,
    line,
    col,
    offset,
    length,
  });
  if (source.length > MAX_SPEC_BYTES)
    throw new SpecErrors(
      [new SpecError(loc(1, 1, 0, 1), `a spec is at most ${MAX_SPEC_BYTES} bytes`)],
      source,
    );
  const lexed = moeLexer.tokenize(source);
  for (const e of lexed.errors) {
    const chars = source.slice(e.offset, e.offset + e.length);
    errors.push(
      new SpecError(
        loc(e.line ?? 1, e.column ?? 1, e.offset, e.length),
        `expected a name, number, string, operator or bracket, found ${showChars(chars)}`,
        chars === ";" ? "declarations and statements need no `;`" : undefined,
      ),
    );
  }
  for (const t of lexed.tokens) {
    if (t.tokenType !== BadString) continue;
    const at = loc(t.startLine ?? 1, t.startColumn ?? 1, t.startOffset, t.image.length);
    const badEscape = [...t.image.matchAll(/\\(.)/g)].find((m) => !'"\\/nt{}'.includes(m[1]!));
    if (!/^"(?:[^"\\\n]|\\.)*"$/.test(t.image)) {
      errors.push(
        new SpecError(at, "unterminated string: expected a closing '\"' before the end of the line"),
      );
    } else if (badEscape) {
      errors.push(
        new SpecError(
          at,
          `unknown escape \`${badEscape[0]}\` in a string`,
          'escapes: \\" \\\\ \\/ \\n \\t \\{ \\}',
        ),
      );
    }
  }
  parser.input = lexed.tokens;
  const cst = parser.spec();
  const end = source.split(/\r\n?|\n/);
  for (const e of parser.errors) {
    const t = e.token;
    const eof = t.tokenType.name === "EOF";
    const line = eof ? end.length : (t.startLine ?? 1);
    const col = eof ? end.at(-1)!.length + 1 : (t.startColumn ?? 1);
    const at = loc(line, col, eof ? source.length : t.startOffset, eof ? 1 : t.image.length);
    errors.push(new SpecError(at, e.message, parseHint(t, e.message, lexed.tokens)));
  }
  if (errors.length) throw new SpecErrors(withoutCascades(errors), source);
  try {
    return new AstBuilder(file).spec(cst);
  } catch (e) {
    if (e instanceof PatternError) throw new SpecErrors([new SpecError(e.loc, e.message)], source);
    throw e;
  }
}

const TOP_LEVEL = "expected 'model', 'quantization' or 'target'";

/** `'$'`, or code points for what would not print (`U+200B`). */
function showChars(s: string): string {
  if (!/[\p{C}\p{Z}]/u.test(s)) return `'${s}'`;
  const points = [...s].map((c) => `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`);
  return `the character${points.length > 1 ? "s" : ""} ${points.join(" ")}`;
}

/** A misspelled keyword, a keyword used as a name, or the `{` that a missing `}` leaves open. */
function parseHint(t: IToken, message: string, tokens: IToken[]): string | undefined {
  if (t.tokenType === Identifier) {
    const k = closest(t.image, KEYWORDS);
    if (k) return `did you mean \`${k}\`?`;
  }
  if (KEYWORDS.includes(t.image) && t.tokenType !== Identifier && message.startsWith("expected a name")) {
    return `\`${t.image}\` is a keyword and cannot be a name`;
  }
  const name = t.tokenType.name;
  if (message.includes("'}'") && ["EOF", "Model", "Quantization", "Target"].includes(name)) {
    const open: IToken[] = [];
    for (const x of tokens) {
      if (name !== "EOF" && x.startOffset >= t.startOffset) break;
      if (x.image === "{") open.push(x);
      else if (x.image === "}") open.pop();
    }
    const o = open.at(-1);
    if (o) return `the '{' at line ${o.startLine}, column ${o.startColumn} is never closed`;
  }
  return undefined;
}

/**
 * Chevrotain recovers from a syntax error by skipping ahead, and what it skips often reads as
 * more errors. Keep the first on each line, and a "junk after the last declaration" error only
 * when nothing before it went wrong (an unbalanced brace ends declarations early).
 */
function withoutCascades(errors: SpecError[]): SpecError[] {
  const lines = new Set<number>();
  const kept: SpecError[] = [];
  for (const e of [...errors].sort((a, b) => a.loc.offset - b.loc.offset)) {
    if (lines.has(e.loc.line) || (kept.length && e.message.startsWith(TOP_LEVEL))) continue;
    lines.add(e.loc.line);
    kept.push(e);
  }
  return kept;
}

export function compileSource(source: string, file: string): CheckedSpec {
  const ast = parseSpec(source, file);
  const errors: SpecError[] = [];
  const checked = checkSpec(ast, errors);
  if (errors.length) throw new SpecErrors(errors, source);
  return checked;
}

export function loadSpec(path: string): CheckedSpec {
  let source: string;
  try {
    source = readFileSync(path, "utf8");
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message;
    throw new SpecErrors([
      new SpecError({ file: path, line: 1, col: 1, offset: 0, length: 0 }, `cannot read the spec: ${why}`),
    ]);
  }
  return compileSource(source, path);
}
