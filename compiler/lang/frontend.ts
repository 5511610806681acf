// The front end in one call: text → tokens → CST → AST → checked spec, or every error found.
import { readFileSync } from "node:fs";
import type { SpecFile } from "./ast.ts";
import { type CheckedSpec, checkSpec } from "./check.ts";
import { SpecError, SpecErrors } from "./errors.ts";
import { moeLexer } from "./lexer.ts";
import { parser } from "./parser.ts";
import { AstBuilder, PatternGap } from "./to-ast.ts";
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
    const ch = source.slice(e.offset, e.offset + e.length);
    const what = ch.startsWith('"') ? "an unterminated string" : `unexpected character '${ch}'`;
    errors.push(new SpecError(loc(e.line ?? 1, e.column ?? 1, e.offset, e.length), what));
  }
  parser.input = lexed.tokens;
  const cst = parser.spec();
  for (const e of parser.errors) {
    const t = e.token;
    const eof = t.tokenType.name === "EOF";
    const line = eof ? source.split("\n").length : (t.startLine ?? 1);
    const col = eof ? source.split("\n").at(-1)!.length + 1 : (t.startColumn ?? 1);
    errors.push(
      new SpecError(loc(line, col, eof ? source.length : t.startOffset, eof ? 1 : t.image.length), e.message),
    );
  }
  if (errors.length) throw new SpecErrors(errors, source);
  try {
    return new AstBuilder(file).spec(cst);
  } catch (e) {
    if (e instanceof PatternGap) throw new SpecErrors([new SpecError(e.loc, e.message)], source);
    throw e;
  }
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
