// moec in pipes, logs and scripts: every command run as a child process with its output piped (no
// terminal) writes no escape byte to stdout or stderr, even with CI set; FORCE_COLOR=1 brings colour
// back (and only colour: the same text under it); a pseudo-terminal gets colour unless NO_COLOR; --json
// is one object for every command that prints a report; the exit codes the README states.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type RandomMixtralOptions, writeRandomMixtralGguf } from "../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../runtime/checkpoint/test-support.ts";
import { wantsColor, wantsProgress } from "./color.ts";

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

const ESC = "\x1b";
const SPEC = "specs/tiny-mixtral.moe";
const BAD_SPEC = "compiler/lang/bad-specs/bad-enum.moe";

// A tiny random Mixtral-shaped checkpoint for run, quantize, import, inspect and tokenize.
const tiny: RandomMixtralOptions = {
  hidden: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 96,
  experts: 4,
  topK: 2,
  vocab: 300,
  type: "q8_0",
  seed: 5,
  headScale: 4,
};
const GGUF = join(dir, "tiny.gguf");
writeRandomMixtralGguf(GGUF, tiny);
// The demo's upcycled checkpoint goes to a cache folder of its own, not the user's.
const CACHE = join(dir, "cache");
mkdirSync(CACHE);

interface Result {
  code: number | null;
  out: string;
  err: string;
}

/** The environment of a log or a CI job: colour variables as given, CI set, a terminal type that has colour. */
function env(colour: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, CI: "1", TERM: "xterm-256color", XDG_CACHE_HOME: CACHE };
  delete e.FORCE_COLOR;
  delete e.NO_COLOR;
  return { ...e, ...colour };
}

const seen = new Map<string, Result>();

/**
 * moec with stdout and stderr piped. The same command line in the same environment runs once: tests that
 * compare one with another share the run (every command here is deterministic but for its timings).
 */
function moec(args: string[], colour: Record<string, string> = {}): Result {
  const key = JSON.stringify([args, colour]);
  const known = seen.get(key);
  if (known) return known;
  const r = spawnSync(process.execPath, ["bin/moec.js", ...args], {
    encoding: "utf8",
    timeout: 120_000,
    env: env(colour),
  });
  const result = { code: r.status, out: r.stdout, err: r.stderr };
  seen.set(key, result);
  return result;
}

const RUN = ["run", GGUF, "-p", "the", "-n", "6", "--temperature", "0"];

const strip = (s: string) => s.replace(new RegExp(`${ESC}\\[[0-9;?]*[A-Za-z]`, "g"), "");

