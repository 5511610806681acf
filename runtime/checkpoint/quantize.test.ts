// quantizeGguf: schemes per tensor, fallbacks, errors that name the tensor, metadata, moec's custom
// type ids (written, read back, refused when unregistered), and nothing left behind on failure.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findScheme, getScheme, registerScheme } from "../quant/index.ts";
import type { QuantScheme } from "../quant/scheme.ts";
import { openGguf } from "./gguf-read.ts";
import { gv } from "./gguf-value.ts";
import { writeGguf } from "./gguf-write.ts";
import { fallbackScheme, keptByDefault, quantizeGguf, uniformChoice } from "./quantize.ts";
import { writeRandomMixtralGguf } from "./random-gguf.ts";
import { scratchDir } from "./test-support.ts";

const { dir, cleanup } = scratchDir();
afterAll(cleanup);

const small = {
  hidden: 64,
  layers: 1,
  heads: 2,
  kvHeads: 1,
  ffn: 256,
  experts: 2,
  topK: 1,
  vocab: 300,
  type: "f32",
  seed: 5,
};
const input = join(dir, "in.gguf");
writeRandomMixtralGguf(input, small);

/** A scheme GGUF lacks, for these tests: int8 with an f32 scale per block of 16 (20 bytes). */
const testI8: QuantScheme = {
  name: "test_i8x16",
  blockSize: 16,
  blockBytes: 20,
  description: "test scheme: int8, f32 scale per 16",
  encode(src, dst) {
    const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
    for (let b = 0; b < src.length / 16; b++) {
      let amax = 0;
      for (let j = 0; j < 16; j++) amax = Math.max(amax, Math.abs(src[b * 16 + j]!));
      const d = amax / 127;
      dv.setFloat32(b * 20, d, true);
      for (let j = 0; j < 16; j++) dv.setInt8(b * 20 + 4 + j, d ? Math.round(src[b * 16 + j]! / d) : 0);
    }
  },
  decode(src, dst) {
    const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
    for (let b = 0; b < dst.length / 16; b++) {
      const d = dv.getFloat32(b * 20, true);
      for (let j = 0; j < 16; j++) dst[b * 16 + j] = d * dv.getInt8(b * 20 + 4 + j);
    }
  },
  cpu: {
    dot: `{
  for (let b = 0; b < NB; b++) {
    const o = row + b * 20;
    let s = 0;
    for (let j = 0; j < 16; j++) s += i8[o + 4 + j] * x[xo + b * 16 + j];
    const bits = u8[o] | (u8[o + 1] << 8) | (u8[o + 2] << 16) | (u8[o + 3] << 24);
    acc += new Float32Array(new Int32Array([bits]).buffer)[0] * s;
  }
}`,
  },
};
if (!findScheme(testI8.name)) registerScheme(testI8);

