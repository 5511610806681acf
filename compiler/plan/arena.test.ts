import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type ArenaPlan,
  bytesOverlap,
  type LiveBuffer,
  liveBytesLowerBound,
  livenessIntervals,
  livesOverlap,
  placeInOrder,
  planArena,
  verifyArena,
} from "./arena.ts";
import { planArenaExhaustive } from "./arena-exhaustive.ts";

const buf = (id: number, size: number, start: number, end: number): LiveBuffer => ({ id, size, start, end });
const offsetsOf = (plan: ArenaPlan) => Object.fromEntries(plan.offsets);

describe("planArena by hand", () => {
  it("reuses offset 0 for buffers whose lifetimes are disjoint", () => {
    const bufs = [buf(1, 100, 0, 1), buf(2, 200, 2, 3), buf(3, 50, 4, 4)];
    const plan = planArena(bufs);
    expect(offsetsOf(plan)).toEqual({ 1: 0, 2: 0, 3: 0 });
    expect(plan.size).toBe(200);
  });

  it("stacks buffers that are all live together: arena = sum of sizes", () => {
    const bufs = [buf(1, 64, 0, 5), buf(2, 128, 1, 3), buf(3, 192, 2, 2)];
    const plan = planArena(bufs);
    expect(plan.size).toBe(384);
    expect(verifyArena(bufs, plan)).toBeNull();
  });

  it("aligns every offset, padding only below the top buffer", () => {
    const bufs = [buf(1, 10, 0, 1), buf(2, 10, 1, 2)];
    const plan = planArena(bufs, 64);
    expect(new Set(plan.offsets.values())).toEqual(new Set([0, 64]));
    expect(plan.size).toBe(74);
    expect(planArena(bufs, 1).size).toBe(20);
  });

  it("puts the bigger padding on top when that shrinks the arena", () => {
    // Size order puts 65 first and pads it to 128; 64 below and 65 on top needs only 129.
    const bufs = [buf(1, 65, 0, 0), buf(2, 64, 0, 0)];
    expect(placeInOrder(bufs, 64).size).toBe(192);
    expect(planArena(bufs, 64).size).toBe(129);
  });

  it("fills a gap left between two earlier buffers", () => {
    // 1 and 3 are live at step 0 and 2 respectively; 2 spans both, so it goes above them, and 4 (live
    // at step 1 only, alongside 2) drops into the hole under 2.
    const bufs = [buf(1, 256, 0, 0), buf(2, 128, 0, 2), buf(3, 256, 2, 2), buf(4, 192, 1, 1)];
    const plan = planArena(bufs);
    expect(plan.size).toBe(384);
    expect(verifyArena(bufs, plan)).toBeNull();
  });

  it("handles no buffers and empty buffers", () => {
    expect(planArena([])).toEqual({ offsets: new Map(), size: 0 });
    const plan = planArena([buf(1, 0, 0, 3), buf(2, 64, 0, 3)]);
    expect(plan.size).toBe(64);
    expect(verifyArena([buf(1, 0, 0, 3), buf(2, 64, 0, 3)], plan)).toBeNull();
  });

  it("rejects bad input", () => {
    expect(() => planArena([buf(1, 8, 0, 0), buf(1, 8, 1, 1)])).toThrow(/duplicate/);
    expect(() => planArena([buf(1, -8, 0, 0)])).toThrow(/size/);
    expect(() => planArena([buf(1, 8, 2, 1)])).toThrow(/live range/);
    expect(() => planArena([], 0)).toThrow(/alignment/);
  });
});

describe("verifyArena", () => {
  const bufs = [buf(1, 100, 0, 2), buf(2, 100, 2, 3), buf(3, 100, 3, 4)];
  it("accepts a valid plan and reports the first problem of a bad one", () => {
    const ok = {
      offsets: new Map([
        [1, 0],
        [2, 128],
        [3, 0],
      ]),
      size: 228,
    };
    expect(verifyArena(bufs, ok)).toBeNull();
    // 1 and 3 share bytes but are never live together: fine. 1 and 2 meet at step 2: not fine.
    const clash = {
      offsets: new Map([
        [1, 0],
        [2, 64],
        [3, 0],
      ]),
      size: 164,
    };
    expect(verifyArena(bufs, clash)).toEqual({ kind: "overlap", a: 1, b: 2 });
    expect(
      verifyArena(bufs, {
        offsets: new Map([
          [1, 0],
          [2, 128],
        ]),
        size: 228,
      }),
    ).toEqual({
      kind: "unplaced",
      id: 3,
    });
    expect(
      verifyArena(bufs, {
        ...ok,
        offsets: new Map([
          [1, 0],
          [2, 100],
          [3, 0],
        ]),
      }),
    ).toEqual({
      kind: "misaligned",
      id: 2,
      offset: 100,
    });
    expect(verifyArena(bufs, { ...ok, size: 200 })).toEqual({ kind: "out-of-bounds", id: 2, offset: 128 });
  });
});

