// The CLI as a user runs it: real processes, exit codes, files on disk.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

function moec(...args: string[]) {
  const r = spawnSync(process.execPath, ["bin/moec.js", ...args], { encoding: "utf8", timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe("moec inspect", () => {
  it("Mixtral 8x7B: 46.6–46.8B total, 12.8–13.0B active", () => {
    const r = moec("inspect", "specs/mixtral-8x7b.moe", "--json");
    expect(r.code).toBe(0);
    const { params } = JSON.parse(r.out);
    expect(params.total / 1e9).toBeGreaterThanOrEqual(46.6);
    expect(params.total / 1e9).toBeLessThanOrEqual(46.8);
    expect(params.active / 1e9).toBeGreaterThanOrEqual(12.8);
    expect(params.active / 1e9).toBeLessThanOrEqual(13.0);
  });

  it("Mixtral 8x22B: 140–142B total, 38.5–39.5B active; KV cache per token from the spec", () => {
    const r = moec("inspect", "specs/mixtral-8x22b.moe", "--json");
    const info = JSON.parse(r.out);
    expect(info.params.total / 1e9).toBeGreaterThanOrEqual(140);
    expect(info.params.total / 1e9).toBeLessThanOrEqual(142);
    expect(info.params.active / 1e9).toBeGreaterThanOrEqual(38.5);
    expect(info.params.active / 1e9).toBeLessThanOrEqual(39.5);
    // 56 layers × 2 (K and V) × 8 KV heads × 128 × 2 bytes (f16, the default cache)
    expect([info.kv_cache.bytes_per_token, info.kv_cache.dtype]).toEqual([56 * 2 * 8 * 128 * 2, "f16"]);
    const q8 = JSON.parse(moec("inspect", "specs/mixtral-8x22b.moe", "--kv-type", "q8_0", "--json").out);
    expect(q8.kv_cache).toEqual({ bytes_per_token: (56 * 2 * 8 * 128 * 34) / 32, dtype: "q8_0" });
  });

  it("Granite-3.0-3B-A800M: 3.30B total, and its 800M active counted as IBM does, without the embedding table", () => {
    const r = moec("inspect", "specs/granite-3.0-3b-a800m.moe");
    expect(r.code).toBe(0);
    const lines = r.out.split("\n");
    expect(lines[1]).toBe("parameters: 3.30B total, 882.87M active per token (32 layers)");
    expect(lines[2]).toBe("  without the embedding table: 807.37M active");
  });

  it("a dense model has as many active parameters as total", () => {
    const { params } = JSON.parse(moec("inspect", "specs/mistral-7b.moe", "--json").out);
    expect(params.active).toBe(params.total);
  });
});

describe("moec compile", () => {
  it("writes the kernels, forward pass, plan and README into -o, and prints a summary", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "moec-")), "out");
    const r = moec("compile", "specs/tiny-mixtral.moe", "-o", dir);
    expect(r.code).toBe(0);
    // 18: the f16 KV cache adds its cache write (kv_write_32_f16) and the f32 → f16 conversion (to_half);
    // batched decoding computes every sequence's logits, so the LM head has a batched kernel too.
    expect(r.out).toMatch(/30 ops → 11 after fusion, 18 kernels, arena/);
    expect(readdirSync(dir).sort()).toEqual(["README.md", "model.js", "model.ts", "plan.json"]);
    expect(JSON.parse(readFileSync(join(dir, "plan.json"), "utf8")).arena.bytes).toBeGreaterThan(0);
  });

  it("--dump-ir=fuse shows the fused kernels", () => {
    const r = moec(
      "compile",
      "specs/tiny-mixtral.moe",
      "--dump-ir=fuse",
      "-o",
      join(mkdtempSync(join(tmpdir(), "moec-")), "o"),
    );
    expect(r.out).toContain(";; after fuse");
    for (const op of ["moe_ffn(", "route(", "residual=true", "kv=k", "rope_heads=", "norm=layer.attn_norm"])
      expect(r.out).toContain(op);
    expect(r.out).not.toContain(";; after lower");
  });

  it("a failed compile leaves the previous output untouched and no temporary files", () => {
    const root = mkdtempSync(join(tmpdir(), "moec-"));
    const dir = join(root, "out");
    expect(moec("compile", "specs/tiny-mixtral.moe", "-o", dir).code).toBe(0);
    const before = readFileSync(join(dir, "model.ts"), "utf8");
    const spec = join(root, "too-long.moe");
    const text = readFileSync("specs/tiny-mixtral.moe", "utf8").replace(
      "max_context: 256",
      "max_context: 100000",
    );
    writeFileSync(spec, text);
    const r = moec("compile", spec, "-o", dir);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(
      /too-long\.moe:\d+:\d+: error: max_context 100000 exceeds the model's context of 256/,
    );
    expect(r.err).not.toMatch(/\n\s+at /); // no stack trace
    expect(readFileSync(join(dir, "model.ts"), "utf8")).toBe(before);
    expect(readdirSync(root).sort()).toEqual(["out", "too-long.moe"]);
  });

  it("a target's backend picks the code generator: rtx4090 (webgpu) compiles to a GPU program", () => {
    const out = join(mkdtempSync(join(tmpdir(), "moec-")), "o");
    const r = moec("compile", "specs/mixtral-8x7b.moe", "--target", "rtx4090", "-o", out);
    expect(r.code, r.err).toBe(0);
    const js = readFileSync(join(out, "model.js"), "utf8");
    expect(js).toMatch(/export const backend = "webgpu"/);
    expect(js).not.toMatch(/\bimport\b/); // a generated module imports nothing
    const bad = moec("compile", "specs/mixtral-8x7b.moe", "--backend", "metal", "-o", out);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/--backend: unknown backend `metal` \(backends: cpu, webgpu, gpujs\)/);
  });

  it("an unknown --dump-ir pass lists the passes; nothing is written", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "moec-")), "o");
    const r = moec("compile", "specs/tiny-mixtral.moe", "--dump-ir=nope", "-o", dir);
    expect(r.code).toBe(1);
    expect(r.err).toContain("passes: lower, decompose, cse, dce, fuse, schedule");
    expect(existsSync(dir)).toBe(false);
  });
});

