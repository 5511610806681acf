// `moec serve` as a process: its banner and per-request log lines, flag errors, and a clean stop on
// SIGTERM with a request still streaming.
import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";

const GGUF = "models/stories260K.gguf";

it("refuses bad flags and files before listening", () => {
  const moec = (...args: string[]) =>
    spawnSync(process.execPath, ["bin/moec.js", "serve", ...args], { encoding: "utf8", timeout: 60_000 });
  let r = moec(GGUF, "--parallel", "0");
  expect([r.status, r.stderr.trim()]).toEqual([
    1,
    "error: --parallel: expected a whole number from 1 to 256, found `0`",
  ]);
  r = moec("models/none.gguf");
  expect([r.status, r.stderr.trim()]).toEqual([2, "error: models/none.gguf: no such file or folder"]);
  r = moec(GGUF, "--chat-template", "models/none.jinja");
  expect([r.status, r.stderr.trim()]).toEqual([
    2,
    "error: --chat-template: cannot read models/none.jinja (ENOENT)",
  ]);
}, 60_000);

it("serves, logs a line per request, and stops cleanly on SIGTERM mid-stream", async () => {
  const template = join(tmpdir(), `moec-serve-${process.pid}.jinja`);
  writeFileSync(template, "{% for m in messages %}{{ m.content }}\n{% endfor %}");
  const p = spawn(
    process.execPath,
    [
      "bin/moec.js",
      "serve",
      GGUF,
      "--port",
      "0",
      "--threads",
      "1",
      "--parallel",
      "2",
      "--api-key",
      "k",
      "--chat-template",
      template,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => p.on("exit", (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    p.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m) resolve(m[1]!);
    });
    p.on("exit", () => reject(new Error(stderr)));
  });
  expect(stderr).toMatch(
    /llama \(imported from models\/stories260K\.gguf\), 2 sequence slots of 2048 tokens, queue 64/,
  );
  const headers = { authorization: "Bearer k", "content-type": "application/json" };
  const chat = await fetch(`${url}/chat/completions`, {
    method: "POST",
    headers,
    body: JSON.stringify({
      messages: [{ role: "user", content: "Once upon a time" }],
      max_tokens: 5,
      temperature: 0,
    }),
  });
  expect(chat.status).toBe(200);
  expect(((await chat.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(5);
  // A stream still running when the signal comes: aborted, its response ended, the process exits 0.
  const res = await fetch(`${url}/completions`, {
    method: "POST",
    headers,
    body: JSON.stringify({ prompt: "Once", max_tokens: 1900, stream: true }),
  });
  const reader = res.body!.getReader();
  await reader.read();
  p.kill("SIGTERM");
  let rest = "";
  for (let r = await reader.read(); !r.done; r = await reader.read())
    rest += new TextDecoder().decode(r.value);
  expect(rest).toMatch(/"message":"the server is shutting down"/);
  expect(await exited).toBe(0);
  const lines = stderr.split("\n");
  expect(lines).toContainEqual(
    expect.stringMatching(/^\S+Z POST \/v1\/chat\/completions 200 \d+ prompt \+ 5 generated tokens \d+ ms$/),
  );
  expect(lines).toContainEqual(expect.stringMatching(/^\S+Z SIGTERM: shutting down/));
  expect(lines).toContainEqual(
    expect.stringMatching(/^\S+Z POST \/v1\/completions 200 .*\d+ prompt \+ \d+ generated tokens/),
  );
  expect(lines).toContainEqual(expect.stringMatching(/^\S+Z stopped$/));
}, 60_000);
