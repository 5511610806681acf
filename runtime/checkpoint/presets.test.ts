// llama.cpp's presets: moec's choice of type for every tensor equals llama-quantize's own, recorded in
// test/fixtures/llama-quantize-presets.json (scripts/llama-quantize-presets.ts made it; no llama.cpp
// needed here), and `quantizeGguf` writes those types and llama.cpp's general.file_type.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openGguf } from "./gguf-read.ts";
import { ggmlTypeName } from "./gguf-types.ts";
import {
  FTYPE,
  findPreset,
  GGML,
  llamaTensorOrder,
  notQuantizedWhy,
  PRESETS,
  type PresetModel,
  presetByFileType,
  presetQuantizeOptions,
  presetTypes,
} from "./presets.ts";
import { quantizeGguf } from "./quantize.ts";
import { type RandomMixtralOptions, writeRandomMixtralGguf } from "./random-gguf.ts";
import { scratchDir } from "./test-support.ts";

interface FixtureInput {
  name: string;
  options: RandomMixtralOptions;
  tensors: [string, number[]][];
  presets: Record<string, { fileType: number; types: string; sha256: string }>;
}
const fixture: { command: string; inputs: FixtureInput[] } = JSON.parse(
  readFileSync(new URL("../../test/fixtures/llama-quantize-presets.json", import.meta.url), "utf8"),
);

/** "f32 q4_K*3" → ["f32", "q4_K", "q4_K", "q4_K"]. */
function expand(rle: string): string[] {
  return rle.split(" ").flatMap((tok) => {
    const [name, n] = tok.split("*");
    return Array(n === undefined ? 1 : Number(n)).fill(name);
  });
}

const modelOf = (o: RandomMixtralOptions): PresetModel => ({
  arch: "llama",
  nLayer: o.layers,
  nExpert: o.experts,
  nHead: o.heads,
  nHeadKv: o.kvHeads,
  nVocab: o.vocab,
});

describe("presets against llama-quantize's own choices", () => {
  it("the fixture covers every preset for 8- and 32-layer MoE and dense inputs", () => {
    expect(fixture.command).toBe("llama-quantize IN OUT PRESET 2");
    for (const input of fixture.inputs)
      expect(Object.keys(input.presets).sort()).toEqual(PRESETS.map((p) => p.name).sort());
    const shapes = fixture.inputs.map(
      (i) => `${i.options.experts > 0 ? "moe" : "dense"}-${i.options.layers}`,
    );
    for (const s of ["moe-8", "moe-32", "dense-8", "dense-32"]) expect(shapes).toContain(s);
  });

  /** moec's choice against llama.cpp's for each tensor: the tensors compared and those that differ. */
  function compare(input: FixtureInput, presetName: string): { compared: number; differ: string[] } {
    const preset = findPreset(presetName)!;
    const tensors = input.tensors.map(([name, dims]) => ({ name, dims, type: GGML.F32 }));
    const got = presetTypes(preset, modelOf(input.options), tensors);
    const want = expand(input.presets[presetName]!.types);
    expect(want.length).toBe(tensors.length);
    const differ: string[] = [];
    got.forEach((c, i) => {
      if (ggmlTypeName(c.type) !== want[i])
        differ.push(`${c.name}: moec ${ggmlTypeName(c.type)}, llama.cpp ${want[i]}`);
    });
    return { compared: got.length, differ };
  }

  for (const input of fixture.inputs) {
    for (const preset of PRESETS) {
      it(`${input.name} ${preset.name}`, () => {
        expect(compare(input, preset.name).differ).toEqual([]);
        expect(preset.ftype).toBe(input.presets[preset.name]!.fileType);
      });
    }
  }

  it("all 25,381 (input, preset, tensor) choices match", () => {
    let compared = 0;
    const differ: string[] = [];
    for (const input of fixture.inputs)
      for (const name of Object.keys(input.presets)) {
        const r = compare(input, name);
        compared += r.compared;
        differ.push(...r.differ.map((d) => `${input.name} ${name} ${d}`));
      }
    expect(differ).toEqual([]);
    expect(compared).toBe(25_381);
  });

  it("the fixture holds what the issue describes for a Mixtral Q4_K_M", () => {
    const input = fixture.inputs.find((i) => i.name === "moe8-fill-32L")!;
    const types = expand(input.presets.Q4_K_M!.types);
    const typeOf = (n: string) => types[input.tensors.findIndex(([name]) => name === n)];
    // use_more_bits: the first and last eighth, and every third between.
    const more = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];
    for (let l = 0; l < 32; l++)
      expect(typeOf(`blk.${l}.ffn_down_exps.weight`), `layer ${l}`).toBe(more.includes(l) ? "q6_K" : "q4_K");
    expect(typeOf("blk.5.attn_k.weight")).toBe("q8_0");
    expect(typeOf("blk.5.attn_v.weight")).toBe("q8_0");
    expect(typeOf("blk.5.attn_output.weight")).toBe("q5_K");
    expect(typeOf("output.weight")).toBe("q6_K");
    expect(typeOf("blk.5.ffn_gate_inp.weight")).toBe("f32");
  });
});

