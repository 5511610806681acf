// What `moec run --weights FILE.gguf` loads: each weight compiled in the type its tensor has in the file,
// for both Mixtral expert layouts (merged 3-D tensors, and the older one tensor per expert).
import { afterAll, describe, expect, it } from "vitest";
import { writeRandomMixtralGguf } from "../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../runtime/checkpoint/test-support.ts";
import { ModelInstance } from "../runtime/model.ts";
import { loadForRun } from "./model-source.ts";

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

const sizes = {
  hidden: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 96,
  experts: 4,
  topK: 2,
  vocab: 300,
  seed: 9,
};

describe("loadForRun on a GGUF file", () => {
  it("reads the experts' type from expert 0 when the file has one tensor per expert", async () => {
    const logits: Float32Array[][] = [];
    for (const layout of ["merged", "per-expert"] as const) {
      const path = `${dir}/${layout}.gguf`;
      writeRandomMixtralGguf(path, { ...sizes, type: "q8_0", layout });
      const loaded = await loadForRun(undefined, path, { maxContext: 64 });
      try {
        const experts = loaded.module.manifest.weights.filter((w) => /w_(gate|up|down)$/.test(w.key));
        expect(experts.map((w) => w.scheme)).toEqual(["q8_0", "q8_0", "q8_0"]);
        const m = new ModelInstance(loaded.module, loaded.weights);
        logits.push([1, 288, 300 - 1].map((t, pos) => m.step(t, pos).slice()));
      } finally {
        loaded.close();
      }
    }
    expect(logits[1]).toEqual(logits[0]);
  });
});
