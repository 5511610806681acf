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
    expect(r.err).toMatch(/give --preset NAME \(llama\.cpp's: Q4_0, .*F32\), --scheme NAME/);
    r = moec("quantize", join(dir, "none.gguf"), "-o", join(dir, "x.gguf"), "--scheme", "q8_0");
    expect(r.code).toBe(2);
    r = moec("quantize", dir, "-o", join(dir, "x.gguf"), "--scheme", "q8_0");
    expect(r.err).toMatch(/is a folder/);
    expect(existsSync(join(dir, "x.gguf"))).toBe(false);
  });

  it("--preset Q4_K_M (any case): llama.cpp's mix, schemes that differ by layer, general.file_type 15", () => {
    const out = join(dir, "q4km.gguf");
    const r = moec("quantize", model, "-o", out, "--preset", "q4_k_m");
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/wrote .*q4km\.gguf .*general\.file_type 15 \(Q4_K_M\)/);
    const f = openGguf(out);
    // 2 layers: use_more_bits(i, 2) holds for i >= 7·2/8 = 1 only, so ffn_down is q4_k, then q6_k.
    expect(f.tensor("blk.0.ffn_down_exps.weight").scheme.name).toBe("q4_k");
    expect(f.tensor("blk.1.ffn_down_exps.weight").scheme.name).toBe("q6_k");
    expect(f.tensor("blk.0.ffn_up_exps.weight").scheme.name).toBe("q4_k");
    // 4 experts, not 8: attn_v follows use_more_bits (q6_k), attn_k stays q4_k.
    expect(f.tensor("blk.1.attn_v.weight").scheme.name).toBe("q6_k");
    expect(f.tensor("blk.1.attn_k.weight").scheme.name).toBe("q4_k");
    expect(f.tensor("output.weight").scheme.name).toBe("q6_k");
    expect(f.tensor("blk.1.ffn_gate_inp.weight").scheme.name).toBe("f32");
    expect(f.metadata.get("general.file_type")?.value).toBe(15);
    f.close();
  });

  it("--preset: rows that do not fill a block fall back as llama.cpp's do, and the summary says which and why", () => {
    const odd = join(dir, "odd.gguf");
    writeRandomMixtralGguf(odd, {
      hidden: 256,
      layers: 8,
      heads: 4,
      kvHeads: 2,
      ffn: 352,
      experts: 8,
      topK: 2,
      vocab: 300,
      type: "f32",
      seed: 4,
    });
    const r = moec("quantize", odd, "-o", join(dir, "odd-q4km.gguf"), "--preset", "Q4_K_M");
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(
      /8 tensors fell back to a scheme whose block fits their rows: blk\.0\.ffn_down_exps\.weight \(q8_0: rows of 352 do not fill q6_K's blocks of 256 → q8_0 \(as llama\.cpp\)\), blk\.1\.ffn_down_exps\.weight \(q5_0: rows of 352 do not fill q4_K's blocks of 256 → q5_0/,
    );
  });

  it("--preset: an unknown name lists moec's presets; an i-quant preset says moec lacks its types; not with --scheme", () => {
    let r = moec("quantize", model, "-o", join(dir, "x.gguf"), "--preset", "Q4_K_X");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      /unknown preset `Q4_K_X` \(llama\.cpp's presets moec has: Q4_0, Q4_1, .*Q4_K_M, .*BF16, F32\)/,
    );
    r = moec("quantize", model, "-o", join(dir, "x.gguf"), "--preset", "iq4_xs");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/--preset iq4_xs: llama\.cpp's IQ4_XS uses types moec has no scheme for/);
    r = moec("quantize", model, "-o", join(dir, "x.gguf"), "--preset", "Q4_K_M", "--scheme", "q8_0");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/--preset .* without --scheme or --rules/);
    expect(existsSync(join(dir, "x.gguf"))).toBe(false);
  });

  it("bad input: a tensor of a type moec has no scheme for (IQ4_NL): one line naming file, tensor and type; exit 2", () => {
    // IQ4_NL's block is Q4_0's size (32 elements in 18 bytes), so a q4_0 file with one tensor's type id
    // changed to 20 is a well-formed IQ4_NL tensor.
    const iq = join(dir, "iq4nl.gguf");
    writeRandomMixtralGguf(iq, {
      hidden: 64,
      layers: 1,
      heads: 2,
      kvHeads: 1,
      ffn: 64,
      experts: 0,
      topK: 0,
      vocab: 300,
      type: "q4_0",
      seed: 2,
    });
    const bytes = readFileSync(iq);
    const name = "blk.0.attn_k.weight";
    const at = bytes.indexOf(Buffer.from(name));
    const nd = bytes.readUInt32LE(at + name.length);
    const typeAt = at + name.length + 4 + 8 * nd;
    expect(bytes.readUInt32LE(typeAt)).toBe(2);
    bytes.writeUInt32LE(20, typeAt);
    writeFileSync(iq, bytes);
    for (const args of [
      ["quantize", iq, "-o", join(dir, "y.gguf"), "--preset", "Q4_K_M"],
      ["quantize", iq, "-o", join(dir, "y.gguf"), "--scheme", "q8_0"],
    ]) {
      const r = moec(...args);
      expect(r.code).toBe(2);
      expect(r.out).toBe("");
      const lines = r.err.trimEnd().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]!.startsWith(`error: ${iq}: tensor blk.0.attn_k.weight at byte ${typeAt}: `)).toBe(true);
      expect(lines[0]).toContain(
        "type IQ4_NL (ggml type 20, `iq4_nl` in llama.cpp) has no quantization scheme in moec",
      );
      expect(r.err).not.toMatch(/\n\s+at /);
      expect(existsSync(join(dir, "y.gguf"))).toBe(false);
    }
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
    const list = JSON.parse(r.out).schemes;
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
