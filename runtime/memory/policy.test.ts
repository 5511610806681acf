import { describe, expect, it } from "vitest";
import { type EvictionPolicy, LfuPolicy, LruPolicy, policyByName, policyNames } from "./policy.ts";

const none = new Set<number>();

/** Resident experts in the order the policy would evict them. */
function evictionOrder(p: EvictionPolicy): number[] {
  const out: number[] = [];
  const taken = new Set<number>();
  for (let v = p.victim(taken); v !== -1; v = p.victim(taken)) {
    out.push(v);
    taken.add(v);
  }
  return out;
}

describe("LruPolicy", () => {
  it("evicts the least recently inserted or touched", () => {
    const p = new LruPolicy();
    p.insert(3);
    p.insert(1);
    p.insert(2);
    expect(p.victim(none)).toBe(3);
    p.touch(3);
    expect(evictionOrder(p)).toEqual([1, 2, 3]);
    p.evict(1);
    expect(evictionOrder(p)).toEqual([2, 3]);
  });

  it("skips excluded experts; -1 when all are", () => {
    const p = new LruPolicy();
    p.insert(0);
    p.insert(1);
    expect(p.victim(new Set([0]))).toBe(1);
    expect(p.victim(new Set([0, 1]))).toBe(-1);
    expect(new LruPolicy().victim(none)).toBe(-1);
  });

  it("a touch of an expert that is not resident changes nothing", () => {
    const p = new LruPolicy();
    p.insert(0);
    p.insert(1);
    p.touch(7);
    expect(evictionOrder(p)).toEqual([0, 1]);
  });
});

describe("LfuPolicy", () => {
  it("evicts the least used, the least recent among equals", () => {
    const p = new LfuPolicy();
    for (const e of [0, 1, 2]) {
      p.insert(e);
      p.touch(e);
    }
    p.touch(0);
    p.touch(0);
    p.touch(2);
    // uses: 0 → 3, 1 → 1, 2 → 2
    expect(evictionOrder(p)).toEqual([1, 2, 0]);
    p.touch(1);
    // 1 and 2 both at 2 uses; 2 was touched before 1
    expect(evictionOrder(p)).toEqual([2, 1, 0]);
  });

  it("remembers counts across eviction, and a prefetch load adds no use", () => {
    const p = new LfuPolicy();
    p.insert(5);
    for (let i = 0; i < 4; i++) p.touch(5);
    p.evict(5);
    p.insert(6);
    p.touch(6);
    p.insert(5); // back, with its 4 uses
    expect(p.victim(none)).toBe(6);
    p.insert(7); // prefetched: 0 uses, newest
    expect(evictionOrder(p)).toEqual([7, 6, 5]);
  });

  it("differs from LRU on a frequent but not recent expert", () => {
    const lru = new LruPolicy();
    const lfu = new LfuPolicy();
    for (const p of [lru, lfu]) {
      p.insert(0);
      for (let i = 0; i < 5; i++) p.touch(0);
      p.insert(1);
      p.touch(1);
    }
    expect(lru.victim(none)).toBe(0);
    expect(lfu.victim(none)).toBe(1);
  });
});

describe("policyByName", () => {
  it("makes a fresh instance per call", () => {
    const make = policyByName("LRU");
    const a = make();
    expect(a).toBeInstanceOf(LruPolicy);
    expect(a).not.toBe(make());
    expect(policyByName("lfu")()).toBeInstanceOf(LfuPolicy);
    expect(policyNames).toEqual(["lru", "lfu"]);
  });

  it("an unknown name lists the known ones", () => {
    expect(() => policyByName("fifo")).toThrow("unknown expert cache policy `fifo` (known: lru, lfu)");
  });
});
