// What `moec run` runs: a compiled directory, a spec compiled in memory, or, given only a
// checkpoint, a spec imported from its metadata and compiled in memory. Schemes come from the file.
import { existsSync, statSync } from "node:fs";
import { compileModel } from "../compiler/compile.ts";
import { importGguf } from "../compiler/import.ts";
import type { CheckedModel, CheckedQuant } from "../compiler/lang/check.ts";
import { compileSource, loadSpec } from "../compiler/lang/frontend.ts";
import { pickModel } from "../compiler/select.ts";
import type { GgufFile } from "../runtime/checkpoint/gguf-read.ts";
import { openGguf } from "../runtime/checkpoint/gguf-read.ts";
import { GgufWeights } from "../runtime/checkpoint/gguf-weights.ts";
import { tensorName } from "../runtime/manifest.ts";
import { type CompiledModule, importModuleDir, importModuleSource } from "../runtime/model.ts";
import { UserError } from "./user-error.ts";

export interface Loaded {
  module: CompiledModule;
  weights: GgufWeights;
  file: GgufFile;
  /** How the model was obtained, for --json and the banner. */
  origin: string;
}

/** A quantization that gives each weight the type its tensor has in the file. */
function fromFile(m: CheckedModel, file: GgufFile): CheckedQuant {
  return {
    decl: {
      kind: "quantization",
      name: "from_file",
      loc: m.decl.loc,
      model: { name: m.name, loc: m.decl.loc },
      rules: [],
    },
    name: "from_file",
    model: m.name,
    schemeFor(key, layer) {
      const w = m.weights.get(key)!;
      const index = w.group ? m.groups.get(w.group)!.index : undefined;
      const name = tensorName({ ...w, index, layers: 0, scheme: "" }, w.group ? (layer ?? 0) : undefined);
      // A tensor missing here is reported with its name by GgufWeights; f32 keeps compiling until then.
      return file.findTensor(name)?.scheme.name ?? "f32";
    },
  };
}

export async function loadForRun(
  source: string | undefined,
  weightsPath: string,
  maxContext?: number,
): Promise<Loaded> {
  if (!existsSync(weightsPath)) throw new UserError(`${weightsPath}: no such file`, 2);
  const file = openGguf(weightsPath);
  try {
    let module: CompiledModule;
    let origin: string;
    if (source !== undefined && existsSync(source) && statSync(source).isDirectory()) {
      module = await importModuleDir(source);
      origin = `compiled ${source}`;
    } else {
      let model: CheckedModel;
      let spec: ReturnType<typeof loadSpec>;
      if (source === undefined) {
        const imported = importGguf(file);
        spec = compileSource(imported.source, `${weightsPath} (imported)`);
        origin = `imported from ${weightsPath}`;
      } else {
        spec = loadSpec(source);
        origin = source;
      }
      model = pickModel(spec);
      const c = compileModel(spec, model, { quant: fromFile(model, file), maxContext });
      module = await importModuleSource(c.files["model.js"]!);
    }
    return { module, weights: new GgufWeights(file, module.manifest), file, origin };
  } catch (e) {
    file.close();
    throw e;
  }
}
