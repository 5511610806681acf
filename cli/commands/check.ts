import { loadSpec } from "../../compiler/lang/frontend.ts";

/** Validates a spec: prints `ok`, or the errors (thrown, reported by the CLI's guard). */
export function checkCommand(file: string): void {
  loadSpec(file);
  process.stdout.write("ok\n");
}
