// A checkpoint where a spec goes: `moec inspect|plan|compile|run FILE.gguf` import the spec in memory, on
// a file llama.cpp's llama-quantize wrote with Q4_K_M (one weight's type differs by layer; see
// test/fixtures/llama-quantize/README.md). Also the same commands on a Hugging Face folder, and a spec still
// read as a spec.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isCheckpointPath } from "./spec-argument.ts";

const FILE = "test/fixtures/llama-quantize/mixtral-4l.Q4_K_M.gguf";
const tmp = mkdtempSync(join(tmpdir(), "moec-spec-arg-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function moec(...args: string[]) {
  const r = spawnSync(process.execPath, ["bin/moec.js", ...args], { encoding: "utf8", timeout: 300_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe("a checkpoint where a spec goes", () => {
  it("tells a GGUF (by its magic) and a Hugging Face folder from a spec", () => {
    expect(isCheckpointPath(FILE)).toBe(true);
    expect(isCheckpointPath("specs/tiny-mixtral.moe")).toBe(false);
    expect(isCheckpointPath(join(tmp, "missing.gguf"))).toBe(false);
  });

  it("inspect: each weight's scheme by layer, and the preset llama.cpp names the file by", () => {
    const r = moec("inspect", FILE, "--json");
    expect(r.code, r.err).toBe(0);
    const info = JSON.parse(r.out);
    expect(info.file.preset).toBe("Q4_K_M");
    expect(info.file.file_type).toBe(15);
    // use_more_bits in 4 layers: 2 and 3.
    expect(info.file.weights["layer.w_down"].schemes).toEqual({ q4_k: "0-1", q6_k: "2-3" });
    expect(info.file.weights["layer.wq"].schemes).toEqual({ q4_k: "" });
    expect(info.file.weights.lm_head.schemes).toEqual({ q6_k: "" });
    // The bytes under the file's own types: its tensors' bytes, less nothing.
    expect(info.quant.name).toBe("from_file");
    const text = moec("inspect", FILE);
    expect(text.out).toContain("llama.cpp preset");
    expect(text.out).toMatch(/q4_k: 0-1\s+q6_k: 2-3/);
  });

  it("plan: the file for 24 GiB, every expert resident, exactly what run allocates", () => {
    const r = moec("plan", FILE, "--vram", "24GiB", "--json");
    expect(r.code, r.err).toBe(0);
    const plan = JSON.parse(r.out);
    expect(plan.fits).toBe(true);
    expect(plan.budget_bytes).toBe(24 * 2 ** 30);
    const run = moec("run", FILE, "-n", "4", "--temperature", "0", "--json", "--vram", "24GiB");
    expect(run.code, run.err).toBe(0);
    expect(JSON.parse(run.out).memory.peak_device_bytes).toBe(plan.device_bytes);
  });

  it("compile: a directory that runs with the file as --weights", () => {
    const out = join(tmp, "compiled");
    const c = moec("compile", FILE, "-o", out);
    expect(c.code, c.err).toBe(0);
    const plan = JSON.parse(readFileSync(join(out, "plan.json"), "utf8"));
    const down = plan.weights.find((w: { key: string }) => w.key === "layer.w_down");
    expect(down.schemes).toEqual(["q4_k", "q4_k", "q6_k", "q6_k"]);
    const a = moec("run", out, "--weights", FILE, "-n", "6", "--temperature", "0", "--json");
    const b = moec("run", FILE, "-n", "6", "--temperature", "0", "--json");
    expect(a.code, a.err).toBe(0);
    expect(JSON.parse(a.out).tokens).toEqual(JSON.parse(b.out).tokens);
  });

  it("compile --dump-ir shows each layer's scheme", () => {
    const r = moec("compile", FILE, "-o", join(tmp, "dump"), "--dump-ir=fuse");
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("down_scheme={q4_k: 0-1 | q6_k: 2-3}");
  });

  it("a missing file is one line and exit 1, no stack trace", () => {
    const r = moec("plan", join(tmp, "nope.gguf"), "--vram", "1GiB");
    expect(r.code).not.toBe(0);
    expect(existsSync(join(tmp, "nope.gguf"))).toBe(false);
    expect(r.err).toContain("nope.gguf");
    expect(r.err).not.toMatch(/\n\s+at /);
  });
});
