// A model whose experts do not fit the host memory budget runs with them read from the GGUF file, one
// expert at a time into a device slot: the process's peak RSS stays within what the CLI itself takes
// (measured on a tiny model), plus the device budget, plus the host budget, plus 32 MiB for transient
// buffers. The same run with the experts copied to host memory shows the check would see them.
import { spawnSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { compileModel } from "../compiler/compile.ts";
import { importGguf } from "../compiler/import.ts";
import { compileSource } from "../compiler/lang/frontend.ts";
import { writeDirAtomic } from "../runtime/atomic.ts";
import { openGguf } from "../runtime/checkpoint/gguf-read.ts";
import { type RandomMixtralOptions, writeRandomMixtralGguf } from "../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../runtime/checkpoint/test-support.ts";

const MiB = 2 ** 20;
const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

/** A random f32 GGUF and the model compiled for it (so the child process does not compile). */
function prepare(name: string, o: RandomMixtralOptions): { gguf: string; model: string } {
  const gguf = `${dir}/${name}.gguf`;
  writeRandomMixtralGguf(gguf, o);
  const file = openGguf(gguf);
  try {
    const spec = compileSource(importGguf(file).source, `${name}.moe`);
    const c = compileModel(spec, spec.models[0]!, { quant: "f32", maxContext: 64 });
    writeDirAtomic(`${dir}/${name}`, c.files);
  } finally {
    file.close();
  }
  return { gguf, model: `${dir}/${name}` };
}

/** `moec run` in a child process: its --json output and its peak RSS. */
function run(m: { gguf: string; model: string }, ...flags: string[]) {
  const r = spawnSync(
    process.execPath,
    ["--require", "./test/peak-rss.cjs", "bin/moec.js", "run", m.model, "--weights", m.gguf, "--json"].concat(
      ["-n", "4", "--temperature", "0", "--threads", "1", ...flags],
    ),
    { encoding: "utf8", timeout: 120_000 },
  );
  expect(r.status, r.stderr).toBe(0);
  const peak = Number(/peak_rss_bytes (\d+)/.exec(r.stderr)![1]);
  return { out: JSON.parse(r.stdout), peak };
}

const common = { heads: 4, kvHeads: 2, topK: 2, vocab: 300, type: "f32", seed: 11 };

describe("experts read from the file when the host budget cannot hold them", () => {
  it("peak RSS stays within the CLI's own + device budget + host budget + 32 MiB", () => {
    // 8 layers × 16 experts of 3 × 512 × 256 f32 weights: 1.5 MiB an expert, 192 MiB of experts.
    const big = prepare("big", { ...common, hidden: 256, layers: 8, ffn: 512, experts: 16 });
    const tiny = prepare("tiny", { ...common, hidden: 64, layers: 2, ffn: 64, experts: 4 });
    const expertBytes = 8 * 16 * 3 * 512 * 256 * 4;
    const vram = 40 * MiB;
    const host = 16 * MiB;

    const base = run(tiny);
    const fromFile = run(big, "--vram", String(vram), "--host-memory", String(host));
    const m = fromFile.out.memory;
    expect(m.peak_device_bytes).toBeLessThanOrEqual(vram);
    expect(m.host_expert_bytes).toBeUndefined();
    expect(m.expert_misses).toBeGreaterThan(0);
    expect(expertBytes).toBeGreaterThan(vram + host + 32 * MiB);
    expect(fromFile.peak).toBeLessThanOrEqual(base.peak + vram + host + 32 * MiB);

    // The same budget with room on the host: the experts are copied there, and the RSS shows it.
    const copied = run(big, "--vram", String(vram));
    expect(copied.out.memory.host_expert_bytes).toBe(expertBytes);
    expect(copied.out.tokens).toEqual(fromFile.out.tokens);
    expect(copied.peak).toBeGreaterThan(fromFile.peak + expertBytes * 0.75);
    console.log(
      `peak RSS: CLI on a tiny model ${(base.peak / MiB).toFixed(1)} MiB; ${expertBytes / MiB} MiB of experts read from the file with --vram ${vram / MiB}MiB --host-memory ${host / MiB}MiB: ${(fromFile.peak / MiB).toFixed(1)} MiB (${((fromFile.peak - base.peak) / MiB).toFixed(1)} above); copied to host memory: ${(copied.peak / MiB).toFixed(1)} MiB`,
    );
  });
});
