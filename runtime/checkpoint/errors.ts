// The one error every checkpoint reader and writer throws for a bad file or a bad request.
// Its message is a single line the CLI prints as is (and exits 2):
//   FILE: [tensor NAME | key KEY] at byte OFFSET: what is wrong

export type CheckpointSubject = "tensor" | "key";

export interface CheckpointErrorInit {
  /** Path of the file, as the caller named it. */
  file: string;
  /** What is wrong, one sentence without the location. */
  problem: string;
  /** Tensor name or metadata key the problem is about, if any. */
  what?: string;
  /** Whether `what` is a tensor or a metadata key (default "key"). */
  whatKind?: CheckpointSubject;
  /** Absolute byte offset in the file where the problem is, if known. */
  offset?: number;
}

const MAX_SHOWN_NAME = 200;

/** Makes text from a file safe for a one-line message: control characters escaped, long text cut. */
export function printableName(s: string, max = MAX_SHOWN_NAME): string {
  let out = "";
  for (const c of s) {
    if (out.length >= max) return `${out}… (${s.length} chars)`;
    const code = c.codePointAt(0)!;
    if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (c === "\t") out += "\\t";
    else if (code < 0x20 || (code >= 0x7f && code <= 0x9f) || code === 0x2028 || code === 0x2029) {
      out += `\\u${code.toString(16).padStart(4, "0")}`;
    } else out += c;
  }
  return out;
}

export class CheckpointError extends Error {
  override readonly name = "CheckpointError";
  /** The CLI exits with this code (its guard treats errors with an `exitCode` as user errors). */
  readonly exitCode = 2;
  readonly file: string;
  readonly what: string | undefined;
  readonly whatKind: CheckpointSubject | undefined;
  readonly offset: number | undefined;
  readonly problem: string;

  constructor(init: CheckpointErrorInit) {
    const kind = init.what === undefined ? undefined : (init.whatKind ?? "key");
    let where = "";
    if (init.what !== undefined) where += ` ${kind} ${printableName(init.what)}`;
    if (init.offset !== undefined) where += ` at byte ${init.offset}`;
    const problem = printableName(init.problem, 2000);
    super(`${printableName(init.file)}:${where}${where ? ":" : ""} ${problem}`);
    this.file = init.file;
    this.what = init.what;
    this.whatKind = kind;
    this.offset = init.offset;
    this.problem = init.problem;
  }
}
