// How each spec in specs/ is compiled into generated/: its first quantization block and its first
// cpu target, exactly what `moec compile SPEC` does with no flags.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { type Compiled, compileModel } from "./compile.ts";
import { loadSpec } from "./lang/frontend.ts";
import { pickQuant, pickTarget } from "./select.ts";

export function specFiles(dir = "specs"): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".moe"))
    .sort()
    .map((f) => join(dir, f));
}

export function compileDefault(file: string): Compiled {
  const spec = loadSpec(file);
  const model = spec.models[0]!;
  return compileModel(spec, model, {
    quant: pickQuant(spec, model, undefined, true),
    target: pickTarget(spec),
  });
}
