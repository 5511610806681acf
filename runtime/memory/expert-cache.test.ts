import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { GgufWeights } from "../checkpoint/gguf-weights.ts";
import { writeRandomMixtralGguf } from "../checkpoint/random-gguf.ts";
import { scratchDir } from "../checkpoint/test-support.ts";
import "../quant/index.ts";
import { Accountant } from "./accountant.ts";
import { ExpertCache, type ExpertCacheOptions } from "./expert-cache.ts";
import {
  EXPERT_ROLES,
  type ExpertRole,
  type ExpertSource,
  expertLayout,
  FileExpertSource,
} from "./expert-source.ts";

const bytes = { gate: 12, up: 12, down: 8 };
const SLOT = 32;

/** Distinct, predictable bytes per (layer, expert, role); counts reads. */
class PatternSource implements ExpertSource {
  reads = 0;
  read(layer: number, expert: number, role: ExpertRole, dst: Uint8Array): void {
    expect(dst.length).toBe(bytes[role]);
    this.reads++;
    dst.set(pattern(layer, expert, role));
  }
}

function pattern(layer: number, expert: number, role: ExpertRole): Uint8Array {
  const r = EXPERT_ROLES.indexOf(role);
  return Uint8Array.from({ length: bytes[role] }, (_, i) => (layer * 101 + expert * 17 + r * 5 + i) & 0xff);
}

function cache(o: Partial<ExpertCacheOptions> = {}) {
  const acct = new Accountant(1 << 16);
  const heap = new Uint8Array(1 << 16);
  const source = new PatternSource();
  const c = new ExpertCache({
    layers: 2,
    experts: 4,
    slotsPerLayer: 2,
    topK: 1,
    bytes,
    heap,
    alloc: (label, n) => acct.alloc(label, n),
    source,
    policy: "lru",
    ...o,
  });
  return { c, acct, heap, source };
}

/** Demand accesses of layer 0, one expert per call. */
function run(c: ExpertCache, seq: number[], layer = 0): void {
  for (const e of seq) c.locateAll(layer, [e]);
}