describe("livenessIntervals", () => {
  it("runs from definition to last use; inputs from step 0; outputs to the last step", () => {
    const steps = [
      { defs: [1], uses: [0] }, // 0 is a graph input
      { defs: [2], uses: [1] },
      { defs: [3], uses: [1, 2] },
      { defs: [4], uses: [3] }, // 4 is never used but is an output
      { defs: [5], uses: [] }, // 5 is dead on arrival: still needs its bytes at step 4
    ];
    const live = livenessIntervals(steps, new Set([4]));
    expect(Object.fromEntries(live)).toEqual({
      0: { start: 0, end: 0 },
      1: { start: 0, end: 2 },
      2: { start: 1, end: 2 },
      3: { start: 2, end: 3 },
      4: { start: 3, end: 4 },
      5: { start: 4, end: 4 },
    });
  });

  it("covers every step that mentions a buffer", () => {
    const idArb = fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 3 });
    const stepsArb = fc.array(fc.record({ defs: idArb, uses: idArb }), { minLength: 1, maxLength: 12 });
    fc.assert(
      fc.property(stepsArb, (steps) => {
        const live = livenessIntervals(steps);
        steps.forEach((s, i) => {
          for (const id of [...s.defs, ...s.uses]) {
            const r = live.get(id)!;
            expect(r.start <= i && i <= r.end).toBe(true);
          }
        });
      }),
    );
  });
});

// Sizes from three regimes: tiny next to the 64-byte alignment (padding dominates), mid, and large.
const sizeArb = fc.oneof(
  fc.integer({ min: 0, max: 80 }),
  fc.integer({ min: 1, max: 300 }),
  fc.integer({ min: 1, max: 5000 }),
  fc.integer({ min: 1, max: 40 }).map((k) => 64 * k),
);
const buffersArb = (maxLength: number) =>
  fc
    .array(
      fc.record({
        size: sizeArb,
        start: fc.integer({ min: 0, max: 9 }),
        len: fc.integer({ min: 0, max: 5 }),
      }),
      {
        maxLength,
      },
    )
    .map((rs) => rs.map((r, id) => buf(id, r.size, r.start, r.start + r.len)));
const alignArb = fc.constantFrom(1, 8, 64);

describe("planArena properties", () => {
  it("is valid (no live overlap, aligned, in bounds) and at least the live-bytes bound", () => {
    fc.assert(
      fc.property(buffersArb(40), alignArb, (bufs, align) => {
        const plan = planArena(bufs, align);
        expect(verifyArena(bufs, plan, align)).toBeNull();
        expect(plan.size).toBeGreaterThanOrEqual(liveBytesLowerBound(bufs));
      }),
      { numRuns: 200 },
    );
  });

  it("is within 10% of the exact optimum on up to 7 buffers", () => {
    fc.assert(
      fc.property(buffersArb(7), alignArb, (bufs, align) => {
        const plan = planArena(bufs, align);
        const best = planArenaExhaustive(bufs, align);
        expect(verifyArena(bufs, best, align)).toBeNull();
        expect(best.size).toBeGreaterThanOrEqual(liveBytesLowerBound(bufs));
        expect(best.size).toBeLessThanOrEqual(plan.size);
        expect(plan.size).toBeLessThanOrEqual(1.1 * best.size);
      }),
      { numRuns: 500 },
    );
  });
});

describe("planArenaExhaustive", () => {
  it("finds optima that need a tall buffer under a short one", () => {
    // Step 3: 4 and 5 (1920 bytes); step 4: 1, 2, 3, 4; step 5: 0 and 1. The optimum 1920 needs 1 under 0
    // so that 4 can sit on 5; size-first greedy puts 0 first and needs 2368.
    const bufs = [
      buf(0, 1088, 5, 5),
      buf(1, 640, 4, 5),
      buf(2, 192, 4, 4),
      buf(3, 128, 4, 4),
      buf(4, 640, 0, 4),
      buf(5, 1280, 3, 3),
    ];
    const best = planArenaExhaustive(bufs, 8);
    expect(best.size).toBe(1920);
    expect(verifyArena(bufs, best, 8)).toBeNull();
  });

  it("matches a brute force over every aligned offset on tiny inputs", () => {
    // Independent check of the candidate-offset argument: try every aligned offset for every buffer.
    const bruteForce = (bufs: LiveBuffer[], align: number) => {
      let best = bufs.reduce((sum, b) => sum + Math.ceil(b.size / align) * align, 0);
      const offs: number[] = [];
      const go = (i: number, top: number) => {
        if (top >= best) return;
        if (i === bufs.length) return void (best = top);
        const a = bufs[i]!;
        for (let x = 0; x + a.size < best; x += align) {
          const clash = bufs
            .slice(0, i)
            .some((b, j) => livesOverlap(a, b) && bytesOverlap(x, a.size, offs[j]!, b.size));
          if (clash) continue;
          offs[i] = x;
          go(i + 1, a.size === 0 ? top : Math.max(top, x + a.size));
        }
      };
      go(0, 0);
      return best;
    };
    const tinyArb = fc
      .array(
        fc.record({
          size: fc.integer({ min: 0, max: 12 }),
          start: fc.integer({ min: 0, max: 3 }),
          len: fc.integer({ min: 0, max: 2 }),
        }),
        { maxLength: 4 },
      )
      .map((rs) => rs.map((r, id) => buf(id, r.size, r.start, r.start + r.len)));
    fc.assert(
      fc.property(tinyArb, fc.constantFrom(1, 4, 8), (bufs, align) => {
        expect(planArenaExhaustive(bufs, align).size).toBe(bruteForce(bufs, align));
      }),
      { numRuns: 300 },
    );
  });

  it("refuses inputs too big to search", () => {
    expect(() => planArenaExhaustive(Array.from({ length: 20 }, (_, i) => buf(i, 8, 0, 0)))).toThrow(
      /too many/,
    );
  });
});
