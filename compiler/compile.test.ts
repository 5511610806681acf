import { describe, expect, it } from "vitest";
import { compileModel } from "./compile.ts";
import { loadSpec } from "./lang/frontend.ts";

describe("compileModel", () => {
  it("counts ops before and after fusion and names one kernel per distinct specialization", () => {
    const spec = loadSpec("specs/tiny-mixtral.moe");
    const c = compileModel(spec, spec.models[0]!, { quant: "q8_0" });
    expect(c.summary.opsAfter).toBeLessThan(c.summary.opsBefore);
    const kernels = [...c.files["model.ts"]!.matchAll(/^function (\w+)/gm)].map((m) => m[1]);
    expect(new Set(kernels).size).toBe(kernels.length);
    // Two layers share every layer kernel: the forward pass loops, it does not unroll.
    expect(c.files["model.ts"]).toMatch(/for \(let l = 0; l < 2; l\+\+\)/);
    expect(kernels).toContain("moe_ffn_q8_0_q8_0_q8_0_64x96_top2_res");
  });
});
