// Activation arena planner: give every intermediate buffer a byte offset in one shared arena so that
// buffers alive at the same schedule step never share bytes, and the arena stays small.
//
// This is the offline "dynamic storage allocation" problem (NP-hard in general), so we use the
// classic greedy in the spirit of tinygrad's memory planner: walk buffers in some priority order and
// put each at the lowest aligned offset that is free for its whole lifetime. Different orders win on
// different shapes of schedule, so we start from a few cheap ones, improve the order by a budgeted
// local search, and keep the smallest arena.

/** A buffer to place: `size` bytes, live during schedule steps `start..end` inclusive. */
export interface LiveBuffer {
  id: number;
  size: number;
  start: number;
  end: number;
}

export interface ArenaPlan {
  /** Byte offset of each buffer id inside the arena. */
  offsets: Map<number, number>;
  /** Arena bytes: the highest `offset + size` over all buffers (0 when there are none). */
  size: number;
}

export const DEFAULT_ALIGN = 64;

export function alignUp(x: number, align: number): number {
  return Math.ceil(x / align) * align;
}

/** Whether two buffers are live at a common step (ranges are inclusive). */
export function livesOverlap(a: LiveBuffer, b: LiveBuffer): boolean {
  return a.start <= b.end && b.start <= a.end;
}

/** Whether byte ranges [ao, ao+as) and [bo, bo+bs) intersect; empty ranges intersect nothing. */
export function bytesOverlap(ao: number, as: number, bo: number, bs: number): boolean {
  return as > 0 && bs > 0 && ao < bo + bs && bo < ao + as;
}

/**
 * Lowest aligned offset where `size` bytes avoid every range in `taken`. Scanning `taken` by offset,
 * the candidate only ever rises past a range that blocks it, so every aligned offset below the
 * answer is blocked by something: the result is the true lowest fit, i.e. the lowest gap.
 */
export function lowestFit(size: number, taken: { offset: number; size: number }[], align: number): number {
  if (size === 0) return 0;
  const sorted = taken.filter((t) => t.size > 0).sort((a, b) => a.offset - b.offset);
  let cand = 0;
  for (const t of sorted) {
    if (cand + size <= t.offset) break; // fits in the gap below t, and everything later is higher still
    cand = Math.max(cand, alignUp(t.offset + t.size, align));
  }
  return cand;
}

/** Place buffers one by one in the given order, each at its lowest free aligned offset. */
export function placeInOrder(order: readonly LiveBuffer[], align: number): ArenaPlan {
  const offsets = new Map<number, number>();
  const placed: LiveBuffer[] = [];
  let size = 0;
  for (const b of order) {
    const taken = placed
      .filter((p) => livesOverlap(p, b))
      .map((p) => ({ offset: offsets.get(p.id)!, size: p.size }));
    const offset = lowestFit(b.size, taken, align);
    offsets.set(b.id, offset);
    placed.push(b);
    if (b.size > 0) size = Math.max(size, offset + b.size);
  }
  return { offsets, size };
}

const length = (b: LiveBuffer) => b.end - b.start + 1;

// Candidate priority orders. Big-first packs large blocks before the small ones fragment memory; long-
// lived-first keeps the buffers that constrain the most steps at the bottom; area mixes the two; and
// start order is linear-scan allocation, which is optimal when sizes are equal. Ties break by id so
// the plan is deterministic.
const ORDERS: ((a: LiveBuffer, b: LiveBuffer) => number)[] = [
  (a, b) => b.size - a.size || length(b) - length(a),
  (a, b) => length(b) - length(a) || b.size - a.size,
  (a, b) => b.size * length(b) - a.size * length(a),
  (a, b) => a.start - b.start || b.size - a.size,
];