describe("moec plan", () => {
  it("--json has the planned figures", () => {
    // 8x22B at q4_k in 24 GiB: its f16 KV cache fits beside two expert slots per layer up to ~14.8k tokens.
    const r = moec(
      "plan",
      "specs/mixtral-8x22b.moe",
      "--quant",
      "q4_k",
      "--vram",
      "24GiB",
      "--context",
      "4096",
      "--json",
    );
    expect(r.code).toBe(0);
    const p = JSON.parse(r.out);
    for (const k of ["fits", "budget_bytes", "device_bytes", "kv_cache_bytes", "arena_bytes", "max_context"])
      expect(p).toHaveProperty(k);
    expect(p.budget_bytes).toBe(24 * 2 ** 30);
    expect(p.device_bytes).toBeLessThanOrEqual(p.budget_bytes);
    expect(p.experts.total).toBe(56 * 8);
    expect(p.experts.resident).toBe(56 * p.experts.cache_slots_per_layer);
    expect([p.kv_type, p.kv_bytes_per_token]).toEqual(["f16", 56 * 2 * 8 * 128 * 2]);
    expect(p.kv_cache_bytes).toBe(4096 * p.kv_bytes_per_token);
    // --kv-type sizes the cache it names: q8_0, 34 bytes per 32 values, on the cpu (the spec's target is
    // webgpu, which cannot hold q8_0 and says so).
    const args = ["specs/mixtral-8x22b.moe", "--quant", "q4_k", "--vram", "24GiB", "--context", "4096"];
    const q8 = JSON.parse(moec("plan", ...args, "--kv-type", "q8_0", "--backend", "cpu", "--json").out);
    const gpu = moec("plan", ...args, "--kv-type", "q8_0");
    expect([gpu.code, gpu.err]).toEqual([
      1,
      expect.stringContaining("the webgpu backend cannot hold a q8_0 KV cache"),
    ]);
    expect([q8.kv_type, q8.kv_cache_bytes]).toEqual(["q8_0", (p.kv_cache_bytes / 64) * 34]);
  });

  it("--table lists every scheme against contexts up to the model's, with the f16 cache", () => {
    const r = moec("plan", "specs/mixtral-8x7b.moe", "--table");
    expect(r.code).toBe(0);
    for (const s of ["q2_k", "q4_k", "q8_0", "f16 KV cache", "1k", "4k", "8k", "32k"])
      expect(r.out).toContain(s);
    const bad = moec("plan", "specs/mixtral-8x7b.moe", "--table", "--kv-type", "f8");
    expect([bad.code, bad.err.trim()]).toEqual([
      1,
      "error: --kv-type: unknown KV cache type `f8` (types: f32, f16, q8_0)",
    ]);
  });

  it("--html draws the plan as a page", () => {
    const file = join(mkdtempSync(join(tmpdir(), "moec-")), "plan.html");
    expect(
      moec("plan", "specs/mixtral-8x7b.moe", "--quant", "q4_k", "--vram", "24GiB", "--html", file).code,
    ).toBe(0);
    expect(readFileSync(file, "utf8")).toMatch(/<div class="bar">.*KV cache/s);
  });

  it("a budget too small, an unparseable budget, a context past the model's: one line and a non-zero exit", () => {
    const small = moec("plan", "specs/mixtral-8x22b.moe", "--quant", "f16", "--vram", "24GiB");
    expect(small.code).toBe(1);
    expect(small.err).toMatch(
      /error: mixtral_8x22b needs at least [\d.]+ GiB .* but the budget is 24\.00 GiB; try/,
    );
    const bad = moec("plan", "specs/mixtral-8x7b.moe", "--vram", "lots");
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("--vram: `lots` is not a size");
    const long = moec("plan", "specs/mixtral-8x7b.moe", "--context", "100000");
    expect(long.code).toBe(1);
    expect(long.err).toContain("larger than the model's context of 32768");
  });
});
