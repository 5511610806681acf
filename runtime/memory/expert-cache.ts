// The device-side expert cache: a fixed number of slots per layer, each holding one expert's gate, up
// and down matrices back to back in the device heap, filled from an ExpertSource (host copies or the
// checkpoint file) when the router picks an expert that is not there. Slots are reserved once, through
// the accountant's alloc, so the cache's device bytes are exactly slots × (gate + up + down) (plus the
// accountant's alignment).
//
// Offsets returned for a layer stay valid until the next locate or prefetch on that same layer: the
// kernel for layer L uses them right away, and loads for other layers never touch layer L's slots.
// Within one call (locateAll, prefetch) the experts of that call are pinned, so loading one of them never
// evicts another; that is why a layer needs at least top_k slots.
import type { ExpertSource } from "./expert-source.ts";
import { type EvictionPolicy, policyByName } from "./policy.ts";

export interface ExpertCacheStats {
  /** Demand accesses (the router's picks) found in a slot. */
  expert_hits: number;
  /** Demand accesses that had to load the expert first. */
  expert_misses: number;
  /** Bytes copied into slots, by demand misses and prefetches together. */
  bytes_loaded: number;
  /** Experts loaded by prefetch (each also counted in bytes_loaded). */
  prefetch_loads: number;
  /** Demand hits on an expert that a prefetch loaded and no demand access had used yet. */
  prefetch_hits: number;
  /** Prefetched experts evicted before any demand access used them: wasted loads. */
  prefetch_unused: number;
}

export interface ExpertCacheOptions {
  layers: number;
  experts: number;
  slotsPerLayer: number;
  /** Experts the router picks per token: a layer needs at least this many slots. */
  topK: number;
  /** One expert matrix's packed bytes per role: the same in every layer, or one entry per layer (a
   * weight's scheme may differ by layer, and a slot holds an expert of its own layer). */
  bytes: ExpertSlotBytes | ExpertSlotBytes[];
  /** The device heap the offsets index; may be given later with attach() when it is made after planning. */
  heap?: Uint8Array;
  /** Reserves device bytes and returns their offset (the Accountant's alloc). Called once per slot. */
  alloc: (label: string, bytes: number) => number;
  source: ExpertSource;
  /** "lru" (default) or "lfu", or a factory for a policy of one's own; one instance per layer. */
  policy?: string | (() => EvictionPolicy);
  /** Instead of a heap: where a slot's bytes are staged (`view`) and then handed to the device (`loaded`),
   * for a device the host cannot address (the GPU backends upload each loaded expert). */
  sink?: SlotSink;
}

export interface ExpertSlotBytes {
  gate: number;
  up: number;
  down: number;
}

/** A device slot the host cannot write directly: the cache reads an expert into `view(at, bytes)`, then
 * calls `loaded(at, bytes)` before it loads anything else. */
export interface SlotSink {
  view(at: number, bytes: number): Uint8Array;
  loaded(at: number, bytes: number): void;
}

/** The accountant label of the slots. */
export const EXPERT_SLOTS_LABEL = "expert slots";

export class ExpertCache {
  readonly layers: number;
  readonly experts: number;
  readonly slotsPerLayer: number;
  /** Bytes of one slot per layer: gate + up + down. */
  readonly slotBytes: number[];
  private readonly gateBytes: number[];
  private readonly upBytes: number[];
  private heap: Uint8Array | undefined;
  private readonly sink: SlotSink | undefined;
  private readonly source: ExpertSource;
  /** [layer * slotsPerLayer + slot] → heap offset. */
  private readonly offsets: Float64Array;
  /** [layer * experts + expert] → slot, or -1. */
  private readonly slotOf: Int32Array;
  /** [layer * slotsPerLayer + slot] → expert, or -1 while empty. */
  private readonly expertIn: Int32Array;
  /** [layer * slotsPerLayer + slot] → 1 while it holds a prefetched expert no demand access has used. */
  private readonly unusedPrefetch: Uint8Array;
  /** Slots filled so far per layer: empty slots are taken in order before anything is evicted. */
  private readonly filled: Int32Array;
  private readonly policies: EvictionPolicy[];
  /** The eviction policy's name ("lru", "lfu", …). */
  readonly policyName: string;
  /** The experts of the call in progress; never chosen as victims. */
  private readonly pinned = new Set<number>();
  private s: ExpertCacheStats = emptyStats();

