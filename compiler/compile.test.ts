import { describe, expect, it } from "vitest";
import { findScheme, getScheme, registerScheme } from "../runtime/quant/index.ts";
import { compileModel } from "./compile.ts";
import { SpecError } from "./lang/errors.ts";
import { loadSpec } from "./lang/frontend.ts";

describe("compileModel", () => {
  it("refuses a scheme that has no kernel for the backend, at the spec's place", () => {
    // A user's scheme with the layout of q8_0 but no cpu kernel.
    if (!findScheme("no_kernel_q8"))
      registerScheme({ ...getScheme("q8_0"), name: "no_kernel_q8", ggmlType: undefined, cpu: { dot: "" } });
    const spec = loadSpec("specs/tiny-mixtral.moe");
    const compile = () => compileModel(spec, spec.models[0]!, { quant: "no_kernel_q8" });
    expect(compile).toThrow(SpecError);
    expect(compile).toThrow(
      /scheme `no_kernel_q8` has no kernel for the cpu backend \(needed by `tok_embed`\)/,
    );
  });

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
