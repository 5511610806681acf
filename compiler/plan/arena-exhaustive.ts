// Exact minimum arena for tiny inputs, used by tests to measure how far the greedy planner is off.
//
// Why the search below is exact. Take any optimal plan and let buffers "fall": while some buffer can
// move down by `align` bytes without colliding with a buffer live at the same time, move it. Offsets
// only drop and stay on the align grid, so this stops, and the arena never grows. In the settled plan
// each buffer i sits at offset 0 or cannot drop by `align`, which means some conflicting buffer j ends
// in (x_i - align, x_i], i.e. x_i = alignUp(x_j + size_j), with x_j < x_i. Now list the settled plan's
// buffers by (offset, index). The search places buffers in exactly such non-decreasing (offset, index)
// order and, for each, tries offset 0 and alignUp(x_j + size_j) for every already-placed conflicting j.
// Following the settled plan's order, every buffer's support j is already placed, so its offset is
// among the candidates and is feasible against the placed ones: the search reaches that optimal plan.
// Pruning only cuts branches that cannot beat the best arena found so far.

import {
  type ArenaPlan,
  alignUp,
  bytesOverlap,
  checkBuffers,
  DEFAULT_ALIGN,
  type LiveBuffer,
  liveBytesLowerBound,
  livesOverlap,
  planArena,
} from "./arena.ts";

export const EXHAUSTIVE_LIMIT = 8;

export function planArenaExhaustive(buffers: readonly LiveBuffer[], align = DEFAULT_ALIGN): ArenaPlan {
  checkBuffers(buffers, align);
  if (buffers.length > EXHAUSTIVE_LIMIT) {
    throw new Error(`arena-exhaustive: ${buffers.length} buffers is too many (limit ${EXHAUSTIVE_LIMIT})`);
  }
  // Empty buffers take no bytes and collide with nothing; leave them at 0 and out of the search.
  const bufs = buffers.filter((b) => b.size > 0);
  const n = bufs.length;
  const conflicts = bufs.map((a) => bufs.map((b) => a !== b && livesOverlap(a, b)));

  // Start from the greedy plan so pruning bites immediately; stop as soon as the live-bytes bound is met.
  const greedy = planArena(buffers, align);
  let bestSize = greedy.size;
  let bestOffsets: number[] = bufs.map((b) => greedy.offsets.get(b.id)!);
  const floor = liveBytesLowerBound(bufs);

  const offs: number[] = new Array(n).fill(-1);
  const feasible = (i: number, x: number) =>
    offs.every((o, j) => o < 0 || !conflicts[i]![j] || !bytesOverlap(x, bufs[i]!.size, o, bufs[j]!.size));

  const search = (placed: number, lastOffset: number, lastIndex: number, top: number): void => {
    if (bestSize === floor) return;
    if (placed === n) {
      if (top < bestSize) [bestSize, bestOffsets] = [top, [...offs]];
      return;
    }
    // Every remaining buffer lands at or above lastOffset.
    for (let k = 0; k < n; k++) {
      if (offs[k]! < 0 && lastOffset + bufs[k]!.size >= bestSize) return;
    }
    for (let i = 0; i < n; i++) {
      if (offs[i]! >= 0) continue;
      const cands = new Set([0]);
      offs.forEach((o, j) => {
        if (o >= 0 && conflicts[i]![j]) cands.add(alignUp(o + bufs[j]!.size, align));
      });
      for (const x of cands) {
        if (x < lastOffset || (x === lastOffset && i < lastIndex)) continue; // keep (offset, index) order
        if (x + bufs[i]!.size >= bestSize || !feasible(i, x)) continue;
        offs[i] = x;
        search(placed + 1, x, i, Math.max(top, x + bufs[i]!.size));
        offs[i] = -1;
      }
    }
  };
  search(0, 0, -1, 0);

  const offsets = new Map(buffers.map((b) => [b.id, 0]));
  for (const [i, b] of bufs.entries()) offsets.set(b.id, bestOffsets[i]!);
  return { offsets, size: bestSize };
}
