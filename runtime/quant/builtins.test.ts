import { describe, expect, it } from "vitest";
import { builtinSchemes, f16Table, registerBuiltins } from "./builtins.ts";
import * as quant from "./index.ts";
import { findScheme, getScheme, schemeByGgmlType, schemeNames } from "./registry.ts";

// name: [ggml type, block size, block bytes] as in ggml-common.h / ggml.c's type traits
const layouts: Record<string, [number, number, number]> = {
  f32: [0, 1, 4],
  f16: [1, 1, 2],
  q4_0: [2, 32, 18],
  q4_1: [3, 32, 20],
  q5_0: [6, 32, 22],
  q5_1: [7, 32, 24],
  q8_0: [8, 32, 34],
  q2_k: [10, 256, 84],
  q3_k: [11, 256, 110],
  q4_k: [12, 256, 144],
  q5_k: [13, 256, 176],
  q6_k: [14, 256, 210],
  bf16: [30, 1, 2],
};

describe("built-in schemes", () => {
  it("registers all 13 with GGUF's type ids and block layouts", () => {
    expect(builtinSchemes.length).toBe(13);
    for (const [name, [type, size, bytes]] of Object.entries(layouts)) {
      const s = getScheme(name);
      expect([s.ggmlType, s.blockSize, s.blockBytes], name).toEqual([type, size, bytes]);
      expect(schemeByGgmlType(type)).toBe(s);
      expect(s.description.length).toBeGreaterThan(10);
      expect(s.description).not.toMatch(/\n/);
      expect(s.cpu.dot.trim().startsWith("{")).toBe(true);
    }
    expect(findScheme("Q4_K")).toBe(getScheme("q4_k"));
  });

  it("importing or registering again is harmless", async () => {
    const before = schemeNames().length;
    registerBuiltins();
    registerBuiltins();
    // a second instance of the module (same registry): its top-level registration runs again
    const again = "./builtins.ts?again";
    await import(/* @vite-ignore */ again);
    await import("./index.ts");
    expect(schemeNames().length).toBe(before);
    expect(getScheme("q6_k")).toBe(builtinSchemes.find((s) => s.name === "q6_k"));
  });

  it("index re-exports the registry, the scheme API and the f16 table", () => {
    expect(quant.getScheme("q8_0").blockBytes).toBe(34);
    expect(quant.bitsPerWeight(quant.getScheme("q4_k"))).toBe(4.5);
    expect(quant.f16Table).toBe(f16Table);
    expect(f16Table).toBeInstanceOf(Float32Array);
    expect(f16Table.length).toBe(65536);
  });
});
