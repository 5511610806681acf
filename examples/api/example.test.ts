// Runs examples/api/README.md's command exactly as written, from the repository root, and checks what
// it prints against the library called here.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { expect, it } from "vitest";

const readme = readFileSync("examples/api/README.md", "utf8");
const command = /```sh\n([\s\S]*?)```/.exec(readme)![1]!.trim();

it("examples/api runs as its README says", () => {
  expect(command).toBe("npx tsx examples/api/main.ts models/stories260K.gguf");
  const r = spawnSync("bash", ["-c", command], { encoding: "utf8", timeout: 120_000 });
  expect(r.status, r.stderr).toBe(0);
  const lines = r.stdout.split("\n");
  expect(lines[0]).toBe("llama: 2048 tokens of context");
  const complete = /^complete: (".*") \(24 tokens, length\)$/.exec(lines[1]!);
  expect(complete, lines[1]).not.toBeNull();
  const text = JSON.parse(complete![1]!) as string;
  // llama.cpp's greedy continuation of this prompt begins so (models/README.md).
  expect(text.startsWith(", there was a little girl named Lily.")).toBe(true);
  expect(lines[2]).toBe(`stream:${text}`);
  expect(lines[3]).toMatch(/^chat: ".+" \(3 messages\)$/);
  expect(lines[4]).toBe("aborted: the call stopped and its slot is free");
  expect(lines[5]).toMatch(/^too long: \d+ > 2048 tokens$/);
}, 180_000);