describe("preset rules", () => {
  it("names in any case, llama-quantize's aliases, and file types", () => {
    expect(findPreset("q4_k_m")?.ftype).toBe(FTYPE.MOSTLY_Q4_K_M);
    expect(findPreset("Q4_K")?.name).toBe("Q4_K_M");
    expect(findPreset("bf16")?.defaultType).toBe(GGML.BF16);
    expect(findPreset("IQ4_NL")).toBeUndefined();
    expect(presetByFileType(15)?.name).toBe("Q4_K_M");
    expect(PRESETS).toHaveLength(17);
  });

  it("llama.cpp's tensor order: tensors outside layers first, then by layer number, then by name", () => {
    const names = ["blk.10.attn_v.weight", "output.weight", "blk.2.ffn_up.weight", "blk.2.attn_k.weight"];
    expect([...names].sort(llamaTensorOrder)).toEqual([
      "output.weight",
      "blk.2.attn_k.weight",
      "blk.2.ffn_up.weight",
      "blk.10.attn_v.weight",
    ]);
  });

  it("vectors (also [n, 1]), norms and routers are not quantized", () => {
    expect(notQuantizedWhy("blk.0.attn_q.weight", [256, 1])).toBeDefined();
    expect(notQuantizedWhy("blk.0.attn_norm.weight", [256])).toBeDefined();
    expect(notQuantizedWhy("blk.0.ffn_gate_inp.weight", [256, 8])).toBe("the MoE router");
    expect(notQuantizedWhy("blk.0.attn_q.weight", [256, 256])).toBeUndefined();
  });

  it("a dense model counts ffn_down by order; an MoE tensor without a layer is an error", () => {
    const m: PresetModel = { arch: "llama", nLayer: 8, nExpert: 0, nHead: 8, nHeadKv: 2, nVocab: 512 };
    const downs = Array.from({ length: 8 }, (_, l) => ({
      name: `blk.${l}.ffn_down.weight`,
      dims: [512, 256],
      type: GGML.F32,
    }));
    const got = presetTypes(findPreset("Q4_K_M")!, m, downs).map((c) => ggmlTypeName(c.type));
    // use_more_bits(i, 8): i < 1, i >= 7, (i - 1) % 3 == 2.
    expect(got).toEqual(["q6_K", "q4_K", "q4_K", "q6_K", "q4_K", "q4_K", "q6_K", "q6_K"]);
    expect(() =>
      presetTypes(findPreset("Q4_K_M")!, { ...m, nExpert: 8 }, [
        { name: "ffn_down_exps.weight", dims: [512, 256, 8], type: GGML.F32 },
      ]),
    ).toThrow(/layer/);
  });
});

