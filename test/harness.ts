// Shared by tests and the bench: compile a spec in memory, give it random weights, and run the
// generated model beside the reference executor on the same weights.
import { type Compiled, compileModel } from "../compiler/compile.ts";
import { loadSpec } from "../compiler/lang/frontend.ts";
import type { Quant } from "../compiler/pipeline.ts";
import { ReferenceModel } from "../compiler/reference/executor.ts";
import type { KvType } from "../runtime/kv-type.ts";
import { importModuleSource, ModelInstance } from "../runtime/model.ts";
import { randomWeights } from "../runtime/weights.ts";

export interface Pair {
  compiled: Compiled;
  generated: ModelInstance;
  reference: ReferenceModel;
}

export async function compileAndLoad(
  specPath: string,
  quant: Quant,
  seed = 7,
  maxContext?: number,
  threads = 1,
  kvType?: KvType,
): Promise<Pair> {
  const spec = loadSpec(specPath);
  const compiled = compileModel(spec, spec.models[0]!, { quant, maxContext, kvType });
  const weights = randomWeights(compiled.manifest, { seed });
  const module = await importModuleSource(compiled.files["model.js"]!);
  const generated = new ModelInstance(module, weights, { threads });
  // The reference runs the unfused graph: the stage right before fusion.
  const unfused = compiled.stages.find((s) => s.pass === "dce")!.graph;
  const reference = new ReferenceModel(unfused, compiled.manifest, weights);
  return { compiled, generated, reference };
}

/** Largest |a − b| relative to the size of b's entries (at least 1). */
export function relativeError(a: Float32Array, b: Float32Array): number {
  let scale = 1;
  let err = 0;
  for (let i = 0; i < b.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]!));
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
  }
  return err / scale;
}
