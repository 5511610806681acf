// The weights the compiler chose to store 8 rows interleaved (WeightEntry.rows8, runtime/quant/rows8.ts),
// repacked from the file's row-major bytes as they reach the heap: resident weights in place, offloaded
// experts' host copies once as they are made (HostSourceOptions.prepare), and experts read from the file on
// each read into their slot.
import { schemeAt, type WeightEntry } from "../manifest.ts";
import { getScheme } from "../quant/registry.ts";
import { interleaveRows8 } from "../quant/rows8.ts";
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

/** An expert source whose reads land interleaved where the manifest says so (the file's are row-major). */
export function rows8Experts(inner: ExpertSource, entries: Record<ExpertRole, WeightEntry>): ExpertSource {
  return {
    read(layer, expert, role, dst) {
      inner.read(layer, expert, role, dst);
      toRows8(entries[role], layer, dst);
    },
  };
}