describe("moec's preset files hold llama-quantize's bytes", () => {
  // The inputs are rewritten from their recorded options (the random writer depends only on them); moec
  // quantizes them with each preset and hashes the tensors' data in the input's order, as the script did
  // with llama-quantize's output. Equal hashes: the same types and the same blocks, so both engines read
  // the same numbers. Two inputs small enough to quantize here: a dense one whose rows fall back to q8_0
  // and f16, under every preset, and an 8-expert one whose ffn_down falls back, under Q4_K_M.
  const { dir, cleanup } = scratchDir();
  afterAll(cleanup);
  const cases: [string, string[]][] = [
    ["dense-hidden200-8L", PRESETS.map((p) => p.name)],
    ["moe8-ffn352-8L", ["Q4_K_M"]],
  ];
  for (const [name, presets] of cases) {
    const input = fixture.inputs.find((i) => i.name === name)!;
    const path = join(dir, `${name}.gguf`);
    for (const presetName of presets) {
      it(`${name} ${presetName}`, () => {
        if (presetName === presets[0]) writeRandomMixtralGguf(path, input.options);
        const out = join(dir, `${name}.${presetName}.gguf`);
        const src = openGguf(path);
        const opts = presetQuantizeOptions(src, findPreset(presetName)!);
        src.close();
        quantizeGguf(path, out, opts);
        const f = openGguf(out);
        const hash = createHash("sha256");
        try {
          for (const [t] of input.tensors) hash.update(f.read(f.tensor(t)));
        } finally {
          f.close();
        }
        expect(hash.digest("hex")).toBe(input.presets[presetName]!.sha256);
      });
    }
  }
});

describe("quantizeGguf with a preset", () => {
  const { dir, cleanup } = scratchDir();
  afterAll(cleanup);
  const options: RandomMixtralOptions = {
    hidden: 256,
    ffn: 352,
    heads: 8,
    kvHeads: 2,
    experts: 8,
    topK: 2,
    layers: 8,
    vocab: 300,
    type: "f32",
    seed: 3,
  };
  const input = join(dir, "in.gguf");
  writeRandomMixtralGguf(input, options);

  it("Q4_K_M: the preset's types per tensor (schemes differ by layer), fallbacks noted, file_type 15", () => {
    const out = join(dir, "q4km.gguf");
    const src = openGguf(input);
    const opts = presetQuantizeOptions(src, findPreset("Q4_K_M")!);
    const want = presetTypes(findPreset("Q4_K_M")!, modelOf(options), src.tensors);
    src.close();
    const report = quantizeGguf(input, out, opts);
    expect(report.fileType).toBe(15);
    const f = openGguf(out);
    try {
      for (const c of want) expect(f.tensor(c.name).type, c.name).toBe(c.type);
      expect(f.metadata.get("general.file_type")?.value).toBe(15);
      expect(f.metadata.get("general.quantization_version")?.value).toBe(2);
      // rows of 352 do not fill q4_K (256): ffn_down_exps falls back, q6_K → q8_0 where use_more_bits.
      expect(f.tensor("blk.0.ffn_down_exps.weight").scheme.name).toBe("q8_0");
      expect(f.tensor("blk.1.ffn_down_exps.weight").scheme.name).toBe("q5_0");
      expect(f.tensor("blk.1.ffn_up_exps.weight").scheme.name).toBe("q4_k");
    } finally {
      f.close();
    }
    const down1 = report.tensors.find((t) => t.name === "blk.1.ffn_down_exps.weight")!;
    expect(down1.note).toMatch(/^fell back: rows of 352 do not fill q4_K's blocks of 256 → q5_0/);
    expect(report.tensors.find((t) => t.name === "blk.1.attn_norm.weight")!.note).toMatch(/^kept/);
  });

  it("F16 keeps vectors and the router f32 and writes general.file_type 1", () => {
    const out = join(dir, "f16.gguf");
    const src = openGguf(input);
    const opts = presetQuantizeOptions(src, findPreset("f16")!);
    src.close();
    quantizeGguf(input, out, opts);
    const f = openGguf(out);
    try {
      expect(f.tensor("output.weight").scheme.name).toBe("f16");
      expect(f.tensor("blk.0.ffn_down_exps.weight").scheme.name).toBe("f16");
      expect(f.tensor("blk.0.ffn_gate_inp.weight").scheme.name).toBe("f32");
      expect(f.tensor("output_norm.weight").scheme.name).toBe("f32");
      expect(f.metadata.get("general.file_type")?.value).toBe(1);
      expect(f.metadata.get("general.quantization_version")?.value).toBe(2);
    } finally {
      f.close();
    }
  });
});
