// Progress bars on stderr, only where wantsProgress says a terminal can draw them (cli/color.ts); their
// colours follow stderr's.
import { type Options, SingleBar } from "cli-progress";
import { wantsProgress } from "./color.ts";

/** A bar on stderr, or undefined when stderr is not a terminal that can draw one. */
export function terminalBar(format: string, options: Omit<Options, "format" | "stream"> = {}) {
  if (!wantsProgress(process.stderr)) return undefined;
  return new SingleBar({
    hideCursor: true,
    clearOnComplete: true,
    ...options,
    format,
    stream: process.stderr,
  });
}

/** A bar for work that turns out to be slow: nothing for the first second, then a bar, cleared when done. */
export function slowProgress(
  label: string,
  delayMs = 1000,
): { update(done: number, total: number): void; stop(): void } {
  const started = performance.now();
  let bar: SingleBar | undefined;
  let drawn = false;
  return {
    update(done, total) {
      const mib = (n: number) => Math.round(n / 2 ** 20);
      if (!drawn && performance.now() - started > delayMs && done < total) {
        drawn = true;
        bar = terminalBar(`${label} {bar} {percentage}% | {value}/{total} MiB`);
        bar?.start(Math.max(1, mib(total)), mib(done));
      }
      bar?.update(mib(done));
    },
    stop() {
      bar?.stop();
    },
  };
}
