import { SpecError, SpecErrors } from "../../compiler/lang/errors.ts";
import { loadSpec } from "../../compiler/lang/frontend.ts";

export interface CheckOptions {
  json?: boolean;
}

/** One error of `moec check --json`: where (1-based line and column), what, and a hint where one helps. */
export interface CheckError {
  file: string;
  line: number;
  col: number;
  message: string;
  hint?: string;
}

/**
 * Validates a spec: prints `ok`, or the errors (thrown, reported by the CLI's guard). With --json, one object
 * either way, `{"ok", "file", "models", "quantizations", "targets", "errors"}`, exit 1 when not ok.
 */
export function checkCommand(file: string, o: CheckOptions = {}): void {
  if (!o.json) {
    loadSpec(file);
    process.stdout.write("ok\n");
    return;
  }
  let report: object;
  try {
    const spec = loadSpec(file);
    report = {
      ok: true,
      file,
      models: spec.models.map((m) => m.name),
      quantizations: spec.quants.map((q) => ({ name: q.name, model: q.model })),
      targets: spec.targets.map((t) => t.name),
      errors: [],
    };
  } catch (e) {
    const errors = e instanceof SpecErrors ? e.errors : e instanceof SpecError ? [e] : undefined;
    if (!errors) throw e;
    const list: CheckError[] = errors.map((x) => ({
      file: x.loc.file,
      line: x.loc.line,
      col: x.loc.col,
      message: x.message,
      ...(x.hint ? { hint: x.hint } : {}),
    }));
    report = { ok: false, file, models: [], quantizations: [], targets: [], errors: list };
    process.exitCode = 1;
  }
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
}