// Smaller arena wins; on a tie, the plan whose buffers sit lower overall (sum of their tops). The
// tie-break gives the local search a slope on plateaus where no single move changes the arena size,
// e.g. when several buffers share the top row and each must move down before the arena can shrink.
function lowerPlan(buffers: readonly LiveBuffer[]): (a: ArenaPlan, b: ArenaPlan) => boolean {
  const sumTops = (plan: ArenaPlan) => buffers.reduce((sum, b) => sum + plan.offsets.get(b.id)! + b.size, 0);
  return (a, b) => a.size < b.size || (a.size === b.size && sumTops(a) < sumTops(b));
}

// Local-search budget, in re-placements of the whole order. One costs ~n^2 pair checks, so the search
// is capped at ~SEARCH_BUDGET checks (big schedules get few or no moves: the seed orders still stand),
// and at MAX_TRIES, past which tiny inputs gain little (measured on random <= 7-buffer cases: seed
// orders alone are up to ~35% over the exhaustive optimum, one climb ~25%, 500 tries ~1.5%).
const SEARCH_BUDGET = 4_000_000;
const MAX_TRIES = 500;

/**
 * Plan the arena: place buffers greedily in each seed order, then improve each order by local search
 * (move one buffer to another position in the order, keep the move if the plan gets better), and
 * keep the best plan seen. The seed orders alone can miss the optimum by 30%+ on small awkward cases
 * (a tall buffer that should sit under a shorter one, alignment padding that belongs on top); the
 * local search fixes most of those. Each re-placement costs ~n^2, so big schedules get fewer moves.
 */
export function planArena(buffers: readonly LiveBuffer[], align = DEFAULT_ALIGN): ArenaPlan {
  checkBuffers(buffers, align);
  const search: Search = {
    align,
    better: lowerPlan(buffers),
    floor: liveBytesLowerBound(buffers),
    tries: Math.min(MAX_TRIES, Math.floor(SEARCH_BUDGET / Math.max(1, buffers.length ** 2))),
  };
  let best: ArenaPlan = { offsets: new Map(), size: 0 };
  let bestOrder: LiveBuffer[] = [];
  ORDERS.forEach((cmp, k) => {
    const [order, plan] = hillClimb(
      [...buffers].sort((a, b) => cmp(a, b) || a.id - b.id),
      search,
    );
    if (k === 0 || search.better(plan, best)) [bestOrder, best] = [order, plan];
  });
  // Iterated local search with what budget is left: kick the best order (a few random moves) and
  // climb again. Seeded, so the same input always gets the same plan.
  const random = mulberry32(0x5eed);
  const n = buffers.length;
  while (search.tries > 0 && best.size > search.floor && n > 1) {
    const kicked = [...bestOrder];
    for (let k = 0; k < KICK_MOVES; k++) {
      kicked.splice(Math.floor(random() * n), 0, ...kicked.splice(Math.floor(random() * n), 1));
    }
    const [order, plan] = hillClimb(kicked, search);
    if (search.better(plan, best)) [bestOrder, best] = [order, plan];
  }
  return best;
}

const KICK_MOVES = 3;

/** Small deterministic PRNG (uniform in [0, 1)). */
function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Search {
  align: number;
  better: (a: ArenaPlan, b: ArenaPlan) => boolean;
  /** No plan can beat this (live-bytes bound), so stop searching on reaching it. */
  floor: number;
  /** Re-placements left, shared by all the climbs. */
  tries: number;
}

/** First-improvement hill climbing over "move buffer i to position j" of the placement order. */
function hillClimb(order: LiveBuffer[], search: Search): [LiveBuffer[], ArenaPlan] {
  let best = placeInOrder(order, search.align);
  const n = order.length;
  let improved = true;
  while (improved && best.size > search.floor) {
    improved = false;
    for (let i = 0; i < n && !improved; i++) {
      for (let j = 0; j < n && !improved; j++) {
        if (i === j) continue;
        if (search.tries-- <= 0) return [order, best];
        const o = [...order];
        o.splice(j, 0, ...o.splice(i, 1));
        const plan = placeInOrder(o, search.align);
        if (search.better(plan, best)) [order, best, improved] = [o, plan, true];
      }
    }
  }
  return [order, best];
}

