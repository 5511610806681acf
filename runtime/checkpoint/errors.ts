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

/** Makes a name from a file safe for a one-line message: control characters escaped, long names cut. */
export function printableName(s: string): string {
  let out = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    const code = c.charCodeAt(0);
    if (c === "\n") return "\\n";
    if (c === "\r") return "\\r";
    if (c === "\t") return "\\t";
    return `\\u${code.toString(16).padStart(4, "0")}`;
  });
  if (out.length > MAX_SHOWN_NAME) out = `${out.slice(0, MAX_SHOWN_NAME)}… (${s.length} chars)`;
  return out;
}

export class CheckpointError extends Error {
  override readonly name = "CheckpointError";
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
    const problem = init.problem.replace(/[\r\n]+/g, " ");
    super(`${printableName(init.file)}:${where}${where ? ":" : ""} ${problem}`);
    this.file = init.file;
    this.what = init.what;
    this.whatKind = kind;
    this.offset = init.offset;
    this.problem = init.problem;
  }
}