describe("quantizeGguf", () => {
  it("quantizes matrices, keeps norms and routers, copies metadata and sets general.file_type", () => {
    const out = join(dir, "q8.gguf");
    const r = quantizeGguf(input, out, { choose: uniformChoice("q8_0") });
    const a = openGguf(input);
    const b = openGguf(out);
    try {
      for (const t of a.tensors) {
        const q = b.tensor(t.name);
        const kept = t.dims.length === 1 || t.name.includes("ffn_gate_inp");
        expect(q.scheme.name, t.name).toBe(kept ? "f32" : "q8_0");
        expect(q.dims).toEqual(t.dims);
        if (kept) expect(Buffer.from(b.read(q)).equals(Buffer.from(a.read(t)))).toBe(true);
      }
      for (const [k, v] of a.metadata) if (k !== "general.file_type") expect(b.metadata.get(k), k).toEqual(v);
      expect(b.metadata.get("general.file_type")).toEqual(gv.u32(7));
      expect(b.metadata.get("general.quantization_version")).toEqual(gv.u32(2));
    } finally {
      a.close();
      b.close();
    }
    expect(r.tensors.map((t) => t.name)).toEqual(openGguf(input).tensors.map((t) => t.name));
    const q = r.tensors.find((t) => t.name === "blk.0.attn_q.weight")!;
    expect(q.bitsPerWeight).toBe(8.5);
    expect(q.bytesAfter).toBe((64 * 64 * 34) / 32);
    expect(q.rmse).toBeGreaterThan(0);
    expect(q.rmse / q.rms).toBeLessThan(0.01);
    expect(r.tensors.find((t) => t.name === "blk.0.attn_norm.weight")!.note).toMatch(/kept/);
  });

  it("a default that does not fit a row falls back (llama.cpp's choice) and says so", () => {
    // hidden 64 is not a multiple of q4_k's 256; ffn 256 is (ffn_down's rows are ffn long)
    const r = quantizeGguf(input, join(dir, "q4k.gguf"), { choose: uniformChoice("q4_k") });
    const q = r.tensors.find((t) => t.name === "blk.0.attn_q.weight")!;
    expect(q.to).toBe("q5_0");
    expect(q.note).toMatch(/fell back: rows of 64 do not fill q4_k's blocks of 256/);
    expect(r.tensors.find((t) => t.name === "blk.0.ffn_down_exps.weight")!.to).toBe("q4_k");
    expect(fallbackScheme(getScheme("q6_k"), 64).name).toBe("q8_0");
    expect(fallbackScheme(getScheme("q8_0"), 48).name).toBe("f16");
  });

  it("an explicit rule that does not fit is an error naming the tensor and the block, and writes nothing", () => {
    const out = join(dir, "bad-rule.gguf");
    expect(() =>
      quantizeGguf(input, out, {
        choose: (t) =>
          t.dims.length > 1 ? { scheme: "q4_k", explicit: true, rule: "rule X" } : { keep: true, why: "" },
      }),
    ).toThrow(
      /tensor token_embd\.weight: rows of 64 elements are not a multiple of q4_k's block of 256 \(rule X\)/,
    );
    expect(existsSync(out)).toBe(false);
  });

  it("NaN or infinity in a tensor is an error naming it, and nothing is written", () => {
    const bad = join(dir, "nan.gguf");
    const v = new Float32Array(64 * 4).fill(0.5);
    v[64 * 2 + 3] = Number.NaN;
    writeGguf(bad, {
      metadata: [["general.architecture", gv.str("llama")]],
      tensors: [
        { name: "ok.weight", dims: [64, 4], type: 0, data: new Uint8Array(new Float32Array(256).buffer) },
        { name: "bad.weight", dims: [64, 4], type: 0, data: new Uint8Array(v.buffer) },
      ],
    });
    const out = join(dir, "nan-out.gguf");
    expect(() => quantizeGguf(bad, out, { choose: uniformChoice("q8_0") })).toThrow(
      /tensor bad\.weight: holds NaN at element 131 \(row 2, column 3\)/,
    );
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  it("a scheme GGUF lacks is stored under type 1024 with moec.scheme.* metadata, and reads back", () => {
    const out = join(dir, "custom.gguf");
    const r = quantizeGguf(input, out, { choose: uniformChoice("test_i8x16") });
    const f = openGguf(out);
    try {
      const t = f.tensor("blk.0.attn_q.weight");
      expect(t.type).toBe(1024);
      expect(t.scheme).toBe(testI8);
      expect(f.metadata.get("moec.scheme.1024")).toEqual(gv.str("test_i8x16"));
      expect(f.metadata.get("moec.scheme.1024.block_size")).toEqual(gv.u32(16));
      expect(f.metadata.get("moec.scheme.1024.block_bytes")).toEqual(gv.u32(20));
      expect(f.metadata.has("general.file_type")).toBe(false);
      const back = new Float32Array(t.elements);
      testI8.decode(f.read(t), back);
      expect(back.some((x) => x !== 0)).toBe(true);
    } finally {
      f.close();
    }
    expect(r.fileType).toBeUndefined();
    // Re-quantizing that file to a built-in drops the custom keys.
    quantizeGguf(out, join(dir, "back.gguf"), { choose: uniformChoice("q8_0") });
    const g = openGguf(join(dir, "back.gguf"));
    expect([...g.metadata.keys()].filter((k) => k.startsWith("moec.scheme"))).toEqual([]);
    g.close();
  });

  it("refuses a custom type whose scheme is not registered, or whose layout differs, or that has no name", () => {
    const out = join(dir, "custom.gguf");
    const bytes = readFileSync(out);
    const patch = (from: string, to: string) => {
      const b = Buffer.from(bytes);
      const at = b.indexOf(from);
      expect(at).toBeGreaterThan(0);
      b.write(to, at);
      const p = join(dir, `patched-${to}.gguf`);
      writeFileSync(p, b);
      return p;
    };
    expect(() => openGguf(patch("test_i8x16", "test_zzzzz"))).toThrow(
      /tensor type 1024 is the quantization scheme `test_zzzzz` \(metadata moec\.scheme\.1024\), which is not registered: load the plugin that defines it with --plugin FILE/,
    );
    expect(() => openGguf(patch("moec.scheme.1024\u0008", "moec.scheme.1025\u0008"))).toThrow(
      /unknown tensor type 1024 \(a moec custom type, but the file has no string `moec\.scheme\.1024`/,
    );
    // block_size 16 → 17
    const b = Buffer.from(bytes);
    const key = b.indexOf("moec.scheme.1024.block_size") + "moec.scheme.1024.block_size".length;
    expect(b.readUInt32LE(key + 4)).toBe(16);
    b.writeUInt32LE(17, key + 4);
    writeFileSync(join(dir, "layout.gguf"), b);
    expect(() => openGguf(join(dir, "layout.gguf"))).toThrow(
      /block_size 17 in the file, but the registered `test_i8x16` has 16/,
    );
  });

  it("keptByDefault: vectors and routers by GGUF or Hugging Face name", () => {
    expect(keptByDefault("blk.0.ffn_gate_inp.weight", [64, 8])).toMatch(/router/);
    expect(keptByDefault("model.layers.0.block_sparse_moe.gate.weight", [64, 8])).toMatch(/router/);
    expect(keptByDefault("blk.0.attn_norm.weight", [64])).toMatch(/vector/);
    expect(keptByDefault("blk.0.ffn_gate_exps.weight", [64, 256, 8])).toBeUndefined();
  });
});
