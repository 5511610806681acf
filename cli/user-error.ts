// A mistake by the user (bad flag, bad spec, bad file): one clear message, an exit code, no stack trace.

import { readFileSync } from "node:fs";
import { SpecError, SpecErrors } from "../compiler/lang/errors.ts";
import { SelectionError } from "../compiler/select.ts";
import { err } from "./color.ts";

export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

function sourceOf(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}

/** Runs a command action, turning known user errors into messages and exit codes. */
export function guarded<A extends unknown[]>(action: (...args: A) => Promise<void> | void) {
  return async (...args: A): Promise<void> => {
    try {
      await action(...args);
    } catch (thrown) {
      const e = thrown instanceof SpecError ? new SpecErrors([thrown], sourceOf(thrown.loc.file)) : thrown;
      if (e instanceof SpecErrors) {
        process.stderr.write(`${e.format()}\n`);
        process.stderr.write(err.red(`${e.errors.length} error${e.errors.length === 1 ? "" : "s"}\n`));
        process.exitCode = 1;
      } else if (e instanceof UserError || e instanceof SelectionError) {
        process.stderr.write(`${err.red("error:")} ${e.message}\n`);
        process.exitCode = e instanceof UserError ? e.exitCode : 1;
      } else if (e instanceof Error && (e as { exitCode?: number }).exitCode !== undefined) {
        // Errors from the runtime that carry their own exit code (checkpoint errors exit 2).
        process.stderr.write(`${err.red("error:")} ${e.message}\n`);
        process.exitCode = (e as { exitCode?: number }).exitCode;
      } else {
        process.stderr.write(
          `${err.red("internal error")} (a bug in moec, please report it):\n${(e as Error)?.stack ?? e}\n`,
        );
        process.exitCode = 70;
      }
    }
  };
}
