// `moec demo` end to end: it upcycles the shipped stories260K into the cache folder, runs it through the
// expert cache, and prints llama.cpp's greedy continuation of the prompt on that same file.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { asTokens, llamaGreedy, loadLlamaCpp } from "../test/llama/engines.ts";

const cache = mkdtempSync(join(tmpdir(), "moec-demo-"));
afterAll(() => rmSync(cache, { recursive: true, force: true }));

function demo(...args: string[]) {
  const r = spawnSync(process.execPath, ["bin/moec.js", "demo", ...args], {
    encoding: "utf8",
    timeout: 120_000,
    env: { ...process.env, XDG_CACHE_HOME: cache },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

it("prints llama.cpp's greedy text from the upcycled stories260K, with experts missing the cache", async () => {
  const prompt = "Once upon a time";
  const n = 32;
  const r = demo("-p", prompt, "-n", String(n));
  expect(r.stderr).not.toMatch(/error/i);
  expect(r.status).toBe(0);
  const file = join(cache, "moec", "demo-stories260K-e8-top2-s7.gguf");
  const stats = /experts: (\d+) hits, (\d+) misses/.exec(r.stderr);
  expect(r.stderr).toMatch(/expert cache: 3 of 8 experts per layer on the device/);
  expect(Number(stats?.[2])).toBeGreaterThan(0);

  const llama = await loadLlamaCpp(file, { contextSize: 128, threads: 2 });
  try {
    const bos = llama.model.tokens.bos!;
    const ids = [bos, ...llama.model.tokenize(prompt)];
    const theirs = await llamaGreedy(llama, ids, n, 512);
    const text = llama.model.detokenize(asTokens(theirs.tokens));
    expect(text).toMatch(/^, there was/);
    expect(r.stdout).toBe(`${prompt}${text}\n`);
  } finally {
    await llama.dispose();
  }
  // The second run finds the checkpoint in the cache.
  const again = demo("-n", "4");
  expect(again.status).toBe(0);
  expect(again.stderr).not.toMatch(/upcycling/);
}, 240_000);
