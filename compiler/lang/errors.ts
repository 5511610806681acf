// Every problem in a spec becomes a SpecError: a place, what was wrong, and maybe a hint.
// Only these are shown to users; anything else escaping the front end is a bug.
import type { Loc } from "./ast.ts";

export class SpecError extends Error {
  constructor(
    readonly loc: Loc,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }

  format(source?: string): string {
    const where = `${this.loc.file}:${this.loc.line}:${this.loc.col}`;
    let out = `${where}: error: ${this.message}`;
    const line = source?.split(/\r\n?|\n/)[this.loc.line - 1];
    if (line !== undefined) {
      const caret =
        " ".repeat(Math.max(0, this.loc.col - 1)) + "^".repeat(Math.max(1, Math.min(this.loc.length, 40)));
      out += `\n  ${line.replace(/\t/g, " ")}\n  ${caret}`;
    }
    if (this.hint) out += `\n  hint: ${this.hint}`;
    return out;
  }
}

/**
 * An error that only follows from one already reported (a use of a param whose own definition
 * failed). Checks throw it to stop; the front end drops it rather than show the same mistake twice.
 */
export class Consequence extends SpecError {}

/** Thrown when a spec has one or more errors; carries them all. */
export class SpecErrors extends Error {
  constructor(
    readonly errors: SpecError[],
    readonly source?: string,
  ) {
    super(errors.map((e) => e.format()).join("\n"));
  }

  format(): string {
    return this.errors.map((e) => e.format(this.source)).join("\n");
  }
}

export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/** "did you mean `kv_heads`?" when some candidate is close enough to be a plausible typo. */
export function didYouMean(name: string, candidates: Iterable<string>): string | undefined {
  const best = closest(name, candidates);
  return best === undefined ? undefined : `did you mean \`${best}\`?`;
}

/** The candidate close enough to `name` to be a plausible typo of it, if any. */
export function closest(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDist = Math.max(2, Math.floor(name.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(name.toLowerCase(), c.toLowerCase());
    // A one-letter name is "one edit" from every other one-letter name: that is no hint.
    if (d < bestDist && d < name.length && d < c.length) {
      best = c;
      bestDist = d;
    }
  }
  return best;
}
