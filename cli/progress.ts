// A progress bar for work that turns out to be slow: nothing for the first second, then a bar on
// stderr (only on a terminal), cleared when done.
import { SingleBar } from "cli-progress";

export function slowProgress(
  label: string,
  delayMs = 1000,
): { update(done: number, total: number): void; stop(): void } {
  const started = performance.now();
  let bar: SingleBar | undefined;
  return {
    update(done, total) {
      if (!process.stderr.isTTY) return;
      const mib = (n: number) => Math.round(n / 2 ** 20);
      if (!bar && performance.now() - started > delayMs && done < total) {
        bar = new SingleBar({
          format: `${label} {bar} {percentage}% | {value}/{total} MiB`,
          hideCursor: true,
          clearOnComplete: true,
          stream: process.stderr,
        });
        bar.start(Math.max(1, mib(total)), mib(done));
      }
      bar?.update(mib(done));
    },
    stop() {
      bar?.stop();
    },
  };
}
