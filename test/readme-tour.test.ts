// Runs the README's "60-second tour" exactly as written (its sh block, line by line, from the repository root)
// and checks that each command does what the lines under it say.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { expect, it } from "vitest";

const readme = readFileSync("README.md", "utf8");
const tour = readme.slice(readme.indexOf("## A 60-second tour"));
const commands = /```sh\n([\s\S]*?)```/
  .exec(tour)![1]!
  .split("\n")
  .filter((l) => l.trim() !== "");

it("the README's tour: run a GGUF, compile a spec, plan for a card, add a scheme", () => {
  rmSync("out/tour", { recursive: true, force: true });
  const outputs: string[] = [];
  for (const cmd of commands) {
    const r = spawnSync("bash", ["-c", cmd], {
      encoding: "utf8",
      timeout: 240_000,
      env: { ...process.env, NO_COLOR: "1" },
    });
    expect(r.status, `${cmd}\n${r.stdout}\n${r.stderr}`).toBe(0);
    outputs.push(r.stdout + r.stderr);
  }
  expect(commands).toHaveLength(4);
  // run: the story's start, 24 greedy tokens, and the speeds
  expect(outputs[0]).toMatch(/^Once upon a time, there was a little girl named Lily\./m);
  expect(outputs[0]).toMatch(/prompt tokens at .* tok\/s, 24 generated at .* tok\/s/);
  // compile: the ops fusion left, the kernels, and the files
  expect(outputs[1]).toMatch(/compiled tiny_mixtral → out\/tour\/ .*ops → \d+ after fusion, \d+ kernels/);
  expect(existsSync("out/tour/model.js")).toBe(true);
  // plan: it fits, the experts resident per layer, the KV cache, headroom, the largest context
  expect(outputs[2]).toMatch(/mixtral_8x7b on 24\.00 GiB: fits/);
  expect(outputs[2]).toMatch(/\d+ of 8 experts per layer/);
  expect(outputs[2]).toMatch(/KV cache/);
  expect(outputs[2]).toMatch(/headroom/);
  expect(outputs[2]).toMatch(/largest context that fits: \d+/);
  // schemes: nf4 beside the built-in ones
  expect(outputs[3]).toMatch(/│ nf4 +│/);
  expect(outputs[3]).toMatch(/│ q4_k +│/);
  rmSync("out/tour", { recursive: true, force: true });
}, 600_000);
