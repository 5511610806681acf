// `moec run --vram SIZE [--host-memory SIZE] [--stats] [--policy lru|lfu] [--no-prefetch]` on random
// Mixtral-shaped GGUF files: the memory flags, their errors, the "memory" object of --json, experts
// read from the file itself, and the expert cache's hit rate with and without prefetch.
import { spawnSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { type RandomMixtralOptions, writeRandomMixtralGguf } from "../runtime/checkpoint/random-gguf.ts";
import { scratchDir } from "../runtime/checkpoint/test-support.ts";
import { measureDevice, minimumSlots } from "../runtime/memory/device-plan.ts";
import { hitRate } from "../runtime/memory/memory-stats.ts";
import { ModelInstance } from "../runtime/model.ts";
import { memoryOptions } from "./commands/run.ts";
import { loadForRun } from "./model-source.ts";

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

function moec(...args: string[]) {
  const r = spawnSync(process.execPath, ["bin/moec.js", ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// Two layers of 4 experts, top-2: the least that runs holds 2 of 4 experts per layer.
const tiny: RandomMixtralOptions = {
  hidden: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 96,
  experts: 4,
  topK: 2,
  vocab: 300,
  type: "q8_0",
  seed: 3,
  headScale: 4,
};
const tinyPath = `${dir}/tiny.gguf`;
writeRandomMixtralGguf(tinyPath, tiny);
const expertBytes = tiny.layers * tiny.experts * 3 * tiny.ffn * (tiny.hidden / 32) * 34;

/** The least device memory the tiny model runs in at a context of 64: top-2 expert slots per layer. */
async function tinyMinimum(): Promise<number> {
  const loaded = await loadForRun(undefined, tinyPath, { maxContext: 64 });
  try {
    return measureDevice(loaded.module.manifest, minimumSlots(loaded.module.manifest)).used;
  } finally {
    loaded.close();
  }
}

const run = (...extra: string[]) =>
  moec(
    "run",
    "--weights",
    tinyPath,
    "-p",
    "the cat",
    "-n",
    "12",
    "--temperature",
    "0",
    "--context",
    "64",
    ...extra,
  );

describe("moec run with a device budget", () => {
  it("--json adds the memory object; the tokens are the fully resident run's", async () => {
    const budget = await tinyMinimum();
    const full = run("--json");
    expect(full.code, full.err).toBe(0);
    const resident = JSON.parse(full.out);
    expect(resident.memory).toMatchObject({ expert_hits: 0, expert_misses: 0, bytes_loaded: 0 });

    for (const flags of [
      ["--vram", String(budget)],
      ["--vram", String(budget), "--host-memory", "1KiB"],
    ]) {
      const r = run("--json", ...flags);
      expect(r.code, r.err).toBe(0);
      const out = JSON.parse(r.out);
      expect(out.tokens).toEqual(resident.tokens);
      const m = out.memory;
      for (const k of ["peak_device_bytes", "budget_bytes", "expert_hits", "expert_misses", "bytes_loaded"])
        expect(m).toHaveProperty(k);
      expect(m.budget_bytes).toBe(budget);
      expect(m.peak_device_bytes).toBeLessThanOrEqual(budget);
      expect(m.expert_misses).toBeGreaterThan(0);
      expect(m.bytes_loaded).toBeGreaterThan(0);
      // Host copies of every expert, or none when they are read from the file.
      if (flags.includes("--host-memory")) expect(m.host_expert_bytes).toBeUndefined();
      else expect(m.host_expert_bytes).toBe(expertBytes);
    }
  });

  it("--stats prints one line; the banner says where the experts come from", async () => {
    const budget = await tinyMinimum();
    const r = run("--vram", String(budget), "--host-memory", "1KiB", "--stats", "--policy", "lfu");
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(
      /expert cache: 2 of 4 experts per layer on the device, the rest read from .*tiny\.gguf \(lfu, prefetch\)/,
    );
    expect(r.err).toMatch(
      /memory: peak [\d.]+ [KM]iB of [\d.]+ [KM]iB budget .*; experts: \d+ hits, \d+ misses \([\d.]+% hit rate\), [\d.]+ KiB loaded/,
    );
  });

  it("bad input: one line, the numbers, a non-zero exit", async () => {
    const budget = await tinyMinimum();
    const cases: [string[], number, RegExp][] = [
      [["--vram", "lots"], 1, /^error: --vram: `lots` is not a size/],
      [
        ["--vram", "1GiB", "--host-memory", "12 parsecs"],
        1,
        /^error: --host-memory: `12 parsecs` is not a size/,
      ],
      [
        ["--host-memory", "1GiB"],
        1,
        /^error: --host-memory applies to the expert cache, which --vram SIZE sets up/,
      ],
      [
        ["--vram", "1GiB", "--policy", "mru"],
        1,
        /^error: --policy: unknown expert cache policy `mru` \(known: lru, lfu\)/,
      ],
      [
        ["--vram", String(budget - 1)],
        2,
        new RegExp(
          `^error: moec_random_mixtral needs at least .* \\(${budget} bytes\\) of device memory: dense weights .*2 expert slots per layer.*1 bytes short`,
        ),
      ],
    ];
    for (const [flags, code, message] of cases) {
      const r = run(...flags);
      expect(r.code, `${flags.join(" ")}: ${r.err}`).toBe(code);
      expect(r.err.trim().split("\n")).toHaveLength(1);
      expect(r.err).toMatch(message);
    }
  });
});

describe("the memory flags, checked before anything loads", () => {
  it("sizes with units, conflicting flags, unknown policies", () => {
    expect(memoryOptions({ vram: "24GiB", hostMemory: "64 GB" })).toEqual({
      deviceBudget: 24 * 2 ** 30,
      hostBudget: 64e9,
      policy: undefined,
      prefetch: true,
    });
    expect(memoryOptions({}).deviceBudget).toBeUndefined();
    expect(() => memoryOptions({ vram: "0" })).toThrow("--vram: the budget must be more than 0 bytes");
    expect(() => memoryOptions({ policy: "lfu", prefetch: false })).toThrow(
      "--policy, --no-prefetch apply to the expert cache, which --vram SIZE sets up: give --vram too",
    );
    expect(() => memoryOptions({ vram: "1GiB", policy: "LRU" })).not.toThrow();
    expect(() => memoryOptions({ vram: "1GiB", policy: "fifo" })).toThrow(
      "unknown expert cache policy `fifo`",
    );
  });
});

describe("prefetch", () => {
  // Eight layers of 8 experts, top-2, 2 slots per layer. Embeddings scaled by √hidden keep each token's
  // own direction strong in the residual stream, as trained models' streams are from layer to layer;
  // with the default scale the random layers rewrite the stream so much that the guess is noise.
  const deep: RandomMixtralOptions = {
    ...tiny,
    layers: 8,
    experts: 8,
    ffn: 128,
    vocab: 400,
    seed: 5,
    embedScale: 8,
  };
  const deepPath = `${dir}/deep.gguf`;
  writeRandomMixtralGguf(deepPath, deep);

  it("hits more with the next layer's experts guessed ahead; the tokens do not change", async () => {
    const loaded = await loadForRun(undefined, deepPath, { maxContext: 128 });
    try {
      const m = loaded.module.manifest;
      const budget = measureDevice(m, minimumSlots(m)).used;
      const runs = [true, false].map((prefetch) => {
        const model = new ModelInstance(loaded.module, loaded.weights, { deviceBudget: budget, prefetch });
        try {
          const tokens: number[] = [];
          let t = 1;
          for (let pos = 0; pos < 100; pos++) {
            const l = model.step(t, pos);
            let best = 0;
            for (let i = 1; i < l.length; i++) if (l[i]! > l[best]!) best = i;
            tokens.push(best);
            t = best;
          }
          return { tokens, stats: model.memory() };
        } finally {
          model.close();
        }
      });
      const [on, off] = runs as [(typeof runs)[0], (typeof runs)[0]];
      expect(on.tokens).toEqual(off.tokens);
      expect(on.stats.prefetch_hits).toBeGreaterThan(0);
      expect(off.stats.prefetch_loads).toBe(0);
      // Measured: 73.8% with prefetch (688 of 937 prefetched experts used), 38.1% without.
      expect(hitRate(on.stats)!).toBeGreaterThan(hitRate(off.stats)! + 0.2);
    } finally {
      loaded.close();
    }
  });
});

describe.each(["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"] as const)(
  "weights interleaved by 8 rows as they load (%s)",
  (type) => {
    it("experts from host copies or read from the file give the fully resident logits, bit for bit", async () => {
      const path = `${dir}/${type}.gguf`;
      writeRandomMixtralGguf(path, { ...tiny, type, seed: 5 });
      const loaded = await loadForRun(undefined, path, { maxContext: 64 });
      try {
        const m = loaded.module.manifest;
        // Every expert stack and attention matrix is stored interleaved (rows in eights, read by products only).
        expect(m.weights.filter((w) => w.rows8).map((w) => w.key).length).toBeGreaterThanOrEqual(5);
        const budget = measureDevice(m, minimumSlots(m)).used;
        const greedy = (model: ModelInstance) => {
          const out: Float32Array[] = [];
          let t = 1;
          for (let pos = 0; pos < 12; pos++) {
            const l = model.step(t, pos);
            out.push(l.slice());
            t = l.indexOf(Math.max(...l));
          }
          model.close();
          return out;
        };
        const resident = greedy(new ModelInstance(loaded.module, loaded.weights, {}));
        const host = new ModelInstance(loaded.module, loaded.weights, { deviceBudget: budget });
        expect(host.memory().host_expert_bytes).toBeGreaterThan(0);
        expect(greedy(host)).toEqual(resident);
        const file = new ModelInstance(loaded.module, loaded.weights, {
          deviceBudget: budget,
          hostBudget: 1024,
          expertFile: path,
        });
        expect(file.memory().host_expert_bytes).toBeUndefined();
        const fromFile = greedy(file);
        expect(fromFile).toEqual(resident);
      } finally {
        loaded.close();
      }
    });
  },
);
