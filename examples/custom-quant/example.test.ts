// Runs examples/custom-quant/README.md exactly as written (its sh block, line by line, from the
// repository root), then checks the nf4 kernels against the reference executor.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import { findScheme, registerScheme } from "../../runtime/quant/index.ts";
import { compileAndLoad, relativeError } from "../../test/harness.ts";
import { nf4 } from "./nf4.ts";

// In this process too, for reading the files back and compiling with nf4.
if (!findScheme("nf4")) registerScheme(nf4);

const readme = readFileSync("examples/custom-quant/README.md", "utf8");
const commands = /```sh\n([\s\S]*?)```/
  .exec(readme)![1]!
  .split("\n")
  .filter((l) => l.trim() !== "");

describe("examples/custom-quant, as its README says", () => {
  it("writes, quantizes to nf4, runs, quantizes by rules, compiles and runs", () => {
    rmSync("out/custom-quant", { recursive: true, force: true });
    const outputs: string[] = [];
    for (const cmd of commands) {
      const r = spawnSync("bash", ["-c", cmd], { encoding: "utf8", timeout: 120_000 });
      expect(r.status, `${cmd}\n${r.stdout}\n${r.stderr}`).toBe(0);
      outputs.push(r.stdout + r.stderr);
    }
    expect(commands).toHaveLength(6);
    // quantize: a summary with nf4 tensors, the router and norms left f32
    expect(outputs[1]).toMatch(/blk\.0\.ffn_gate_exps\.weight\s+│ f32 → nf4/);
    expect(outputs[1]).toMatch(/blk\.0\.ffn_gate_inp\.weight\s+│ f32\s/);
    expect(outputs[1]).toMatch(/wrote out\/custom-quant\/model-nf4\.gguf/);
    // run: 16 tokens generated (the text is random, the count is not)
    expect(outputs[2]).toMatch(/16 generated at/);
    expect(outputs[3]).toMatch(/blk\.0\.attn_q\.weight\s+│ f32 → q8_0/);
    expect(outputs[4]).toMatch(/compiled custom_quant_example/);
    expect(outputs[5]).toMatch(/16 generated at/);

    // The files: nf4 under moec's custom type id, named in the metadata.
    const f = openGguf("out/custom-quant/model-mixed.gguf");
    try {
      expect(f.tensor("blk.0.ffn_up_exps.weight").type).toBe(1024);
      expect(f.tensor("blk.0.ffn_up_exps.weight").scheme.name).toBe("nf4");
      expect(f.tensor("blk.0.attn_q.weight").scheme.name).toBe("q8_0");
      expect(f.tensor("output.weight").scheme.name).toBe("f16");
      expect(f.metadata.get("moec.scheme.1024")).toEqual({ type: "string", value: "nf4" });
      expect(f.metadata.get("moec.scheme.1024.block_bytes")).toEqual({ type: "u32", value: 34 });
      // nf4 holds most weights and has no llama.cpp file type, so general.file_type is left out
      expect(f.metadata.has("general.file_type")).toBe(false);
    } finally {
      f.close();
    }
    expect(existsSync("out/custom-quant/model-mixed/model.js")).toBe(true);
  }, 300_000);

  it("without --plugin, the nf4 file is refused with the scheme's name", () => {
    if (!existsSync("out/custom-quant/model-nf4.gguf")) return;
    const r = spawnSync(
      process.execPath,
      ["bin/moec.js", "run", "--weights", "out/custom-quant/model-nf4.gguf", "-n", "1"],
      { encoding: "utf8", timeout: 60_000 },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/tensor type 1024 is the quantization scheme `nf4`.*--plugin FILE/);
  });
});

describe("nf4 kernels", () => {
  it("the generated model matches the reference executor (nf4 everywhere)", async () => {
    const { generated, reference, compiled } = await compileAndLoad(
      "examples/custom-quant/model.moe",
      "nf4",
      5,
    );
    let worst = 0;
    for (let pos = 0; pos < 8; pos++) {
      const token = (pos * 37 + 5) % compiled.manifest.vocab;
      worst = Math.max(worst, relativeError(generated.step(token, pos), reference.step(token, pos)));
    }
    expect(worst).toBeLessThanOrEqual(1e-4);
  });
});

describe("nf4 round trip", () => {
  it("RMSE on N(0, 1) and Student's t(3), zero blocks, outliers, NaN", async () => {
    const { gaussian, rmse, studentT } = await import("../../runtime/quant/test-support.ts");
    const rt = (x: Float32Array) => {
      const q = new Uint8Array((x.length / 64) * 34);
      nf4.encode(x, q);
      const y = new Float32Array(x.length);
      nf4.decode(q, y);
      return y;
    };
    const g = gaussian(1024 * 256, 42);
    const t = studentT(1024 * 256, 43);
    expect(rmse(g, rt(g))).toBeLessThan(0.1); // 9.19e-2 on 4096 × 256
    expect(rmse(t, rt(t))).toBeLessThan(0.136); // 1.23e-1
    expect([...rt(new Float32Array(64))].every((v) => v === 0)).toBe(true);
    const spike = new Float32Array(64).fill(0.01);
    spike[5] = 1000;
    const y = rt(spike);
    expect(y[5]).toBe(1000); // the absmax is exact (f16 holds 1000)
    expect(Math.abs(y[0]!)).toBeLessThan(0.01 + 1000 * 0.04);
    const nan = new Float32Array(64);
    nan[3] = Number.NaN;
    expect(() => nf4.encode(nan, new Uint8Array(34))).toThrow(/non-finite value NaN at element 3/);
  });
});
