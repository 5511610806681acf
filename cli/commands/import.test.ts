// `moec import` as a user runs it: a real process, the spec on disk, exit codes and stderr.
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import { writeGguf } from "../../runtime/checkpoint/gguf-write.ts";
import { writeRandomMixtralGguf } from "../../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../../runtime/checkpoint/test-support.ts";

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

function moec(...args: string[]) {
  const r = spawnSync(process.execPath, ["bin/moec.js", ...args], {
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, NO_COLOR: "1" },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const sizes = { hidden: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 96, experts: 4, topK: 2, vocab: 300 };

describe("moec import", () => {
  const good = join(dir, "tiny.gguf");
  writeRandomMixtralGguf(good, { ...sizes, type: "q4_0", name: "Tiny Mixtral" });

  it("writes a spec that `moec check` accepts, and prints a summary", () => {
    const out = join(dir, "tiny.moe");
    const r = moec("import", good, "-o", out);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /imported tiny_mixtral → .*tiny\.moe {2}2 layers, hidden 64, 4\/2 heads, 4 experts, top-2/,
    );
    expect(readFileSync(out, "utf8")).toContain("quantization from_file for tiny_mixtral {");
    const c = moec("check", out);
    expect(c.out).toBe("ok\n");
  });

  it("a bad file exits 2 with one line on stderr naming the file", () => {
    const junk = join(dir, "junk.gguf");
    writeFileSync(junk, "GGML not really");
    const r = moec("import", junk, "-o", join(dir, "junk.moe"));
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err.trimEnd().split("\n")).toHaveLength(1);
    expect(r.err).toContain(`${junk}: at byte 0: not a GGUF file`);
  });

  it("a missing tensor exits 2 naming the tensor, and writes nothing", () => {
    const f = openGguf(good);
    const path = join(dir, "no-q.gguf");
    writeGguf(path, {
      metadata: f.metadata,
      tensors: f.tensors
        .filter((t) => t.name !== "blk.0.attn_q.weight")
        .map((t) => ({ name: t.name, dims: t.dims, type: t.type, data: f.read(t) })),
    });
    f.close();
    const out = join(dir, "no-q.moe");
    const r = moec("import", path, "-o", out);
    expect(r.code).toBe(2);
    expect(r.err.trimEnd().split("\n")).toHaveLength(1);
    expect(r.err).toContain("tensor blk.0.attn_q.weight: missing");
    expect(() => readFileSync(out)).toThrow();
  });
});
