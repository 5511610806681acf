// Loading a user's quantization scheme from a file (the CLI's --plugin FILE). A plugin is an ES module
// (.js, .mjs, or .ts when run through bin/moec.js, which registers tsx) that either calls
// `registerScheme` from runtime/quant or exports schemes: `export default scheme`, or named exports
// (a QuantScheme or an array of them). Exported schemes are registered if the module did not register
// them itself. Every scheme the plugin adds is checked (fields, then a self-test of encode, decode and
// cpu.dot on four blocks) before anything uses it.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
// The index registers the built-ins first, so a plugin cannot take their names.
import { findScheme, registerScheme, schemes } from "./index.ts";
import type { QuantScheme } from "./scheme.ts";
import { schemeProblems, selfTestScheme } from "./validate.ts";

/** A plugin that cannot be used; the CLI prints the message and exits 1. */
export class PluginError extends Error {
  readonly exitCode = 1;
}

const looksLikeScheme = (v: unknown): boolean =>
  v !== null &&
  typeof v === "object" &&
  ["name", "blockSize", "blockBytes", "encode", "decode", "cpu"].some((k) => k in (v as object));

/** Imports the plugin and returns the schemes it added (registered on return). */
export async function loadSchemePlugin(file: string): Promise<QuantScheme[]> {
  const path = resolve(file);
  if (!existsSync(path)) throw new PluginError(`--plugin ${file}: no such file`);
  const before = new Set(schemes());
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (e) {
    const msg = (e as Error)?.message ?? String(e);
    throw new PluginError(`--plugin ${file}: cannot load it: ${msg}`);
  }
  const added: QuantScheme[] = schemes().filter((s) => !before.has(s));
  // Exports: the default, and every named export that is (or is an array of) scheme-like objects.
  const exported: [string, unknown][] = [];
  for (const [key, value] of Object.entries(mod)) {
    const items = Array.isArray(value)
      ? value.map((v, i) => [`${key}[${i}]`, v] as const)
      : [[key, value] as const];
    for (const [where, v] of items) if (key === "default" || looksLikeScheme(v)) exported.push([where, v]);
  }
  for (const [where, v] of exported) {
    const what = where === "default" ? "its default export" : `its export \`${where}\``;
    const problems = schemeProblems(v);
    if (problems.length)
      throw new PluginError(
        `--plugin ${file}: ${what} is not a valid quantization scheme: ${problems.join("; ")}`,
      );
    const s = v as QuantScheme;
    const known = findScheme(s.name);
    if (known === s) {
      if (!added.includes(s) && !before.has(s)) added.push(s);
      continue;
    }
    if (known)
      throw new PluginError(
        `--plugin ${file}: ${what} is a scheme named \`${s.name}\`, but \`${s.name}\` is already registered`,
      );
    try {
      registerScheme(s);
    } catch (e) {
      throw new PluginError(`--plugin ${file}: ${what}: ${(e as Error).message}`);
    }
    added.push(s);
  }
  if (added.length === 0) {
    const names = Object.keys(mod);
    throw new PluginError(
      `--plugin ${file}: it registers no quantization scheme: \`export default\` a QuantScheme (name, blockSize, blockBytes, description, encode, decode, cpu.dot) or call registerScheme(scheme)${names.length ? ` (its exports: ${names.join(", ")})` : " (it exports nothing)"}`,
    );
  }
  for (const s of added) {
    const problems = selfTestScheme(s);
    if (problems.length)
      throw new PluginError(
        `--plugin ${file}: scheme \`${s.name}\` fails its self-test: ${problems.join("; ")}`,
      );
  }
  return added;
}

/** Loads each plugin in order; the schemes they added. */
export async function loadSchemePlugins(files: readonly string[]): Promise<QuantScheme[]> {
  const out: QuantScheme[] = [];
  for (const f of files) out.push(...(await loadSchemePlugin(f)));
  return out;
}