  constructor(o: ExpertCacheOptions) {
    for (const k of ["layers", "experts", "slotsPerLayer", "topK"] as const) {
      if (!Number.isInteger(o[k]) || o[k] < 1)
        throw new RangeError(`expert cache: ${k} must be at least 1, not ${o[k]}`);
    }
    if (o.topK > o.experts)
      throw new RangeError(`expert cache: top_k ${o.topK} is more than the ${o.experts} experts`);
    if (o.slotsPerLayer < o.topK) {
      throw new RangeError(
        `expert cache: ${o.slotsPerLayer} slots per layer cannot hold the ${o.topK} experts (top_k) one token uses; give it at least ${o.topK}`,
      );
    }
    if (o.slotsPerLayer > o.experts) {
      throw new RangeError(`expert cache: ${o.slotsPerLayer} slots per layer for only ${o.experts} experts`);
    }
    this.layers = o.layers;
    this.experts = o.experts;
    this.slotsPerLayer = o.slotsPerLayer;
    const per = Array.isArray(o.bytes)
      ? o.bytes
      : Array.from({ length: o.layers }, () => o.bytes as ExpertSlotBytes);
    if (per.length !== o.layers)
      throw new RangeError(`expert cache: ${per.length} byte sizes for ${o.layers} layers`);
    this.gateBytes = per.map((b) => b.gate);
    this.upBytes = per.map((b) => b.up);
    this.slotBytes = per.map((b) => b.gate + b.up + b.down);
    this.source = o.source;
    this.sink = o.sink;
    const make = typeof o.policy === "function" ? o.policy : policyByName(o.policy ?? "lru");
    this.policies = Array.from({ length: o.layers }, () => make());
    this.policyName = this.policies[0]!.name;
    const slots = o.layers * o.slotsPerLayer;
    this.offsets = new Float64Array(slots);
    for (let i = 0; i < slots; i++)
      this.offsets[i] = o.alloc(EXPERT_SLOTS_LABEL, this.slotBytes[Math.floor(i / o.slotsPerLayer)]!);
    this.slotOf = new Int32Array(o.layers * o.experts).fill(-1);
    this.expertIn = new Int32Array(slots).fill(-1);
    this.unusedPrefetch = new Uint8Array(slots);
    this.filled = new Int32Array(o.layers);
    if (o.heap) this.attach(o.heap);
  }

  /** Gives the cache the heap its offsets index; every slot must lie inside it. */
  attach(heap: Uint8Array): void {
    let end = 0;
    this.offsets.forEach((o, i) => {
      end = Math.max(end, o + this.slotBytes[Math.floor(i / this.slotsPerLayer)]!);
    });
    if (end > heap.length) {
      throw new RangeError(`expert cache: slots reach byte ${end}, the heap has ${heap.length}`);
    }
    this.heap = heap;
  }

  /**
   * The heap offset of the slot holding `expert` of `layer` (gate at +0, up at +gate bytes, down at
   * +gate+up bytes), loading it first on a miss. Valid until the next locate or prefetch on this layer.
   */
  locate(layer: number, expert: number): number {
    this.check(layer, expert);
    return this.demand(layer, expert);
  }

  /**
   * Offsets for all the experts one token uses in `layer` (its top-k), in the same order. None of them
   * evicts another while they are loaded.
   */
  locateAll(layer: number, experts: ArrayLike<number>): number[] {
    return this.locateInto(layer, experts, new Array<number>(experts.length));
  }

  /** locateAll into `out` (the forward pass's own array, so a token allocates nothing); returns `out`. */
  locateInto<T extends { [i: number]: number }>(layer: number, experts: ArrayLike<number>, out: T): T {
    this.checkCall(layer, experts, "locateAll");
    try {
      for (let i = 0; i < experts.length; i++) this.pinned.add(experts[i]!);
      for (let i = 0; i < experts.length; i++) out[i] = this.demand(layer, experts[i]!);
    } finally {
      this.pinned.clear();
    }
    return out;
  }

  /**
   * Loads `experts` of `layer` ahead of their use (the guess for the next layer), without counting demand
   * hits or misses. Experts already resident are left as they are; at most slotsPerLayer are loaded.
   */
  prefetch(layer: number, experts: ArrayLike<number>): void {
    const n = Math.min(experts.length, this.slotsPerLayer);
    for (let i = 0; i < n; i++) this.check(layer, experts[i]!);
    try {
      for (let i = 0; i < n; i++) this.pinned.add(experts[i]!);
      for (let i = 0; i < n; i++) {
        const e = experts[i]!;
        if (this.slotOf[layer * this.experts + e]! >= 0) continue;
        const slot = this.load(layer, e);
        this.unusedPrefetch[layer * this.slotsPerLayer + slot] = 1;
        this.s.prefetch_loads++;
      }
    } finally {
      this.pinned.clear();
    }
  }

  /** Whether `expert` of `layer` is in a slot now. */
  has(layer: number, expert: number): boolean {
    this.check(layer, expert);
    return this.slotOf[layer * this.experts + expert]! >= 0;
  }

