// CI reads one plain "N passed, N failed" line; vitest's own summary is not in that form.
import type { Reporter, TestModule } from "vitest/node";

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const mod of modules) {
      const failedIn = (tests: Iterable<{ result(): { state: string } }>) =>
        [...tests].filter((t) => t.result().state === "failed").length;
      for (const test of mod.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
        else skipped++;
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
    const tail = skipped ? `, ${skipped} skipped` : "";
    process.stdout.write(`\n${passed} passed, ${failed} failed${tail}\n`);
  }
}
