// CI reads one plain "N passed, N failed" line; vitest's own summary is not in that form. After it, one line
// says why tests were skipped: what the machine lacks (test/machine.ts puts it in their meta) and how to get
// it, or that their file or the run's filter skipped them.
import type { Reporter, TestCase, TestModule } from "vitest/node";

/** "3 without X (…); 1 marked skip …": counts by reason, in the order first seen. */
function reasons(tests: TestCase[], fallback: string): string {
  const counts = new Map<string, number>();
  for (const t of tests) {
    const r = t.result();
    const why = t.meta().missing ?? (r.state === "skipped" ? r.note : undefined) ?? fallback;
    counts.set(why, (counts.get(why) ?? 0) + 1);
  }
  return [...counts].map(([why, n]) => `${n} ${why}`).join("; ");
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    const skipped: TestCase[] = [];
    const failedWithout: TestCase[] = [];
    for (const mod of modules) {
      const failedIn = (tests: Iterable<{ result(): { state: string } }>) =>
        [...tests].filter((t) => t.result().state === "failed").length;
      for (const test of mod.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") {
          failed++;
          if (test.meta().required) failedWithout.push(test);
        } else skipped.push(test);
      }
      // A beforeAll/afterAll that throws fails its suite while the suite's tests count as skipped; a file
      // that fails to load has no tests. Each is a failure all the same.
      let broken = 0;
      for (const suite of mod.children.allSuites()) {
        if (suite.state() === "failed" && failedIn(suite.children.allTests()) === 0) broken++;
      }
      if (broken === 0 && mod.state() === "failed" && failedIn(mod.children.allTests()) === 0) broken++;
      failed += broken;
    }
    const tail = skipped.length ? `, ${skipped.length} skipped` : "";
    let out = `\n${passed} passed, ${failed} failed${tail}\n`;
    if (skipped.length) {
      out += `skipped: ${reasons(skipped, "marked skip by their file (the name says why) or the run's filter")}\n`;
    }
    if (failedWithout.length) out += `failed: ${reasons(failedWithout, "")}\n`;
    process.stdout.write(out);
  }
}
