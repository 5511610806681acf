// Weights that are a block of rows of a fused safetensors tensor (`name[k/n]`, Granite MoE's input_linear):
// the right rows of every expert, read as stored or converted, and the problems named.
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { WeightEntry } from "../manifest.ts";
import { fusedPartOf, SafetensorsWeights } from "./safetensors-weights.ts";
import { encodeSafetensorsData, writeSafetensors } from "./safetensors-write.ts";
import { scratchDir } from "./test-support.ts";

const { dir, cleanup } = scratchDir();
afterAll(cleanup);

// Two layers of [experts 3, 2·rows 4, cols 5]: value = layer·64 + the element's index (distinct, exact in bf16).
const E = 3;
const R = 2;
const C = 5;
const fused = (layer: number) => {
  const v = new Float32Array(E * 2 * R * C);
  for (let i = 0; i < v.length; i++) v[i] = layer * 64 + i;
  return v;
};
/** Rows k·R…(k+1)·R−1 of every expert, as llama.cpp's `split(R, dim=-2)` gives them. */
const half = (layer: number, k: number) => {
  const all = fused(layer);
  const out: number[] = [];
  for (let e = 0; e < E; e++) out.push(...all.subarray((e * 2 + k) * R * C, (e * 2 + k + 1) * R * C));
  return out;
};
const entry = (key: string, tensor: string, scheme = "f32", shape = [E, R, C]): WeightEntry => ({
  key,
  tensor,
  index: "i",
  shape,
  layers: 2,
  scheme,
});

function write(name: string, dtype: "F32" | "BF16") {
  const path = join(dir, name);
  writeSafetensors(
    path,
    [0, 1].map((l) => ({
      name: `layers.${l}.input_linear.weight`,
      dtype,
      shape: [E, 2 * R, C],
      data: encodeSafetensorsData(fused(l), dtype),
    })),
  );
  return path;
}

describe("a block of rows of a fused tensor", () => {
  it("fusedPartOf reads `[k/n]` and nothing else", () => {
    expect(fusedPartOf("a.weight[1/2]")).toEqual({ tensor: "a.weight", k: 1, n: 2 });
    expect(fusedPartOf("a.weight")).toBeUndefined();
    expect(fusedPartOf("a.weight[2/2]")).toBeUndefined();
    expect(fusedPartOf("a.weight[0/1]")).toBeUndefined();
  });

  for (const [dtype, scheme] of [
    ["F32", "f32"],
    ["BF16", "f32"],
    ["BF16", "bf16"],
  ] as const) {
    it(`gate and up are the first and second half of each expert's rows (${dtype} stored, ${scheme} wanted)`, () => {
      const path = write(`fused-${dtype}.safetensors`, dtype);
      const w = SafetensorsWeights.open(path, {
        weights: [
          entry("layer.w_gate", "layers.{i}.input_linear.weight[0/2]", scheme),
          entry("layer.w_up", "layers.{i}.input_linear.weight[1/2]", scheme),
        ],
      });
      try {
        for (const layer of [0, 1]) {
          for (const [key, k] of [
            ["layer.w_gate", 0],
            ["layer.w_up", 1],
          ] as const) {
            const bytes = w.bytes(key, layer);
            const got =
              scheme === "f32"
                ? [...new Float32Array(bytes.slice().buffer)]
                : [...new Uint16Array(bytes.slice().buffer)].map(
                    (h) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]!,
                  );
            expect(got).toEqual(half(layer, k));
          }
        }
      } finally {
        w.close();
      }
    });
  }

  it("names the fused tensor when it is missing or its rows are not n times the weight's", () => {
    const path = write("fused-bad.safetensors", "F32");
    expect(() =>
      SafetensorsWeights.open(path, { weights: [entry("layer.w_gate", "layers.{i}.gate.weight[0/2]")] }),
    ).toThrow(
      /layers\.0\.gate\.weight.*missing: the model needs rows 1 of 2 of it for `layer\.w_gate` \(layer 0\)/,
    );
    expect(() =>
      SafetensorsWeights.open(path, {
        weights: [entry("layer.w_gate", "layers.{i}.input_linear.weight[0/2]", "f32", [E, 3, C])],
      }),
    ).toThrow(/input_linear\.weight.*shape is \[3, 4, 5\] but `layer\.w_gate` \(layer 0\) needs \[3, 6, 5\]/);
    expect(() =>
      SafetensorsWeights.open(path, {
        weights: [entry("layer.norm", "layers.{i}.input_linear.weight[0/2]", "f32", [C])],
      }),
    ).toThrow(/only a matrix can be a block of rows/);
  });
});
