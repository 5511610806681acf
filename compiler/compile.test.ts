import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { KvTypeError } from "../runtime/kv-type.ts";
import { compileModel, manifestsFor } from "./compile.ts";
import { SpecError } from "./lang/errors.ts";
import { compileSource, loadSpec } from "./lang/frontend.ts";

describe("compileModel", () => {
  it("counts ops before and after fusion and names one kernel per distinct specialization", () => {
    const spec = loadSpec("specs/tiny-mixtral.moe");
    const c = compileModel(spec, spec.models[0]!, { quant: "q8_0" });
    expect(c.summary.opsAfter).toBeLessThan(c.summary.opsBefore);
    const kernels = [...c.files["model.ts"]!.matchAll(/^function (\w+)/gm)].map((m) => m[1]);
    expect(new Set(kernels).size).toBe(kernels.length);
    // Two layers share every layer kernel: the forward pass loops, it does not unroll.
    expect(c.files["model.ts"]).toMatch(/for \(let l = 0; l < 2; l\+\+\)/);
    expect(kernels).toContain("moe_ffn_q8_0x8_q8_0x8_q8_0x8_64x96_top2_res");
  });
});

describe("the KV cache type", () => {
  const spec = loadSpec("specs/tiny-mixtral.moe");
  const model = spec.models[0]!;
  it("is f16 by default on cpu and webgpu, f32 on gpujs, and what --kv-type or kv_type: asks", () => {
    // The manifests a compile would write, without assembling the modules.
    expect(manifestsFor(model, undefined)(64).kvType).toBe("f16");
    expect(manifestsFor(model, undefined, "webgpu")(64).kvType).toBe("f16");
    expect(manifestsFor(model, undefined, "gpujs")(64).kvType).toBe("f32");
    expect(manifestsFor(model, undefined, "cpu", "f32")(64).kvType).toBe("f32");
    const t = compileSource(
      `${readFileSync("specs/tiny-mixtral.moe", "utf8")}\ntarget small { backend: cpu, memory: 1 GiB, max_context: 64, kv_type: f32 }\n`,
      "t.moe",
    );
    const c = compileModel(t, t.models[0]!, { target: t.targets.at(-1) });
    expect(c.manifest.kvType).toBe("f32");
    expect(JSON.parse(c.files["plan.json"]!).kv_type).toBe("f32");
    expect(compileModel(t, t.models[0]!, { target: t.targets.at(-1), kvType: "f16" }).manifest.kvType).toBe(
      "f16",
    );
  });

  it("refuses what a backend or the head size cannot hold, naming both", () => {
    expect(() => compileModel(spec, model, { backend: "gpujs", kvType: "f16" })).toThrow(
      /the gpujs backend cannot hold a f16 KV cache \(it holds f32\)/,
    );
    expect(() => compileModel(spec, model, { backend: "webgpu", kvType: "q8_0" })).toThrow(
      /the webgpu backend cannot hold a q8_0 KV cache \(it holds f16, f32\)/,
    );
    // tiny-mixtral's heads are 16 wide: half a q8_0 block.
    expect(() => compileModel(spec, model, { kvType: "q8_0" })).toThrow(KvTypeError);
    expect(() => compileModel(spec, model, { kvType: "q8_0" })).toThrow(/multiple of 32.*not 16/);
    const t = compileSource(
      `${readFileSync("specs/tiny-mixtral.moe", "utf8")}\ntarget small { backend: gpujs, memory: 1 GiB, max_context: 64, kv_type: f16 }\n`,
      "t.moe",
    );
    // From a target, the error points at its kv_type.
    expect(() => compileModel(t, t.models[0]!, { target: t.targets.at(-1) })).toThrow(SpecError);
  });

  it("an unknown kv_type in a target is a spec error with a suggestion", () => {
    expect(() =>
      compileSource(
        `${readFileSync("specs/tiny-mixtral.moe", "utf8")}\ntarget small { backend: cpu, memory: 1 GiB, max_context: 64, kv_type: f61 }\n`,
        "t.moe",
      ),
    ).toThrow(/unknown KV cache type `f61`/);
  });
});
