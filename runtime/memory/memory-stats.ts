// What `moec run --stats` prints and `--json` adds as "memory": the device peak against the budget,
// and how the expert cache did (demand hits and misses, bytes loaded, what prefetching contributed).
import { formatBytes } from "../units.ts";
import type { ExpertCacheStats } from "./expert-cache.ts";

export interface MemoryStats extends ExpertCacheStats {
  peak_device_bytes: number;
  budget_bytes: number;
  /** Host bytes holding offloaded experts (HostExpertSource.hostBytes); absent when none are held. */
  host_expert_bytes?: number;
}

const NO_CACHE: ExpertCacheStats = {
  expert_hits: 0,
  expert_misses: 0,
  bytes_loaded: 0,
  prefetch_loads: 0,
  prefetch_hits: 0,
  prefetch_unused: 0,
};

/** The "memory" object from the accountant, the expert cache (none when every expert is resident) and the host copies. */
export function memoryStats(
  device: { readonly peak: number; readonly budget: number },
  cache?: { stats(): ExpertCacheStats },
  hostExpertBytes?: number,
): MemoryStats {
  const out: MemoryStats = {
    peak_device_bytes: device.peak,
    budget_bytes: device.budget,
    ...(cache ? cache.stats() : NO_CACHE),
  };
  if (hostExpertBytes !== undefined) out.host_expert_bytes = hostExpertBytes;
  return out;
}

/** Demand hits over demand accesses; undefined before any access. */
export function hitRate(s: Pick<ExpertCacheStats, "expert_hits" | "expert_misses">): number | undefined {
  const n = s.expert_hits + s.expert_misses;
  return n === 0 ? undefined : s.expert_hits / n;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/**
 * One line for `--stats`, e.g.
 * `memory: peak 1.50 GiB of 24.00 GiB budget (6.3%); experts: 812 hits, 188 misses (81.2% hit rate), 3.40 GiB loaded; prefetch: 150 loads, 120 used`
 */
export function formatMemoryStats(s: MemoryStats): string {
  const budget = s.budget_bytes > 0 ? ` (${pct(s.peak_device_bytes / s.budget_bytes)})` : "";
  let line = `memory: peak ${formatBytes(s.peak_device_bytes)} of ${formatBytes(s.budget_bytes)} budget${budget}`;
  const rate = hitRate(s);
  if (rate === undefined && s.bytes_loaded === 0) line += "; experts: all resident";
  else {
    line += `; experts: ${s.expert_hits} hits, ${s.expert_misses} misses`;
    if (rate !== undefined) line += ` (${pct(rate)} hit rate)`;
    line += `, ${formatBytes(s.bytes_loaded)} loaded`;
  }
  if (s.prefetch_loads > 0) line += `; prefetch: ${s.prefetch_loads} loads, ${s.prefetch_hits} used`;
  if (s.host_expert_bytes !== undefined) line += `; host experts ${formatBytes(s.host_expert_bytes)}`;
  return line;
}
