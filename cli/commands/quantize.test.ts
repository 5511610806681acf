// `moec quantize` and `--plugin` as a user runs them: exit codes and messages.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import { writeRandomMixtralGguf } from "../../runtime/checkpoint/random-gguf.ts";

const dir = mkdtempSync(join(tmpdir(), "moec-quantize-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const model = join(dir, "m.gguf");
writeRandomMixtralGguf(model, {
  hidden: 256,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 256,
  experts: 4,
  topK: 2,
  vocab: 300,
  type: "f32",
  seed: 9,
});

function moec(...args: string[]) {
  const r = spawnSync(process.execPath, ["bin/moec.js", ...args], { encoding: "utf8", timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe("moec quantize", () => {
  it("--scheme q8_0: a summary table and a file whose matrices are q8_0", () => {
    const out = join(dir, "q8.gguf");
    const r = moec("quantize", model, "-o", out, "--scheme", "q8_0");
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(
      /blk\.0\.attn_q\.weight\s+│ f32 → q8_0\s+│\s+256\.00 KiB │\s+68\.00 KiB │\s+8\.500 │/,
    );
    expect(r.out).toMatch(/wrote .*q8\.gguf .*general\.file_type 7/);
    const f = openGguf(out);
    expect(f.tensor("blk.1.ffn_up_exps.weight").scheme.name).toBe("q8_0");
    expect(f.tensor("blk.1.ffn_gate_inp.weight").scheme.name).toBe("f32");
    f.close();
  });

  it("--rules: experts q4_k while attention stays q6_k; --json", () => {
    const spec = join(dir, "m.moe");
    expect(moec("import", model, "-o", spec).code).toBe(0);
    writeFileSync(
      spec,
      `${readFileSync(spec, "utf8")}
quantization mixed for moec_random_mixtral {
  layer[*].w_gate, layer[*].w_up : q4_k
  default : q6_k
}
`,
    );
    const out = join(dir, "mixed.gguf");
    const r = moec("quantize", model, "-o", out, "--rules", spec, "--quant", "mixed", "--json");
    expect(r.code, r.err).toBe(0);
    const report = JSON.parse(r.out);
    const to = (n: string) => report.tensors.find((t: { name: string }) => t.name === n).to;
    expect(to("blk.0.ffn_gate_exps.weight")).toBe("q4_k");
    expect(to("blk.0.attn_q.weight")).toBe("q6_k");
    expect(to("blk.0.ffn_down_exps.weight")).toBe("q6_k");
    expect(to("blk.0.ffn_gate_inp.weight")).toBe("f32");
    expect(to("blk.0.attn_norm.weight")).toBe("f32");
    expect(report.bytesAfter).toBeLessThan(report.bytesBefore / 5);
  });

  it("bad input: unknown scheme lists the known ones; no scheme; no file; a folder", () => {
    let r = moec("quantize", model, "-o", join(dir, "x.gguf"), "--scheme", "q7_k");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/unknown quantization scheme `q7_k` \(known: f32, f16, .*q6_k\)/);
    r = moec("quantize", model, "-o", join(dir, "x.gguf"));
    expect(r.err).toMatch(/give --scheme NAME/);
    r = moec("quantize", join(dir, "none.gguf"), "-o", join(dir, "x.gguf"), "--scheme", "q8_0");
    expect(r.code).toBe(2);
    r = moec("quantize", dir, "-o", join(dir, "x.gguf"), "--scheme", "q8_0");
    expect(r.err).toMatch(/is a folder/);
    expect(existsSync(join(dir, "x.gguf"))).toBe(false);
  });

  it("--plugin that exports no valid scheme names what is missing, before the command runs", () => {
    const p = join(dir, "bad-plugin.mjs");
    writeFileSync(p, `export default { name: "oops", blockSize: 32, blockBytes: 18 };`);
    const r = moec("schemes", "--plugin", p);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      /--plugin .*bad-plugin\.mjs: its default export is not a valid quantization scheme: missing `description`.*missing `encode`.*missing `decode`.*missing `cpu\.dot`/,
    );
    expect(r.out).toBe("");
  });

  it("moec schemes lists built-ins and a plugin's, with bits per weight", () => {
    const r = moec("schemes", "--json", "--plugin", "examples/custom-quant/nf4.ts");
    expect(r.code, r.err).toBe(0);
    const list = JSON.parse(r.out);
    expect(list.find((s: { name: string }) => s.name === "q4_k")).toMatchObject({
      bits_per_weight: 4.5,
      ggml_type: 12,
    });
    expect(list.find((s: { name: string }) => s.name === "nf4")).toMatchObject({
      bits_per_weight: 4.25,
      ggml_type: null,
    });
  });
});
