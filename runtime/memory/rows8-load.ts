// The weights the compiler chose to store 8 rows interleaved (WeightEntry.rows8, runtime/quant/rows8.ts),
// repacked from the file's row-major bytes as they reach the heap: resident weights in place, offloaded
// experts' host copies once, and experts read from the file on each read into their slot.
import { schemeAt, type WeightEntry } from "../manifest.ts";
import { getScheme } from "../quant/registry.ts";
import { interleaveRows8 } from "../quant/rows8.ts";
import type { WeightSource } from "../weights.ts";
import type { ExpertRole, ExpertSource } from "./expert-source.ts";

/** Whether layer `layer`'s bytes of `w` are stored interleaved. */
export function storedRows8(w: WeightEntry, layer: number | undefined): boolean {
  return !!w.rows8 && !!getScheme(schemeAt(w, w.layers ? layer : undefined)).wasm?.rows8;
}

/** Interleaves `length` bytes at `at` of `u8` (whole rows of `w`: the tensor, or one expert's matrix) in
 * place, where the manifest stores `w` that way in this layer. */
export function toRows8(
  w: WeightEntry,
  layer: number | undefined,
  u8: Uint8Array,
  at = 0,
  length = u8.length - at,
): void {
  if (!storedRows8(w, layer)) return;
  const s = getScheme(schemeAt(w, w.layers ? layer : undefined));
  const rowBytes = (w.shape.at(-1)! / s.blockSize) * s.blockBytes;
  interleaveRows8(s.wasm!.rows8!, u8, at, length / rowBytes, rowBytes, s.blockBytes);
}

/** A source whose bytes are as the CPU's kernels read them: the interleaved weights repacked (a copy). */
export function rows8Source(inner: WeightSource, weights: readonly WeightEntry[]): WeightSource {
  const byKey = new Map(weights.map((w) => [w.key, w]));
  return {
    bytes(key, layer) {
      const bytes = inner.bytes(key, layer);
      const w = byKey.get(key);
      if (!w || !storedRows8(w, layer)) return bytes;
      const copy = bytes.slice();
      toRows8(w, layer, copy);
      return copy;
    },
  };
}

/** An expert source whose reads land interleaved where the manifest says so (the file's are row-major). */
export function rows8Experts(inner: ExpertSource, entries: Record<ExpertRole, WeightEntry>): ExpertSource {
  return {
    read(layer, expert, role, dst) {
      inner.read(layer, expert, role, dst);
      toRows8(entries[role], layer, dst);
    },
  };
}
