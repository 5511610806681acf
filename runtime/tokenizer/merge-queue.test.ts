// The merge queue's order: the lowest key first, equal keys leftmost first, whatever the push order.
import { describe, expect, it } from "vitest";
import { MergeQueue } from "./merge-queue.ts";

describe("MergeQueue", () => {
  it("pops by key, then by left index", () => {
    const q = new MergeQueue<string>();
    const pairs: [number, number][] = [
      [3, 4],
      [1, 9],
      [3, 1],
      [0, 7],
      [1, 2],
      [3, 0],
    ];
    for (const [key, left] of pairs) q.push(key, left, left + 1, `${key}@${left}`);
    const out: string[] = [];
    while (q.length > 0) out.push(q.pop()[2]);
    expect(out).toEqual(["0@7", "1@2", "1@9", "3@0", "3@1", "3@4"]);
  });

  it("agrees with a sort on random input, interleaving pushes and pops", () => {
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const q = new MergeQueue<number>();
    const model: [number, number][] = [];
    const order = (a: [number, number], b: [number, number]) => a[0] - b[0] || a[1] - b[1];
    for (let step = 0; step < 2000; step++) {
      if (model.length === 0 || rand(3) > 0) {
        const key = rand(20) - 10;
        const left = rand(1000);
        q.push(key, left, left + 1, key);
        model.push([key, left]);
      } else {
        model.sort(order);
        const [key, left] = model.shift()!;
        const [l, r, payload] = q.pop();
        expect([payload, l, r]).toEqual([key, left, left + 1]);
      }
    }
  });
});