describe("ExpertCache", () => {
  it("reserves every slot through the accountant", () => {
    const { c, acct } = cache({ slotsPerLayer: 3 });
    expect(c.slotBytes).toEqual([SLOT, SLOT]);
    expect(acct.byLabel()).toEqual({ "expert slots": 2 * 3 * SLOT });
    expect(c.slotOffsets()).toEqual([0, 64, 128, 192, 256, 320]);
  });

  it("a slot holds the expert's gate, up and down back to back, as the source gives them", () => {
    const { c, heap } = cache();
    const at = c.locate(1, 3);
    expect(heap.subarray(at, at + 12)).toEqual(pattern(1, 3, "gate"));
    expect(heap.subarray(at + 12, at + 24)).toEqual(pattern(1, 3, "up"));
    expect(heap.subarray(at + 24, at + 32)).toEqual(pattern(1, 3, "down"));
    expect(c.locate(1, 3)).toBe(at);
  });

  it("LRU on a known sequence", () => {
    const { c, source } = cache({ policy: "lru" });
    run(c, [0, 0, 0, 1, 2, 0]);
    // m0 h0 h0 m1 m2(evicts 0, the least recent) m0(evicts 1)
    expect(c.stats()).toMatchObject({ expert_hits: 2, expert_misses: 4, bytes_loaded: 4 * SLOT });
    expect(source.reads).toBe(4 * 3);
    expect(c.resident(0)).toEqual([2, 0]);
    expect(c.resident(1)).toEqual([-1, -1]);
  });

  it("LFU keeps the frequent expert where LRU lets it go", () => {
    const { c } = cache({ policy: "lfu" });
    run(c, [0, 0, 0, 1, 2, 0]);
    // m0 h0 h0 m1 m2(evicts 1: 1 use against 3) h0
    expect(c.stats()).toMatchObject({ expert_hits: 3, expert_misses: 3, bytes_loaded: 3 * SLOT });
    expect(c.resident(0)).toEqual([0, 2]);
  });

  it("layers have their own slots and policies", () => {
    const { c } = cache();
    run(c, [0, 1], 0);
    run(c, [2, 3], 1);
    run(c, [0, 1], 0);
    expect(c.stats()).toMatchObject({ expert_hits: 2, expert_misses: 4 });
  });

  it("never evicts an expert of the same call", () => {
    const { c, heap } = cache({ topK: 2 });
    run(c, [0, 1]); // 0 is now the least recent
    const [a, b] = c.locateAll(0, [2, 0]);
    // 2 took 1's slot, not 0's, so 0 was a hit
    expect(c.stats()).toMatchObject({ expert_hits: 1, expert_misses: 3 });
    expect(a).not.toBe(b);
    expect(heap.subarray(a!, a! + 12)).toEqual(pattern(0, 2, "gate"));
    expect(heap.subarray(b!, b! + 12)).toEqual(pattern(0, 0, "gate"));
    expect(c.has(0, 1)).toBe(false);
  });

  it("needs top_k slots per layer, and no more experts per call than slots", () => {
    expect(() => cache({ slotsPerLayer: 1, topK: 2 })).toThrow(
      "expert cache: 1 slots per layer cannot hold the 2 experts (top_k) one token uses; give it at least 2",
    );
    expect(() => cache({ slotsPerLayer: 5 })).toThrow("5 slots per layer for only 4 experts");
    const { c } = cache();
    expect(() => c.locateAll(0, [0, 1, 2])).toThrow("locateAll of 3 experts in layer 0, which has 2 slots");
    expect(() => c.locate(2, 0)).toThrow(/layer 2 is out of range/);
    expect(() => c.locate(0, 4)).toThrow(/expert 4 is out of range/);
  });

  it("prefetched experts count as prefetch hits, not misses", () => {
    const { c } = cache({ topK: 2 });
    c.prefetch(1, [2, 3]);
    expect(c.stats()).toMatchObject({
      expert_hits: 0,
      expert_misses: 0,
      prefetch_loads: 2,
      bytes_loaded: 2 * SLOT,
    });
    c.locateAll(1, [3, 2]);
    expect(c.stats()).toMatchObject({ expert_hits: 2, expert_misses: 0, prefetch_hits: 2 });
    // Used once, a prefetched expert is an ordinary resident one.
    c.locateAll(1, [3, 2]);
    expect(c.stats()).toMatchObject({ expert_hits: 4, prefetch_hits: 2 });
    // A resident expert is not loaded again, nor counted.
    c.prefetch(1, [2]);
    expect(c.stats()).toMatchObject({ prefetch_loads: 2, bytes_loaded: 2 * SLOT });
  });

  it("a wrong guess is counted when its expert is evicted unused", () => {
    const { c } = cache();
    c.prefetch(0, [0, 1, 2]); // only as many as the slots: 0 and 1
    expect(c.resident(0)).toEqual([0, 1]);
    run(c, [3, 2]);
    expect(c.stats()).toMatchObject({
      prefetch_loads: 2,
      prefetch_unused: 2,
      expert_misses: 2,
      prefetch_hits: 0,
    });
  });

  it("prefetch does not evict an expert of its own guess", () => {
    const { c } = cache({ topK: 2 });
    run(c, [0, 1]); // 0 is the least recent
    c.prefetch(0, [0, 2]);
    expect(c.resident(0).sort()).toEqual([0, 2]);
    expect(c.stats().prefetch_loads).toBe(1);
  });

  it("hit rate with and without prefetch on a two-layer trace with a perfect guess", () => {
    // Each token: layer 0 then layer 1, one expert each; 4 experts, 2 slots, a cycling pattern.
    const trace = Array.from({ length: 40 }, (_, t) => [t % 4, (t * 3) % 4] as const);
    const measure = (prefetch: boolean) => {
      const { c } = cache();
      for (const [e0, e1] of trace) {
        c.locateAll(0, [e0]);
        if (prefetch) c.prefetch(1, [e1]);
        c.locateAll(1, [e1]);
      }
      return c.stats();
    };
    const without = measure(false);
    const with_ = measure(true);
    expect(without.expert_hits + without.expert_misses).toBe(80);
    expect(with_.expert_hits + with_.expert_misses).toBe(80);
    // Layer 1 always hits with a perfect guess; layer 0 behaves the same in both runs.
    const layer0 = measureLayer0Hits(trace);
    expect(with_.expert_hits).toBe(layer0 + 40);
    expect(with_.prefetch_hits).toBe(with_.prefetch_loads);
    expect(with_.prefetch_unused).toBe(0);
    expect(without.expert_hits).toBeLessThan(with_.expert_hits);
  });

  it("works from the heap attached later, and checks it is big enough", () => {
    const acct = new Accountant(1 << 16);
    const c = new ExpertCache({
      layers: 1,
      experts: 4,
      slotsPerLayer: 2,
      topK: 2,
      bytes,
      alloc: (l, n) => acct.alloc(l, n),
      source: new PatternSource(),
    });
    expect(() => c.locate(0, 0)).toThrow("no heap attached");
    expect(() => c.attach(new Uint8Array(64 + 31))).toThrow("slots reach byte 96, the heap has 95");
    const heap = new Uint8Array(acct.used);
    c.attach(heap);
    const at = c.locate(0, 1);
    expect(heap.subarray(at + 24, at + 32)).toEqual(pattern(0, 1, "down"));
  });

  it("a failed load leaves no half-copied expert behind", () => {
    let fail = true;
    const source: ExpertSource = {
      read(layer, expert, role, dst) {
        if (fail && role === "up") throw new Error("disk gone");
        dst.set(pattern(layer, expert, role));
      },
    };
    const { c } = cache({ source });
    expect(() => c.locate(0, 1)).toThrow("disk gone");
    expect(c.has(0, 1)).toBe(false);
    fail = false;
    c.locate(0, 1);
    expect(c.has(0, 1)).toBe(true);
  });
});

