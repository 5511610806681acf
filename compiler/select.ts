// Picking the model, quantization and target to work on from a loaded spec.
import { findScheme, schemeNames } from "../runtime/quant/registry.ts";
import type { CheckedModel, CheckedQuant, CheckedSpec, CheckedTarget } from "./lang/check.ts";
import { didYouMean } from "./lang/errors.ts";

/** A name on the command line that the spec does not have; the CLI reports it as a user error. */
export class SelectionError extends Error {}

export function pickModel(spec: CheckedSpec, name?: string): CheckedModel {
  if (spec.models.length === 0) throw new SelectionError(`${spec.file}: declares no model`);
  if (name === undefined) return spec.models[0]!;
  const m = spec.models.find((x) => x.name === name);
  if (!m) {
    const names = spec.models.map((x) => x.name);
    throw new SelectionError(
      `${spec.file}: no model \`${name}\` (${didYouMean(name, names) ?? `models: ${names.join(", ")}`})`,
    );
  }
  return m;
}

/** `--quant` names one of the spec's quantization blocks or a registered scheme used uniformly. */
export function pickQuant(
  spec: CheckedSpec,
  model: CheckedModel,
  name?: string,
  firstByDefault = false,
): CheckedQuant | string | undefined {
  if (name === undefined) return firstByDefault ? spec.quants.find((q) => q.model === model.name) : undefined;
  const q = spec.quants.find((x) => x.name === name && x.model === model.name);
  if (q) return q;
  if (findScheme(name)) return name.toLowerCase();
  const known = [...spec.quants.filter((x) => x.model === model.name).map((x) => x.name), ...schemeNames()];
  throw new SelectionError(
    `unknown quantization \`${name}\` (${didYouMean(name, known) ?? "known"}: ${known.join(", ")})`,
  );
}

/** Without a name: the first target whose backend has a code generator (today, cpu), if any. */
export function pickTarget(spec: CheckedSpec, name?: string): CheckedTarget | undefined {
  if (name === undefined) return spec.targets.find((t) => t.backend === "cpu");
  const t = spec.targets.find((x) => x.name === name);
  if (!t) {
    const names = spec.targets.map((x) => x.name);
    throw new SelectionError(
      `${spec.file}: no target \`${name}\` (${names.length ? `targets: ${names.join(", ")}` : "it declares none"})`,
    );
  }
  return t;
}
