// `moec chat` in a pseudo-terminal (util-linux `script`): replies stream, Ctrl-C stops one and keeps
// what was said in the history, /reset forgets it, Ctrl-C at the prompt and /exit leave. What the
// terminal shows is checked against the library's greedy answers for the same conversation.
import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ChatMessage, loadModel, type Model } from "../../api/index.ts";

const GGUF = "models/stories260K.gguf";
const TEMPLATE = "{% for m in messages %}{{ m.content }}\n{% endfor %}";
const template = join(tmpdir(), `moec-chat-${process.pid}.jinja`);
const hasScript = spawnSync("script", ["--version"]).status === 0;

/** Terminal escape sequences (cursor moves, colours), built from ESC rather than written as a control character. */
const ESCAPES = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, "g");

/** A terminal session: what it showed (escape sequences and \r removed), and typing into it. */
class Terminal {
  readonly p: ChildProcessWithoutNullStreams;
  shown = "";
  readonly exited: Promise<number | null>;
  constructor(args: string[]) {
    const cmd = [process.execPath, "bin/moec.js", "chat", GGUF, ...args].map((a) => `'${a}'`).join(" ");
    this.p = spawn("script", ["-qfec", cmd, "/dev/null"], { env: { ...process.env, COLUMNS: "1000" } });
    this.p.stdout.on("data", (d: Buffer) => {
      this.shown += d.toString().replace(ESCAPES, "").replace(/\r/g, "");
    });
    this.exited = new Promise((resolve) => this.p.on("exit", (code) => resolve(code)));
  }
  type(s: string): void {
    this.p.stdin.write(s);
  }
  /** Waits until what was shown after `from` matches. */
  async until(test: (after: string) => boolean, from: number, what: string): Promise<string> {
    for (let i = 0; i < 1200; i++) {
      const after = this.shown.slice(from);
      if (test(after)) return after;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`timed out waiting for ${what}; the terminal showed:\n${this.shown}`);
  }
  /** Types a message, lets at least `chars` of the reply appear, presses Ctrl-C: the reply shown. */
  async interrupt(message: string, chars = 30): Promise<string> {
    const from = this.shown.length;
    this.type(`${message}\r`);
    const echo = `${message}\n`;
    await this.until(
      (a) => a.indexOf(echo) >= 0 && a.length - a.indexOf(echo) - echo.length >= chars,
      from,
      "a reply",
    );
    this.type("\x03");
    const after = await this.until((a) => /\(stopped\)\n> $/.test(a), from, "(stopped)");
    return after.slice(after.indexOf(echo) + echo.length, after.lastIndexOf("(stopped)")).replace(/\n$/, "");
  }
}

let model: Model;
beforeAll(async () => {
  writeFileSync(template, TEMPLATE);
  model = await loadModel(GGUF, { threads: 1, chatTemplate: TEMPLATE });
}, 60_000);
afterAll(() => model?.close());

/** The library's greedy reply to a conversation, as the chat shows it. */
const reply = async (messages: ChatMessage[]) =>
  (await model.completeChat(messages, { temperature: 0, maxTokens: 400 })).text.trimStart();

describe.skipIf(!hasScript)("moec chat in a terminal", () => {
  it("streams replies; Ctrl-C stops one (kept in the history); /reset forgets; Ctrl-C at the prompt exits", async () => {
    const t = new Terminal([
      "--chat-template",
      template,
      "--threads",
      "1",
      "--temperature",
      "0",
      "-n",
      "1500",
    ]);
    await t.until((a) => a.endsWith("> "), 0, "the prompt");
    expect(t.shown).toMatch(/Ctrl-C stops a reply, \/reset forgets, \/exit or Ctrl-D leaves/);

    const first = await t.interrupt("Once upon a time");
    const full = await reply([{ role: "user", content: "Once upon a time" }]);
    expect(first.length).toBeGreaterThanOrEqual(30);
    expect(full.startsWith(first) || first.startsWith(full)).toBe(true);

    // The next reply continues the conversation, the stopped reply included.
    const second = await t.interrupt("The end");
    const withHistory = await reply([
      { role: "user", content: "Once upon a time" },
      { role: "assistant", content: first },
      { role: "user", content: "The end" },
    ]);
    expect(withHistory.startsWith(second) || second.startsWith(withHistory)).toBe(true);

    let from = t.shown.length;
    t.type("/reset\r");
    await t.until((a) => /\(the conversation is forgotten\)\n> $/.test(a), from, "the reset");
    const again = await t.interrupt("Once upon a time");
    expect(full.startsWith(again) || again.startsWith(full)).toBe(true);

    from = t.shown.length;
    t.type("\x03");
    expect(await t.exited).toBe(0);
  }, 120_000);

  it("/exit leaves; a model without a chat template is refused", async () => {
    const t = new Terminal(["--chat-template", template, "--threads", "1"]);
    await t.until((a) => a.endsWith("> "), 0, "the prompt");
    t.type("/exit\r");
    expect(await t.exited).toBe(0);
    const r = spawnSync(process.execPath, ["bin/moec.js", "chat", GGUF], { encoding: "utf8", input: "" });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/has no chat template: give one with --chat-template FILE/);
  }, 120_000);
});
