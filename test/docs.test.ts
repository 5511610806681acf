// Runs every command README.md and docs/*.md show, so the documentation cannot drift from the code. The
// conventions (also in docs/ARCHITECTURE.md, "Docs that run"):
//
//   ```sh            each line not starting with `#` is run by bash from the repository root, with NO_COLOR=1; it
//                    must exit 0, or N where the line ends in `# exit N`.
//   ```sh gpu        the same where a WebGPU adapter exists (test/machine.ts); skipped, and said so, elsewhere.
//   ```sh not-run    shown only: installing, the test suite itself, benchmarks. Each is listed in NOT_RUN below.
//   ```text          right after a run block: what its commands print (stdout and stderr together). Every line
//                    shown must be a whole line of that output, `…` standing for any text within the line.
//   ```moe           a complete spec: it must pass the checker. ```moe fragment is a part of one, not checked.
//
// The README's 60-second tour is run by test/readme-tour.test.ts, with its own checks, so it is left out here.
// docs/language.md must describe every built-in op of compiler/lang/ops.ts and each of its arguments, and every
// relative link must lead to a file and, with #anchor, to one of its headings.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileSource } from "../compiler/lang/frontend.ts";
import { ops } from "../compiler/lang/ops.ts";
import { needsWebGpu } from "./machine.ts";

/** Commands shown but not run, and why; keep this list short. */
const NOT_RUN: Record<string, string> = {
  "npm ci && ./bin/moec.js demo": "installs packages (the demo itself is run from docs/commands.md)",
  "npm test": "is the test suite this test is part of",
  "npm run bench": "a benchmark of several minutes",
  "npx tsx bench/llama.ts f32 q8_0 q4_0 q4_k": "a benchmark of several minutes",
  "MOEC_LLAMA_QUANTIZE=/path/to/llama-quantize npx tsx bench/presets.ts":
    "a benchmark of several minutes that needs a built llama-quantize",
  "MOEC_LLAMA_QUANTIZE=/path/to/llama-quantize npx tsx bench/batched.ts BENCH-Q8_0.gguf PRESET-Q4_K_M.gguf":
    "a benchmark of several minutes that needs llama.cpp's tools built and the bench's files",
  "node --cpu-prof --cpu-prof-dir=prof --import tsx bench/prefill-profile.ts ~/.cache/moec/presets-h640-l6-e8-s2026.Q4_K_M.gguf 20 1 prof/kernels.wasm":
    "a profile of a file bench/presets.ts writes (with a built llama-quantize)",
  "./bin/moec.js serve models/stories260K.gguf --parallel 4 --chat-template template.jinja":
    "a server runs until stopped; cli/commands/serve.test.ts starts, uses and stops it",
  "./bin/moec.js chat models/stories260K.gguf --chat-template template.jinja":
    "interactive; cli/commands/chat.test.ts runs it in a pseudo-terminal",
};

interface Block {
  file: string;
  line: number;
  info: string[];
  body: string;
  /** The ```text block right after it, if any. */
  output?: string;
  /** The `## ` heading it is under. */
  section: string;
  endLine: number;
}

function blocks(file: string): Block[] {
  const lines = readFileSync(file, "utf8").split("\n");
  const out: Block[] = [];
  let section = "";
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.startsWith("## ")) section = l.slice(3);
    const open = /^```(\S.*)?$/.exec(l);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    while (++i < lines.length && lines[i] !== "```") body.push(lines[i]!);
    const info = (open[1] ?? "").split(/\s+/).filter(Boolean);
    const prev = out.at(-1);
    const gap = lines.slice((prev?.endLine ?? 0) + 1, start).every((s) => s.trim() === "");
    if (info[0] === "text" && prev && gap && prev.info[0] === "sh") prev.output = body.join("\n");
    out.push({ file, line: start + 1, info, body: body.join("\n"), section, endLine: i });
  }
  return out;
}