/** Every command, with what its piped output must contain besides having no escape byte. */
const COMMANDS: { args: string[]; out?: RegExp; err?: RegExp }[] = [
  { args: ["inspect", SPEC], out: /parameters: .* total/ },
  { args: ["inspect", GGUF], out: /the file's schemes/ },
  { args: ["check", SPEC], out: /^ok\n$/ },
  { args: ["compile", SPEC, "-o", join(dir, "compiled")], out: /^compiled tiny_mixtral → / },
  { args: ["import", GGUF, "-o", join(dir, "imported.moe")], out: /^imported / },
  { args: ["import", GGUF], out: /^\/\/ Imported by `moec import`/ },
  { args: ["plan", SPEC, "--vram", "1GiB"], out: /fits\n┌/ },
  { args: ["plan", SPEC, "--table"], out: /memory to hold everything/ },
  { args: ["quantize", GGUF, "-o", join(dir, "q4.gguf"), "--scheme", "q4_0"], out: /\nwrote / },
  { args: ["schemes"], out: /q4_k/ },
  { args: ["tokenize", GGUF, "-p", "the cat"], out: /\d+ tokens\n$/ },
  { args: RUN, out: /^the/, err: /loaded in .*\n.*generated at / },
];

describe("piped, with CI set and no colour variables", () => {
  it.each(COMMANDS.map((c) => [c.args.join(" ").replaceAll(`${dir}/`, ""), c] as const))(
    "moec %s: no escape byte",
    (what, c) => {
      const r = moec(c.args);
      expect(r.code, `${what}: ${r.err}`).toBe(0);
      expect(r.out.includes(ESC), `${what}: stdout`).toBe(false);
      expect(r.err.includes(ESC), `${what}: stderr`).toBe(false);
      if (c.out) expect(r.out, what).toMatch(c.out);
      if (c.err) expect(r.err, what).toMatch(c.err);
    },
  );

  it("errors too: a bad spec (1), a broken checkpoint (2), a bad flag (1), commander's own (1)", () => {
    const broken = join(dir, "broken.gguf");
    writeFileSync(broken, Buffer.from("GGUF\x03\x00\x00\x00\xff\xff", "latin1"));
    const cases: [string[], number, RegExp][] = [
      [["check", BAD_SPEC], 1, /bad-enum\.moe:\d+:\d+: error: .*\n[\s\S]*\n1 error\n$/],
      [["inspect", broken], 2, /^error: .*broken\.gguf/],
      [["plan", SPEC, "--vram", "lots"], 1, /^error: --vram: `lots` is not a size/],
      [
        ["run", GGUF, "--vram", "1GiB", "--policy", "mru"],
        1,
        /^error: --policy: unknown expert cache policy/,
      ],
      [["inspect", SPEC, "--no-such-flag"], 1, /unknown option '--no-such-flag'/],
      [["plan", SPEC, "--vram", "1KiB"], 1, /^error: tiny_mixtral needs at least/m],
    ];
    for (const [args, code, message] of cases) {
      const r = moec(args);
      const what = `moec ${args.join(" ")}`;
      expect(r.code, `${what}: ${r.err}`).toBe(code);
      expect(r.err, what).toMatch(message);
      expect(r.out.includes(ESC) || r.err.includes(ESC), what).toBe(false);
    }
  }, 180_000);

  it("moec demo", () => {
    const r = moec(["demo", "-n", "6"]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^Once upon a time.+\n$/);
    expect(r.err).toMatch(/^upcycling stories260K.*\ndemo: .*\n[\s\S]*memory: peak/);
    expect(r.out.includes(ESC)).toBe(false);
    expect(r.err.includes(ESC)).toBe(false);
  }, 120_000);
});

describe("FORCE_COLOR=1, piped", () => {
  it("colours tables, reports and messages; the text is otherwise the same", { timeout: 180_000 }, () => {
    for (const args of [
      ["plan", SPEC, "--vram", "1GiB"],
      ["inspect", SPEC],
      ["schemes"],
      ["tokenize", GGUF, "-p", "the cat"],
    ]) {
      const plain = moec(args);
      const forced = moec(args, { FORCE_COLOR: "1" });
      const what = `moec ${args.join(" ")}`;
      expect(forced.code, `${what}: ${forced.err}`).toBe(0);
      expect(forced.out.includes(ESC), what).toBe(true);
      expect(strip(forced.out), what).toBe(plain.out);
    }
    // The table's borders are grey; "fits" is green.
    const plan = moec(["plan", SPEC, "--vram", "1GiB"], { FORCE_COLOR: "1" }).out;
    expect(plan).toContain("\x1b[32mfits\x1b[39m");
    expect(plan).toMatch(new RegExp(`${ESC}\\[90m┌─+┬`));
  });

  it("colours stderr's messages and errors, and still draws no progress bar into a pipe", {
    timeout: 120_000,
  }, () => {
    const bad = moec(["check", BAD_SPEC], { FORCE_COLOR: "1" });
    expect(bad.code).toBe(1);
    expect(bad.err).toContain(`${ESC}[31m1 error`);
    expect(strip(bad.err)).toBe(moec(["check", BAD_SPEC]).err);

    // run's notes on stderr are dim; the generated text is as it is.
    const run = moec(RUN, { FORCE_COLOR: "1" });
    expect(run.code, run.err).toBe(0);
    expect(run.err).toMatch(new RegExp(`${ESC}\\[2m.*loaded in`));
    expect(run.out).toBe(moec(RUN).out);

    const q = moec(["quantize", GGUF, "-o", join(dir, "q8.gguf"), "--scheme", "q8_0"], { FORCE_COLOR: "1" });
    expect(q.code, q.err).toBe(0);
    expect(q.out).toContain(`${ESC}[32mwrote`);
    expect(q.err).toBe("");
  });
});

// `script` runs a command on a pseudo-terminal: what a user at a terminal sees.
const hasScript = existsSync("/usr/bin/script");
describe.skipIf(!hasScript)("on a terminal", () => {
  function onTerminal(args: string[], colour: Record<string, string> = {}): string {
    const command = ["bin/moec.js", ...args].map((a) => `'${a}'`).join(" ");
    const r = spawnSync("/usr/bin/script", ["-qec", `${process.execPath} ${command}`, "/dev/null"], {
      encoding: "utf8",
      timeout: 120_000,
      env: { ...env(colour), CI: "" },
    });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout;
  }

  it("colours without being asked; NO_COLOR or FORCE_COLOR=0 turn it off", { timeout: 120_000 }, () => {
    const coloured = onTerminal(["plan", SPEC, "--vram", "1GiB"]);
    expect(coloured).toContain("\x1b[32mfits\x1b[39m");
    for (const colour of [{ NO_COLOR: "1" }, { FORCE_COLOR: "0" }] as Record<string, string>[]) {
      const plain = onTerminal(["plan", SPEC, "--vram", "1GiB"], colour);
      expect(plain).toMatch(/fits/);
      expect(plain.includes(ESC), JSON.stringify(colour)).toBe(false);
    }
  });
});

describe("the colour decision (cli/color.ts)", () => {
  const tty = { isTTY: true };
  const pipe = { isTTY: false };
  it("a terminal, unless NO_COLOR or TERM=dumb; FORCE_COLOR first, 0 and false meaning off", () => {
    expect(wantsColor(tty, {})).toBe(true);
    expect(wantsColor(pipe, {})).toBe(false);
    expect(wantsColor(pipe, { CI: "1" })).toBe(false);
    expect(wantsColor(tty, { NO_COLOR: "1" })).toBe(false);
    expect(wantsColor(tty, { NO_COLOR: "" })).toBe(true);
    expect(wantsColor(tty, { TERM: "dumb" })).toBe(false);
    expect(wantsColor(pipe, { FORCE_COLOR: "1" })).toBe(true);
    expect(wantsColor(pipe, { FORCE_COLOR: "3" })).toBe(true);
    expect(wantsColor(pipe, { FORCE_COLOR: "true" })).toBe(true);
    expect(wantsColor(pipe, { FORCE_COLOR: "1", NO_COLOR: "1" })).toBe(true);
    expect(wantsColor(tty, { FORCE_COLOR: "0" })).toBe(false);
    expect(wantsColor(tty, { FORCE_COLOR: "false" })).toBe(false);
    expect(wantsColor(tty, { FORCE_COLOR: "" })).toBe(true);
    expect(wantsColor(pipe, { FORCE_COLOR: "" })).toBe(false);
  });

  it("a progress bar only on a terminal that can move the cursor, whatever FORCE_COLOR says", () => {
    expect(wantsProgress(tty, {})).toBe(true);
    expect(wantsProgress(tty, { NO_COLOR: "1" })).toBe(true);
    expect(wantsProgress(tty, { TERM: "dumb" })).toBe(false);
    expect(wantsProgress(pipe, { FORCE_COLOR: "1" })).toBe(false);
  });
});

describe("--json: one object from every command that prints a report", { timeout: 120_000 }, () => {
  const json = (args: string[]) => {
    const r = moec([...args, "--json"]);
    expect(r.out.includes(ESC) || r.err.includes(ESC), args.join(" ")).toBe(false);
    return { ...r, value: JSON.parse(r.out) };
  };

  it("check, ok and not", () => {
    const ok = json(["check", SPEC]);
    expect(ok.code).toBe(0);
    expect(ok.value).toMatchObject({ ok: true, file: SPEC, models: ["tiny_mixtral"], errors: [] });
    const bad = json(["check", BAD_SPEC]);
    expect(bad.code).toBe(1);
    expect(bad.err).toBe("");
    expect(bad.value.ok).toBe(false);
    expect(bad.value.errors).toHaveLength(1);
    expect(bad.value.errors[0]).toMatchObject({ file: BAD_SPEC, message: expect.stringMatching(/neox/) });
    expect(bad.value.errors[0].line).toBeGreaterThan(1);
  });

  it("compile, with and without --dump-ir", () => {
    const out = join(dir, "compiled-json");
    const r = json(["compile", SPEC, "-o", out]);
    expect(r.code, r.err).toBe(0);
    expect(r.value).toMatchObject({
      model: "tiny_mixtral",
      out,
      files: ["README.md", "model.js", "model.ts", "plan.json"],
      backend: "cpu",
    });
    expect(r.value.ops_after).toBeLessThan(r.value.ops_before);
    expect(r.value.kernels).toBeGreaterThan(0);
    expect(r.value.arena_bytes).toBeGreaterThan(0);
    expect(r.value.ir).toBeUndefined();
    const dumped = json(["compile", SPEC, "-o", out, "--dump-ir=fuse"]);
    expect(dumped.value.ir).toContain(";; after fuse");
  });

  it("import, to a file and to stdout", () => {
    const file = join(dir, "imported-json.moe");
    const r = json(["import", GGUF, "-o", file]);
    expect(r.code, r.err).toBe(0);
    expect(r.value).toMatchObject({
      format: "gguf",
      out: file,
      layers: tiny.layers,
      hidden: tiny.hidden,
      heads: tiny.heads,
      kv_heads: tiny.kvHeads,
      experts: tiny.experts,
      top_k: tiny.topK,
      vocab: tiny.vocab,
    });
    expect(existsSync(file)).toBe(true);
    const printed = json(["import", GGUF]);
    expect(printed.value.spec).toBe(moec(["import", GGUF]).out);
  });

  it("plan --table, schemes", () => {
    const t = json(["plan", SPEC, "--table"]);
    expect(t.code, t.err).toBe(0);
    expect(t.value.model).toBe("tiny_mixtral");
    const q4 = t.value.schemes.find((s: { name: string }) => s.name === "q4_k");
    expect(q4.bits_per_weight).toBe(4.5);
    expect(q4.bytes).toHaveLength(t.value.contexts.length);
    const s = json(["schemes"]);
    expect(s.value.schemes.map((x: { name: string }) => x.name)).toContain("q8_0");
  });

  it("run: the same tokens as the streamed text", () => {
    const r = json(RUN);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toBe("");
    expect(r.value.tokens).toHaveLength(6);
    expect(moec(RUN).out).toBe(`the${r.value.text}\n`);
  });

  it("demo", () => {
    const r = json(["demo", "-n", "4"]);
    expect(r.code, r.err).toBe(0);
    expect(r.value.tokens).toHaveLength(4);
    expect(r.value.demo).toMatchObject({ experts: 8, top_k: 2, device_experts_per_layer: 3 });
    expect(r.value.memory.expert_misses).toBeGreaterThan(0);
  }, 120_000);
});
