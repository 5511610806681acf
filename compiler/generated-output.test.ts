// The committed generated/ is exactly what the compiler produces today, compiling is deterministic,
// and the generated TypeScript type-checks with zero diagnostics on its own.
import { readFileSync } from "node:fs";
import { Project, ts } from "ts-morph";
import { describe, expect, it } from "vitest";
import { compileDefault, specFiles } from "./specs.ts";

describe("generated/", () => {
  for (const file of specFiles()) {
    it(`${file} recompiles to the committed output, byte for byte`, () => {
      const c = compileDefault(file);
      for (const [name, text] of Object.entries(c.files)) {
        const committed = readFileSync(`generated/${c.model.name}/${name}`, "utf8");
        expect(text, `generated/${c.model.name}/${name} is stale: run \`npm run generate\``).toBe(committed);
      }
    });
  }

  it("compiling twice gives identical bytes", () => {
    const a = compileDefault("specs/tiny-shared-expert.moe");
    const b = compileDefault("specs/tiny-shared-expert.moe");
    expect(a.files).toEqual(b.files);
  });

  it("the generated TypeScript type-checks with zero diagnostics", () => {
    const project = new Project({
      useInMemoryFileSystem: true,
      compilerOptions: { strict: true, target: ts.ScriptTarget.ES2022, lib: ["lib.es2022.d.ts"] },
    });
    for (const file of specFiles()) {
      const c = compileDefault(file);
      project.createSourceFile(
        `${c.model.name}.ts`,
        readFileSync(`generated/${c.model.name}/model.ts`, "utf8"),
      );
    }
    const diagnostics = project.getPreEmitDiagnostics().map((d) => d.getMessageText().toString());
    expect(diagnostics).toEqual([]);
  });
});