  /** The experts in `layer`'s slots, in slot order (-1 for an empty slot). */
  resident(layer: number): number[] {
    const at = layer * this.slotsPerLayer;
    return [...this.expertIn.subarray(at, at + this.slotsPerLayer)];
  }

  /** The heap offset of every slot, layer by layer. */
  slotOffsets(): number[] {
    return [...this.offsets];
  }

  stats(): ExpertCacheStats {
    return { ...this.s };
  }

  /** Zeroes the counters (the slots keep their experts). */
  resetStats(): void {
    this.s = emptyStats();
  }

  private demand(layer: number, expert: number): number {
    const policy = this.policies[layer]!;
    let slot = this.slotOf[layer * this.experts + expert]!;
    if (slot >= 0) {
      this.s.expert_hits++;
      const i = layer * this.slotsPerLayer + slot;
      if (this.unusedPrefetch[i]) {
        this.unusedPrefetch[i] = 0;
        this.s.prefetch_hits++;
      }
    } else {
      this.s.expert_misses++;
      slot = this.load(layer, expert);
    }
    policy.touch(expert);
    return this.offsets[layer * this.slotsPerLayer + slot]!;
  }

  /** Puts `expert` into a free slot or the policy's victim's, copies its bytes in; returns the slot. */
  private load(layer: number, expert: number): number {
    const sink = this.sink;
    const heap = sink ? undefined : this.heap;
    if (!sink && !heap) throw new Error("expert cache: no heap attached (call attach(heap) first)");
    const policy = this.policies[layer]!;
    const base = layer * this.slotsPerLayer;
    let slot: number;
    if (this.filled[layer]! < this.slotsPerLayer) {
      slot = this.filled[layer]!++;
    } else {
      const victim = policy.victim(this.pinned);
      if (victim < 0) {
        throw new Error(
          `expert cache: layer ${layer} has ${this.slotsPerLayer} slots and all hold experts this call needs`,
        );
      }
      slot = this.slotOf[layer * this.experts + victim]!;
      this.slotOf[layer * this.experts + victim] = -1;
      policy.evict(victim);
      if (this.unusedPrefetch[base + slot]) this.s.prefetch_unused++;
    }
    // Marked empty while loading: if the source throws, the slot is not left claiming a half-copied expert.
    this.expertIn[base + slot] = -1;
    this.unusedPrefetch[base + slot] = 0;
    const at = this.offsets[base + slot]!;
    const g = this.gateBytes[layer]!;
    const u = this.upBytes[layer]!;
    const bytes = this.slotBytes[layer]!;
    const dst = sink ? sink.view(at, bytes) : heap!.subarray(at, at + bytes);
    this.source.read(layer, expert, "gate", dst.subarray(0, g));
    this.source.read(layer, expert, "up", dst.subarray(g, g + u));
    this.source.read(layer, expert, "down", dst.subarray(g + u, bytes));
    sink?.loaded(at, bytes);
    this.expertIn[base + slot] = expert;
    this.slotOf[layer * this.experts + expert] = slot;
    policy.insert(expert);
    this.s.bytes_loaded += bytes;
    return slot;
  }

  private check(layer: number, expert: number): void {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.layers) {
      throw new RangeError(`expert cache: layer ${layer} is out of range (${this.layers} layers)`);
    }
    if (!Number.isInteger(expert) || expert < 0 || expert >= this.experts) {
      throw new RangeError(`expert cache: expert ${expert} is out of range (${this.experts} per layer)`);
    }
  }

  private checkCall(layer: number, experts: ArrayLike<number>, what: string): void {
    for (let i = 0; i < experts.length; i++) this.check(layer, experts[i]!);
    if (experts.length <= this.slotsPerLayer) return;
    const distinct = new Set(Array.from(experts)).size;
    if (distinct > this.slotsPerLayer) {
      throw new RangeError(
        `expert cache: ${what} of ${distinct} experts in layer ${layer}, which has ${this.slotsPerLayer} slots`,
      );
    }
  }
}

function emptyStats(): ExpertCacheStats {
  return {
    expert_hits: 0,
    expert_misses: 0,
    bytes_loaded: 0,
    prefetch_loads: 0,
    prefetch_hits: 0,
    prefetch_unused: 0,
  };
}

/** Every cache's counters added up (the "memory" figures of a model with several MoE ops). */
export function sumStats(caches: readonly ExpertCache[]): ExpertCacheStats {
  const out: ExpertCacheStats = {
    expert_hits: 0,
    expert_misses: 0,
    bytes_loaded: 0,
    prefetch_loads: 0,
    prefetch_hits: 0,
    prefetch_unused: 0,
  };
  for (const c of caches) {
    const s = c.stats();
    for (const k of Object.keys(out) as (keyof ExpertCacheStats)[]) out[k] += s[k];
  }
  return out;
}