/** Layer 0's hits in the trace with 2 LRU slots and no prefetch (the same with prefetch: other layer). */
function measureLayer0Hits(trace: readonly (readonly [number, number])[]): number {
  const { c } = cache();
  for (const [e0] of trace) c.locateAll(0, [e0]);
  return c.stats().expert_hits;
}

describe("ExpertCache over a GGUF file", () => {
  const { dir, cleanup } = scratchDir();
  afterAll(() => cleanup());

  it("slots hold exactly the checkpoint's expert bytes", () => {
    const path = join(dir, "m.gguf");
    const o = { hidden: 64, layers: 2, heads: 4, kvHeads: 2, ffn: 96, experts: 4, topK: 2, vocab: 300 };
    writeRandomMixtralGguf(path, { ...o, type: "q4_0", seed: 3 });
    const manifest = {
      weights: (
        [
          ["w_gate", "ffn_gate_exps", [4, 96, 64]],
          ["w_up", "ffn_up_exps", [4, 96, 64]],
          ["w_down", "ffn_down_exps", [4, 64, 96]],
        ] as const
      ).map(([k, t, shape]) => ({
        key: `layer.${k}`,
        tensor: `blk.{i}.${t}.weight`,
        index: "i",
        shape: [...shape],
        layers: 2,
        scheme: "q4_0",
      })),
    };
    const keys = { gate: "layer.w_gate", up: "layer.w_up", down: "layer.w_down" };
    const layout = expertLayout(manifest, keys);
    const source = FileExpertSource.open(path, manifest, keys);
    const acct = new Accountant(1 << 20);
    const c = new ExpertCache({
      layers: 2,
      experts: 4,
      slotsPerLayer: 2,
      topK: 2,
      bytes: layout.bytes,
      alloc: (l, n) => acct.alloc(l, n),
      source,
      policy: "lfu",
    });
    const heap = new Uint8Array(acct.used);
    c.attach(heap);
    const w = GgufWeights.open(path, manifest);
    for (const [l, e] of [
      [0, 1],
      [1, 3],
      [0, 2],
      [0, 0],
    ] as const) {
      const at = c.locate(l, e);
      let off = at;
      for (const role of EXPERT_ROLES) {
        const n = layout.bytes[l]![role];
        const want = w.bytes(keys[role], l).subarray(e * n, (e + 1) * n);
        expect(Buffer.compare(heap.subarray(off, off + n), want), `${l}/${e}/${role}`).toBe(0);
        off += n;
      }
    }
    w.close();
    source.close();
  });
});
