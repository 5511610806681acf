// ts-morph assembles the generated module: it must type-check with zero diagnostics, is formatted
// the same way every time, and is emitted to JavaScript the runtime can import.
import { Project, ts } from "ts-morph";

export interface Assembled {
  ts: string;
  js: string;
}

export class GeneratedCodeError extends Error {}

export function assemble(source: string, fileName = "model.ts"): Assembled {
  const project = new Project({
    useInMemoryFileSystem: true,
    compilerOptions: {
      strict: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ES2022,
      lib: ["lib.es2022.d.ts"],
      declaration: false,
      removeComments: false,
    },
  });
  const file = project.createSourceFile(fileName, source);
  file.formatText({ indentSize: 2, convertTabsToSpaces: true, semicolons: ts.SemicolonPreference.Insert });
  const diagnostics = project.getPreEmitDiagnostics();
  if (diagnostics.length) {
    throw new GeneratedCodeError(
      `generated code does not type-check (a compiler bug):\n${project.formatDiagnosticsWithColorAndContext(diagnostics.slice(0, 10))}`,
    );
  }
  const out = project.emitToMemory().getFiles();
  const js = out.find((f) => f.filePath.endsWith(".js"));
  if (!js) throw new GeneratedCodeError("ts-morph emitted no JavaScript");
  return { ts: file.getFullText(), js: js.text };
}
