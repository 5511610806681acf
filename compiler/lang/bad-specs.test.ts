// The corpus of bad specs: each file in bad-specs/ starts with the errors it must give, in order:
//   // expect: LINE:COL: part of the message
//   // hint: part of that error's hint        (optional, for the expect line above it)
// and the front end must report exactly those, as SpecErrors, and nothing else.
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { SpecErrors } from "./errors.ts";
import { compileSource } from "./frontend.ts";

const dir = fileURLToPath(new URL("./bad-specs/", import.meta.url));
const root = fileURLToPath(new URL("../../", import.meta.url));
const files = readdirSync(dir)
  .filter((f) => f.endsWith(".moe"))
  .sort();

interface Expected {
  line: number;
  col: number;
  message: string;
  hint?: string;
}

function expectations(source: string, file: string): Expected[] {
  const out: Expected[] = [];
  for (const line of source.split("\n")) {
    const e = /^\/\/ expect: (\d+):(\d+): (.+)$/.exec(line);
    const h = /^\/\/ hint: (.+)$/.exec(line);
    if (e) out.push({ line: Number(e[1]), col: Number(e[2]), message: e[3]! });
    else if (h && out.length) out.at(-1)!.hint = h[1];
    else break;
  }
  if (!out.length) throw new Error(`${file} does not start with an \`// expect: LINE:COL: message\` line`);
  return out;
}

/** What compileSource throws, or a failure when it returns or throws something else. */
function errorsOf(source: string, file: string): SpecErrors {
  let thrown: unknown;
  try {
    compileSource(source, file);
  } catch (e) {
    thrown = e;
  }
  expect(thrown, `${file} compiled without errors`).toBeDefined();
  if (!(thrown instanceof SpecErrors)) throw new Error(`${file}: expected SpecErrors, got ${String(thrown)}`);
  return thrown;
}

describe("bad specs", () => {
  it("cover what the issue lists", () => {
    const required = [
      "syntax-missing-brace",
      "syntax-stray-token",
      "syntax-unterminated-string",
      "syntax-bad-character",
      "syntax-several-errors",
      "undefined-name-typo",
      "shape-wo-transposed",
      "heads-not-divisible",
      "head-dim-mismatch",
      "rope-width",
      "top-k-greater-than-experts",
      "non-integer-dimension",
      "unknown-op",
      "unknown-argument",
      "unknown-scheme",
      "pattern-matches-nothing",
      "param-cycle",
      "target-unknown-property",
      "target-bad-unit",
      "index-outside-loop",
      "loop-count-mismatch",
      "duplicate-param",
    ];
    for (const name of required) expect(files).toContain(`${name}.moe`);
  });

  it.each(files)("%s gives exactly its expected errors", (f) => {
    const source = readFileSync(dir + f, "utf8");
    const want = expectations(source, f);
    const got = errorsOf(source, f).errors;
    const shown = got.map(
      (e) => `${e.loc.line}:${e.loc.col}: ${e.message}${e.hint ? ` (hint: ${e.hint})` : ""}`,
    );
    expect(got.length, `errors of ${f}:\n${shown.join("\n")}`).toBe(want.length);
    want.forEach((w, i) => {
      const e = got[i]!;
      expect(e.loc.file).toBe(f);
      expect(`${e.loc.line}:${e.loc.col}`, shown[i]).toBe(`${w.line}:${w.col}`);
      expect(e.message).toContain(w.message);
      if (w.hint) expect(e.hint ?? "").toContain(w.hint);
      expect(e.format(source)).toContain(`${f}:${w.line}:${w.col}: error: `);
    });
  });

  it("the message for a typo names the right name", () => {
    const e = errorsOf(readFileSync(`${dir}undefined-name-typo.moe`, "utf8"), "t.moe").errors[0]!;
    expect(e.hint).toBe("did you mean `kv_heads`?");
  });

  it("an unknown scheme lists the known ones", () => {
    for (const f of ["unknown-scheme.moe", "unknown-scheme-far.moe"]) {
      const e = errorsOf(readFileSync(dir + f, "utf8"), f).errors[0]!;
      for (const s of ["f32", "f16", "q8_0", "q4_k", "q6_k"]) expect(`${e.message} ${e.hint}`).toContain(s);
    }
  });

  it("the CLI exits non-zero with file:line:col and no stack trace", () => {
    for (const [f, where] of [
      ["syntax-several-errors.moe", ":14:12: error: "],
      ["shape-wo-transposed.moe", ":31:85: error: "],
    ] as const) {
      const path = `compiler/lang/bad-specs/${f}`;
      const r = spawnSync(process.execPath, ["bin/moec.js", "check", path], { cwd: root, encoding: "utf8" });
      expect(r.status, r.stderr).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain(`${path}${where}`);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(r.stderr).not.toContain("internal error");
    }
  });
});
