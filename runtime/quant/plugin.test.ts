// --plugin FILE: schemes from a module's exports or its registerScheme calls, checked before use.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { findScheme, getScheme, registerScheme } from "./index.ts";
import { loadSchemePlugin } from "./plugin.ts";
import { schemeProblems, selfTestScheme } from "./validate.ts";

const dir = mkdtempSync(join(tmpdir(), "moec-plugin-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function plugin(source: string): string {
  const p = join(dir, `p${n++}.mjs`);
  writeFileSync(p, source);
  return p;
}

// An f32 copy scheme under a new name: the smallest valid plugin.
const valid = (
  name: string,
  dot = "{ for (let i = 0; i < NB; i++) acc += f32[(row >> 2) + i] * x[xo + i]; }",
) => `{
  name: "${name}", blockSize: 1, blockBytes: 4, description: "test copy of f32",
  encode(src, dst) { new Uint8Array(new Float32Array(src).buffer).forEach((b, i) => { dst[i] = b; }); },
  decode(src, dst) { dst.set(new Float32Array(src.slice().buffer)); },
  cpu: { dot: ${JSON.stringify(dot)} },
}`;

describe("loadSchemePlugin", () => {
  it("registers a default export", async () => {
    const added = await loadSchemePlugin(plugin(`export default ${valid("plug_default")};`));
    expect(added.map((s) => s.name)).toEqual(["plug_default"]);
    expect(getScheme("plug_default").blockBytes).toBe(4);
  });

  it("accepts a module that calls registerScheme itself", async () => {
    const registry = pathToFileURL(resolve("runtime/quant/registry.ts")).href;
    const p = plugin(
      `import { registerScheme } from ${JSON.stringify(registry)};\nregisterScheme(${valid("plug_registered")});`,
    );
    const added = await loadSchemePlugin(p);
    expect(added.map((s) => s.name)).toEqual(["plug_registered"]);
    expect(findScheme("plug_registered")).toBeDefined();
  });

  it("names every missing field of an exported object", async () => {
    const p = plugin(`export default { name: "half_done", blockSize: 32, encode() {} };`);
    await expect(loadSchemePlugin(p)).rejects.toThrow(
      /its default export is not a valid quantization scheme: missing `blockBytes` \(bytes per block, a positive integer\); missing `description`.*; missing `decode`.*; missing `cpu\.dot`/,
    );
    expect(findScheme("half_done")).toBeUndefined();
  });

  it("says so when a module exports no scheme and registers none", async () => {
    await expect(loadSchemePlugin(plugin(`export const answer = 42;`))).rejects.toThrow(
      /registers no quantization scheme: `export default` a QuantScheme .* \(its exports: answer\)/,
    );
  });

  it("runs the self-test: a cpu.dot that disagrees with decode is refused", async () => {
    const p = plugin(`export default ${valid("plug_bad_dot", "{ acc += 1; }")};`);
    await expect(loadSchemePlugin(p)).rejects.toThrow(
      /scheme `plug_bad_dot` fails its self-test: cpu\.dot gives/,
    );
  });

  it("a missing file, a syntax error and a name clash are clear errors", async () => {
    await expect(loadSchemePlugin(join(dir, "nope.mjs"))).rejects.toThrow(
      /--plugin .*nope\.mjs: no such file/,
    );
    await expect(loadSchemePlugin(plugin("export default {"))).rejects.toThrow(/cannot load it/);
    await expect(loadSchemePlugin(plugin(`export default ${valid("q8_0")};`))).rejects.toThrow(
      /`q8_0` is already registered/,
    );
  });

  it("loads examples/custom-quant/nf4.ts", async () => {
    const added = await loadSchemePlugin("examples/custom-quant/nf4.ts");
    expect(added.map((s) => s.name)).toEqual(findScheme("nf4") === added[0] ? ["nf4"] : []);
    expect(getScheme("nf4").blockSize).toBe(64);
  });
});

describe("scheme validation", () => {
  it("registerScheme refuses an invalid scheme, naming the problems", () => {
    expect(() => registerScheme({ name: "Bad Name" } as never)).toThrow(
      /not a valid quantization scheme: `name` must be a lower-case name.*missing `blockSize`/,
    );
    expect(() => registerScheme({ ...getScheme("q8_0"), name: "q8_0_copy" })).toThrow(
      /ggml type 8 is already `q8_0`/,
    );
    expect(schemeProblems({ ...getScheme("q8_0"), ggmlType: 2000 })).toEqual([
      expect.stringMatching(/`ggmlType` must be one of GGUF's type ids/),
    ]);
  });

  it("every built-in passes the self-test", () => {
    for (const name of [
      "f32",
      "f16",
      "bf16",
      "q8_0",
      "q4_0",
      "q4_1",
      "q5_0",
      "q5_1",
      "q2_k",
      "q3_k",
      "q4_k",
      "q5_k",
      "q6_k",
    ])
      expect(selfTestScheme(getScheme(name)), name).toEqual([]);
  });
});
