// The one place schemes are found by name or GGUF type id. Built-ins register on import;
// a user's scheme registers itself the same way (see examples/custom-quant).
import type { QuantScheme } from "./scheme.ts";
import { InvalidSchemeError, schemeProblems } from "./validate.ts";

const byName = new Map<string, QuantScheme>();

export class UnknownSchemeError extends Error {
  constructor(readonly schemeName: string) {
    super(`unknown quantization scheme \`${schemeName}\` (known: ${schemeNames().join(", ")})`);
  }
}

/**
 * Adds a scheme. Throws InvalidSchemeError naming every missing or wrong field, or when the name or
 * GGUF type id is taken by another scheme.
 */
export function registerScheme(s: QuantScheme): void {
  const problems = schemeProblems(s);
  const where = typeof s?.name === "string" ? `scheme \`${s.name}\`` : "the scheme";
  if (problems.length) throw new InvalidSchemeError(where, problems);
  if (byName.has(s.name)) throw new Error(`scheme \`${s.name}\` is already registered`);
  if (s.ggmlType !== undefined) {
    const other = schemeByGgmlType(s.ggmlType);
    if (other) throw new Error(`scheme \`${s.name}\`: ggml type ${s.ggmlType} is already \`${other.name}\``);
  }
  byName.set(s.name, s);
}

export function findScheme(name: string): QuantScheme | undefined {
  return byName.get(name.toLowerCase());
}

export function getScheme(name: string): QuantScheme {
  const s = findScheme(name);
  if (!s) throw new UnknownSchemeError(name);
  return s;
}

export function schemeByGgmlType(type: number): QuantScheme | undefined {
  for (const s of byName.values()) if (s.ggmlType === type) return s;
  return undefined;
}

export function schemeNames(): string[] {
  return [...byName.keys()];
}

export function schemes(): QuantScheme[] {
  return [...byName.values()];
}
