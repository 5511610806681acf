// Picking the model, quantization and target a command works on from a loaded spec.
import type { CheckedModel, CheckedQuant, CheckedSpec, CheckedTarget } from "../compiler/lang/check.ts";
import { didYouMean } from "../compiler/lang/errors.ts";
import { findScheme, schemeNames } from "../runtime/quant/registry.ts";
import { UserError } from "./user-error.ts";

export function pickModel(spec: CheckedSpec, name?: string): CheckedModel {
  if (spec.models.length === 0) throw new UserError(`${spec.file}: declares no model`);
  if (name === undefined) return spec.models[0]!;
  const m = spec.models.find((x) => x.name === name);
  if (!m) {
    const names = spec.models.map((x) => x.name);
    throw new UserError(`${spec.file}: no model \`${name}\` (${didYouMean(name, names) ?? `models: ${names.join(", ")}`})`);
  }
  return m;
}

/** `--quant` names one of the spec's quantization blocks or a registered scheme used uniformly. */
export function pickQuant(spec: CheckedSpec, model: CheckedModel, name?: string): CheckedQuant | string | undefined {
  if (name === undefined) return undefined;
  const q = spec.quants.find((x) => x.name === name && x.model === model.name);
  if (q) return q;
  if (findScheme(name)) return name.toLowerCase();
  const known = [...spec.quants.filter((x) => x.model === model.name).map((x) => x.name), ...schemeNames()];
  throw new UserError(`unknown quantization \`${name}\` (${didYouMean(name, known) ?? "known"}: ${known.join(", ")})`);
}

export function pickTarget(spec: CheckedSpec, name?: string): CheckedTarget | undefined {
  if (name === undefined) return spec.targets[0];
  const t = spec.targets.find((x) => x.name === name);
  if (!t) {
    const names = spec.targets.map((x) => x.name);
    throw new UserError(`${spec.file}: no target \`${name}\` (${names.length ? `targets: ${names.join(", ")}` : "it declares none"})`);
  }
  return t;
}