const files = ["README.md", ...readdirSync("docs").map((f) => `docs/${f}`)].filter((f) => f.endsWith(".md"));
const all = files.flatMap(blocks);
const commandsOf = (b: Block) => b.body.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#"));
const isTour = (b: Block) => b.file === "README.md" && b.section === "A 60-second tour";

/** A shown line as a whole-line pattern: `…` is any text, trailing spaces do not count. */
function linePattern(shown: string): RegExp {
  const parts = shown
    .trimEnd()
    .split("…")
    .map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${parts.join(".*")}$`);
}

beforeAll(() => rmSync("out/docs", { recursive: true, force: true }));
afterAll(() => rmSync("out/docs", { recursive: true, force: true }));

describe("every command the docs show", () => {
  const run = all.filter((b) => b.info[0] === "sh" && !b.info.includes("not-run") && !isTour(b));
  for (const b of run) {
    const gpu = b.info.includes("gpu");
    it(`${b.file}:${b.line}: ${commandsOf(b)[0]}`, { ...needsWebGpu(gpu), timeout: 300_000 }, () => {
      let printed = "";
      for (const cmd of commandsOf(b)) {
        const want = Number(/#\s*exit (\d+)\s*$/.exec(cmd)?.[1] ?? 0);
        const r = spawnSync("bash", ["-c", cmd], {
          encoding: "utf8",
          timeout: 240_000,
          env: { ...process.env, NO_COLOR: "1", FORCE_COLOR: "" },
        });
        expect(r.status, `${cmd}\n${r.stdout}\n${r.stderr}`).toBe(want);
        printed += `${r.stdout}\n${r.stderr}\n`;
      }
      const actual = printed.split("\n").map((l) => l.trimEnd());
      for (const shown of (b.output ?? "").split("\n").filter((l) => l.trim() !== "")) {
        const p = linePattern(shown);
        expect(
          actual.some((l) => p.test(l)),
          `${b.file}: the shown line\n${shown}\nis not in the output:\n${printed}`,
        ).toBe(true);
      }
    });
  }

  it("shows few commands it does not run, each listed with its reason", () => {
    const notRun = all.filter((b) => b.info[0] === "sh" && b.info.includes("not-run")).flatMap(commandsOf);
    for (const cmd of notRun) {
      const bare = cmd.replace(/\s+#.*$/, "");
      expect(NOT_RUN[bare], `${bare}: run it, or list it in NOT_RUN with why`).toBeDefined();
    }
    expect(run.length).toBeGreaterThan(10);
  });
});

describe("the docs' specs and ops", () => {
  for (const b of all.filter((b) => b.info[0] === "moe" && !b.info.includes("fragment"))) {
    it(`${b.file}:${b.line}: the spec checks`, () => {
      expect(() => compileSource(b.body, `${b.file}:${b.line}`)).not.toThrow();
    });
  }

  it("every relative link leads to a file and a heading", () => {
    const slug = (h: string) =>
      h
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, "")
        .replace(/ /g, "-");
    for (const file of files) {
      const text = readFileSync(file, "utf8").replace(/```[\s\S]*?```/g, "");
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue;
        const [path, anchor] = target!.split("#");
        const to = path ? join(dirname(file), path) : file;
        expect(existsSync(to), `${file}: link to ${target}`).toBe(true);
        if (!anchor) continue;
        const headings = [...readFileSync(to, "utf8").matchAll(/^#+ (.*)$/gm)].map((m) => slug(m[1]!));
        expect(headings, `${file}: link to ${target}`).toContain(anchor);
      }
    }
  });

  it("docs/language.md describes every built-in op and its arguments", () => {
    const guide = readFileSync("docs/language.md", "utf8");
    for (const op of Object.values(ops)) {
      const at = guide.indexOf(`- **\`${op.name}\`**`);
      expect(at, `docs/language.md: no entry "- **\`${op.name}\`**"`).toBeGreaterThanOrEqual(0);
      const entry = guide.slice(at, guide.indexOf("\n- **", at + 1));
      for (const a of op.args) {
        expect(entry, `docs/language.md: ${op.name}'s argument \`${a.name}\``).toContain(`\`${a.name}\``);
      }
    }
  });
});
