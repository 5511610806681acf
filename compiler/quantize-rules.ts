// `moec quantize --rules SPEC`: which scheme each checkpoint tensor gets, from a spec's quantization
// block. The spec's model names each weight's checkpoint tensor (per layer, and per expert for
// Mixtral's older layout); the block's rules pick its scheme. Under `default` (the block's own, or
// `--scheme`, which takes its place) vectors and the MoE router are left as they are, and a matrix
// whose rows do not fill the scheme's blocks falls back to one that fits; a tensor no weight of the
// spec names is treated like a `default` one.

import { perExpertTensorNames } from "../runtime/checkpoint/gguf-weights.ts";
import type { TensorChoice } from "../runtime/checkpoint/quantize.ts";
import { keptByDefault } from "../runtime/checkpoint/quantize.ts";
import { tensorName } from "../runtime/manifest.ts";
import { getScheme } from "../runtime/quant/registry.ts";
import { walk } from "./ir/graph.ts";
import type { CheckedModel, CheckedQuant } from "./lang/check.ts";

interface Named {
  key: string;
  layer: number | undefined;
  router: boolean;
}

/** Checkpoint tensor name → the spec weight (and layer) it holds. */
export function tensorsOfModel(m: CheckedModel): Map<string, Named> {
  const routers = new Set<string>();
  for (const { node } of walk(m.graph))
    if (node.op === "moe" && node.weights.router) routers.add(node.weights.router);
  const out = new Map<string, Named>();
  for (const w of m.weights.values()) {
    const group = w.group ? m.groups.get(w.group) : undefined;
    const layers = group ? [...Array(group.count).keys()] : [undefined];
    for (const layer of layers) {
      const name = tensorName(
        { tensor: w.tensor, index: group?.index, layers: 0, key: w.key, shape: w.shape, scheme: "" },
        layer,
      );
      const named = { key: w.key, layer, router: routers.has(w.key) };
      out.set(name, named);
      if (w.shape.length === 3)
        for (const p of perExpertTensorNames(name, w.shape[0]!) ?? []) out.set(p, named);
    }
  }
  return out;
}

/**
 * The choice for each tensor under `quant`'s rules; `scheme` (from --scheme) replaces the block's
 * `default`. Without either, a weight no rule names stays as it is.
 */
export function ruleChoice(
  m: CheckedModel,
  quant: CheckedQuant,
  scheme: string | undefined,
  specFile: string,
): (t: { name: string; dims: readonly number[] }) => TensorChoice {
  const byTensor = tensorsOfModel(m);
  const blockDefault = quant.decl.rules.find((r) => r.patterns.length === 0)?.scheme.name.toLowerCase();
  const fallback = scheme ?? blockDefault;
  if (fallback) getScheme(fallback);
  return (t) => {
    const w = byTensor.get(t.name);
    const explicit = w ? quant.ruleFor?.(w.key, w.layer) : undefined;
    if (explicit) {
      const where = `rule for \`${w!.key}\` in quantization \`${quant.name}\` of ${specFile}`;
      return { scheme: explicit, explicit: true, rule: where };
    }
    const why = w?.router ? "kept: the MoE router" : keptByDefault(t.name, t.dims);
    if (why) return { keep: true, why };
    if (!fallback) return { keep: true, why: "kept: no rule names it and there is no default" };
    return { scheme: fallback, explicit: false };
  };
}
