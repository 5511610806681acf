// The KV type a GPU module was compiled for against what its backend can hold (no adapter needed: the
// choice of prelude is data).
import { describe, expect, it } from "vitest";
import type { KvType } from "../kv-type.ts";
import type { Manifest } from "../manifest.ts";
import { GpuError } from "./backend.ts";
import { type GpuModule, withKvType } from "./model.ts";
import type { GpuProgram } from "./program.ts";

const PRELUDES = { "": "//plain", subgroups: "//sg", f16: "//f16", "subgroups,f16": "//sg f16" };

function module(backend: string, kvType: KvType | undefined, preludes?: Record<string, string>): GpuModule {
  const program = {
    backend,
    kernels: { k: "body" },
    steps: [],
    arenaFloats: 0,
    preludes,
  } as unknown as GpuProgram;
  return { backend, manifest: { kvType } as Manifest, program };
}

describe("withKvType", () => {
  it("an f16 cache takes the f16 prelude, an f32 one never does, even where the adapter offers f16", () => {
    const all = new Set(["subgroups", "f16"]);
    expect(withKvType(module("webgpu", "f16", PRELUDES), all).kernels.k).toBe("//sg f16\nbody");
    expect(withKvType(module("webgpu", "f32", PRELUDES), all).kernels.k).toBe("//sg\nbody");
    // A module compiled before the choice stores f32.
    expect(withKvType(module("webgpu", undefined, PRELUDES), new Set(["f16"])).kernels.k).toBe(
      "//plain\nbody",
    );
  });

  it("refuses what the backend cannot hold, naming the backend and the type", () => {
    expect(() => withKvType(module("webgpu", "f16", PRELUDES), new Set(["subgroups"]))).toThrow(GpuError);
    expect(() => withKvType(module("webgpu", "f16", PRELUDES), new Set(["subgroups"]))).toThrow(
      "webgpu backend: this adapter offers no shader-f16, so it cannot hold an f16 KV cache; compile with --kv-type f32",
    );
    expect(() => withKvType(module("gpujs", "f16"), new Set())).toThrow(
      "gpujs backend: it cannot hold an f16 KV cache; compile with --kv-type f32",
    );
    expect(() => withKvType(module("webgpu", "q8_0", PRELUDES), new Set(["f16"]))).toThrow(
      "webgpu backend: cannot hold a q8_0 KV cache; compile with --kv-type f32 or f16",
    );
    expect(withKvType(module("gpujs", "f32"), new Set()).kernels.k).toBe("body");
  });
});