export function checkBuffers(buffers: readonly LiveBuffer[], align: number): void {
  if (!Number.isInteger(align) || align < 1)
    throw new Error(`arena: alignment must be a positive integer, got ${align}`);
  const seen = new Set<number>();
  for (const b of buffers) {
    if (seen.has(b.id)) throw new Error(`arena: duplicate buffer id ${b.id}`);
    seen.add(b.id);
    if (!Number.isInteger(b.size) || b.size < 0)
      throw new Error(`arena: buffer ${b.id} has bad size ${b.size}`);
    if (!(b.start <= b.end))
      throw new Error(`arena: buffer ${b.id} has empty live range [${b.start}, ${b.end}]`);
  }
}

/** Max over steps of the bytes live at that step: no valid plan can be smaller. */
export function liveBytesLowerBound(buffers: readonly LiveBuffer[]): number {
  // Sweep: +size at start, -size after end; at equal steps apply starts before ends (ranges are inclusive).
  const events = buffers.flatMap((b) => [
    { at: b.start, delta: b.size },
    { at: b.end + 1, delta: -b.size },
  ]);
  events.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let live = 0;
  let peak = 0;
  for (const e of events) {
    live += e.delta;
    peak = Math.max(peak, live);
  }
  return peak;
}

export interface Step {
  defs: number[];
  uses: number[];
}

/**
 * Live range of each buffer over an ordered schedule. A buffer is live from the step that defines it
 * (it needs memory to be written into) to its last use. Buffers used before any definition are inputs
 * filled before the schedule runs, so they start at step 0; `outputs` must survive the last step.
 */
export function livenessIntervals(
  steps: readonly Step[],
  outputs: ReadonlySet<number> = new Set(),
): Map<number, { start: number; end: number }> {
  const ranges = new Map<number, { start: number; end: number }>();
  steps.forEach((step, i) => {
    for (const id of step.defs) {
      const r = ranges.get(id);
      if (r) r.end = i;
      else ranges.set(id, { start: i, end: i });
    }
    for (const id of step.uses) {
      const r = ranges.get(id);
      if (r) r.end = i;
      else ranges.set(id, { start: 0, end: i });
    }
  });
  const last = Math.max(0, steps.length - 1);
  for (const id of outputs) {
    const r = ranges.get(id);
    if (r) r.end = last;
    else ranges.set(id, { start: 0, end: last });
  }
  return ranges;
}

export type ArenaViolation =
  | { kind: "overlap"; a: number; b: number }
  | { kind: "unplaced"; id: number }
  | { kind: "misaligned"; id: number; offset: number }
  | { kind: "out-of-bounds"; id: number; offset: number };

/**
 * First problem with `plan`, or null when it is valid: two simultaneously live buffers sharing bytes,
 * a buffer without an offset, a misaligned offset, or a buffer poking past `plan.size`.
 */
export function verifyArena(
  buffers: readonly LiveBuffer[],
  plan: ArenaPlan,
  align = DEFAULT_ALIGN,
): ArenaViolation | null {
  for (const b of buffers) {
    const offset = plan.offsets.get(b.id);
    if (offset === undefined) return { kind: "unplaced", id: b.id };
    if (offset % align !== 0) return { kind: "misaligned", id: b.id, offset };
    if (offset < 0 || (b.size > 0 && offset + b.size > plan.size))
      return { kind: "out-of-bounds", id: b.id, offset };
  }
  // Sorted by start, a buffer can only meet later ones that start no later than it ends.
  const byStart = [...buffers].sort((a, b) => a.start - b.start);
  for (let i = 0; i < byStart.length; i++) {
    const a = byStart[i]!;
    for (let j = i + 1; j < byStart.length && byStart[j]!.start <= a.end; j++) {
      const b = byStart[j]!;
      if (bytesOverlap(plan.offsets.get(a.id)!, a.size, plan.offsets.get(b.id)!, b.size)) {
        return { kind: "overlap", a: a.id, b: b.id };
      }
    }
  }
  return null;
}
