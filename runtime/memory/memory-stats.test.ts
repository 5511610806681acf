import { describe, expect, it } from "vitest";
import { Accountant } from "./accountant.ts";
import { formatMemoryStats, hitRate, memoryStats } from "./memory-stats.ts";

const GiB = 2 ** 30;

describe("memoryStats", () => {
  it("has the fields the issue asks for, from the accountant and the cache", () => {
    const a = new Accountant(24 * GiB);
    a.alloc("weights", 1.5 * GiB);
    const cache = {
      stats: () => ({
        expert_hits: 812,
        expert_misses: 188,
        bytes_loaded: 3.4 * GiB,
        prefetch_loads: 150,
        prefetch_hits: 120,
        prefetch_unused: 30,
      }),
    };
    const s = memoryStats(a, cache);
    expect(s).toEqual({
      peak_device_bytes: 1.5 * GiB,
      budget_bytes: 24 * GiB,
      expert_hits: 812,
      expert_misses: 188,
      bytes_loaded: 3.4 * GiB,
      prefetch_loads: 150,
      prefetch_hits: 120,
      prefetch_unused: 30,
    });
    expect(JSON.parse(JSON.stringify({ memory: s })).memory).toEqual(s);
    expect(hitRate(s)).toBeCloseTo(0.812);
    expect(formatMemoryStats(s)).toBe(
      "memory: peak 1.50 GiB of 24.00 GiB budget (6.3%); experts: 812 hits, 188 misses (81.2% hit rate), 3.40 GiB loaded; prefetch: 150 loads, 120 used",
    );
  });

  it("without an expert cache: zero counts, said plainly", () => {
    const a = new Accountant(1000);
    a.alloc("weights", 500);
    const s = memoryStats(a, undefined, 0);
    expect(s).toMatchObject({ expert_hits: 0, expert_misses: 0, bytes_loaded: 0, host_expert_bytes: 0 });
    expect(hitRate(s)).toBeUndefined();
    expect(formatMemoryStats(s)).toBe(
      "memory: peak 500 B of 1000 B budget (50.0%); experts: all resident; host experts 0 B",
    );
  });
});
