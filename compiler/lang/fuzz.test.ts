// Property: whatever a spec is mutated into, the front end returns a checked spec or throws
// SpecErrors with places in the file: never another exception, never a hang.

import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SpecErrors } from "./errors.ts";
import { compileSource } from "./frontend.ts";
import { KEYWORDS } from "./lexer.ts";

const dir = fileURLToPath(new URL("../../specs/", import.meta.url));
const seeds = readdirSync(dir)
  .filter((f) => f.endsWith(".moe"))
  .sort()
  .map((f) => readFileSync(dir + f, "utf8"));

/** Pieces of the language to splice in: keywords, punctuation, numbers, names, strings. */
const pieces = fc.constantFrom(
  ...KEYWORDS,
  "{",
  "}",
  "(",
  ")",
  "[",
  "]",
  "<-",
  "<",
  ":",
  ",",
  "=",
  "+",
  "-",
  "*",
  "/",
  ".",
  '"',
  "\\",
  "//",
  "/*",
  "*/",
  "0",
  "1e999",
  "1e-400",
  "-1",
  "99999999999999999999",
  "3.5",
  ".",
  "x",
  "layer",
  "i",
  "{i}",
  '"blk.{i}.x"',
  "moe",
  "attention",
  "swiglu",
  "top_k",
  "heads",
  "kv_heads",
  "GiB",
  "\n",
);

const noise = fc.oneof(
  pieces,
  fc.string({ unit: "binary", maxLength: 4 }),
  fc.string({ unit: "grapheme", maxLength: 4 }),
  fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), // lone surrogates, controls
);

type Mutation = (tokens: string[]) => string[];

/** Positions are fractions of the length, so one mutation fits any input. */
const at = fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true });
const index = (t: string[], f: number) => Math.floor(f * t.length);

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  at.map((f) => (t: string[]) => t.filter((_, k) => k !== index(t, f))),
  fc.tuple(at, noise).map(([f, s]) => (t: string[]) => [
    ...t.slice(0, index(t, f)),
    s,
    ...t.slice(index(t, f)),
  ]),
  fc.tuple(at, at).map(([f, g]) => (t: string[]) => {
    const [a, b] = [index(t, f), index(t, g)].sort((x, y) => x - y);
    return [...t.slice(0, b), ...t.slice(a, b), ...t.slice(b)]; // duplicate a run
  }),
  fc.tuple(at, at).map(([f, g]) => (t: string[]) => {
    const u = [...t];
    const [a, b] = [index(t, f), index(t, g)];
    [u[a], u[b]] = [u[b]!, u[a]!];
    return u;
  }),
  at.map((f) => (t: string[]) => t.slice(0, index(t, f))), // truncate
);

/** A mutated spec: cut into tokens (or single characters), mutated 1–4 times, joined back. */
const mutant = fc
  .tuple(fc.constantFrom(...seeds), fc.boolean(), fc.array(mutation, { minLength: 1, maxLength: 4 }))
  .map(([seed, byChar, ms]) => {
    let t = byChar ? [...seed] : (seed.match(/\s+|\w+|[^\w\s]/g) ?? []);
    for (const m of ms) t = m(t);
    return t.join("");
  });

function check(source: string): void {
  const start = performance.now();
  try {
    compileSource(source, "fuzz.moe");
  } catch (e) {
    if (!(e instanceof SpecErrors)) throw e;
    expect(e.errors.length).toBeGreaterThan(0);
    for (const err of e.errors) {
      expect(err.loc.file).toBe("fuzz.moe");
      expect(Number.isInteger(err.loc.line) && err.loc.line >= 1).toBe(true);
      expect(Number.isInteger(err.loc.col) && err.loc.col >= 1).toBe(true);
      expect(err.message.length).toBeGreaterThan(0);
    }
    expect(e.format()).toContain("fuzz.moe:");
  }
  expect(performance.now() - start).toBeLessThan(2000);
}

describe("fuzz", () => {
  it("mutated specs give a checked spec or SpecErrors, quickly", () => {
    fc.assert(fc.property(mutant, check), { numRuns: Number(process.env.MOEC_FUZZ_RUNS ?? 300) });
  });

  it("a few inputs that once went wrong", () => {
    for (const s of ["", "\u0000", "model", "model m {", "\uD800", '"', "/*", "target t { vram: 1e999 GiB }"])
      check(s);
  });
});
