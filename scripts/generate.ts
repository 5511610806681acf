// npm run generate: recompiles every spec in specs/ into generated/<model>/ (committed; a test
// fails when they differ).
import { compileDefault, specFiles } from "../compiler/specs.ts";
import { writeDirAtomic } from "../runtime/atomic.ts";

for (const file of specFiles()) {
  const c = compileDefault(file);
  writeDirAtomic(`generated/${c.model.name}`, c.files);
  console.log(`${file} → generated/${c.model.name}/ (${c.summary.kernels} kernels)`);
}
