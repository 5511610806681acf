// A compiled model's memory under a device budget: every device allocation through one Accountant, in
// the order and with the residency the planner computes (device-plan.ts), the heap made from what the
// accountant handed out, the resident weights copied in, and the offloaded experts behind an ExpertCache
// fed from host copies or the GGUF file. The forward pass finds each token's experts through `experts`.
import { HEAP_LIMIT, Heap } from "../heap.ts";
import { type Manifest, type MoeEntry, schemeAt } from "../manifest.ts";
import { getScheme } from "../quant/registry.ts";
import type { WeightSource } from "../weights.ts";
import { Accountant } from "./accountant.ts";
import {
  allExpertBytes,
  allocateDevice,
  chooseResidency,
  DeviceBudgetError,
  describeUse,
  deviceWeightBytes,
  deviceWeightTotal,
  type ExpertBytes,
  expertBytesByLayer,
  isResident,
  kvRegionBytes,
  type Residency,
} from "./device-plan.ts";
import { ExpertCache, sumStats } from "./expert-cache.ts";
import {
  type ExpertKeys,
  type ExpertSource,
  expertLayout,
  FileExpertSource,
  HostExpertSource,
} from "./expert-source.ts";
import { type MemoryStats, memoryStats } from "./memory-stats.ts";
import type { EvictionPolicy } from "./policy.ts";
import { decodeRouter, type NextRouter, predictInto } from "./predict.ts";
import { rows8Experts, toRows8 } from "./rows8-load.ts";

/** A weight in the heap: whole-heap views, and where its bytes start. */
export interface Packed {
  u8: Uint8Array;
  i8: Int8Array;
  f32: Float32Array;
  base: number;
}

/** Called as weights load: bytes of the weights so far and in all. */
export type LoadProgress = (doneBytes: number, totalBytes: number) => void;

export interface MemoryOptions {
  onProgress?: LoadProgress;
  /** Device memory budget in bytes (`moec run --vram`). The CPU backend's device is its WebAssembly heap,
   * which holds at most 4 GiB: that is the default, and a larger budget is capped there. */
  deviceBudget?: number;
  /** Host bytes the offloaded experts may take (`--host-memory`); when they need more, they are read
   * from `expertFile` on each load instead. Default: no limit. */
  hostBudget?: number;
  /** The GGUF file the weights come from, for reading offloaded experts straight from it. */
  expertFile?: string;
  /** The expert cache's eviction policy: "lru" (default), "lfu", or a factory. */
  policy?: string | (() => EvictionPolicy);
  /** Load the next layer's guessed experts while this layer runs (default true). */
  prefetch?: boolean;
}

/** Where the offloaded experts come from. */
export type ExpertOrigin = "resident" | "host" | "file";

/** One MoE op's state for the forward pass's `experts` hook; everything allocated once. */
interface MoeState {
  entry: MoeEntry;
  k: number;
  /** One expert's bytes per matrix, by layer. */
  bytes: ExpertBytes[];
  /** The addresses handed to the kernel: gate, up, down per pick. */
  addr: Float64Array;
  /** Resident: each layer's stacked gate/up/down tensors. */
  stacks?: { gate: Packed[]; up: Packed[]; down: Packed[] };
  /** Offloaded: the cache, the picks as ints, their slot offsets. */
  cache?: ExpertCache;
  ids: Int32Array;
  offsets: Float64Array;
  /** Prefetch: the next layer's router (f32) and norm per layer, scratch for the guess. */
  next?: NextRouter[];
  logits: Float32Array;
  guess: Int32Array;
}

export interface PlacedMemory {
  heap: Heap;
  accountant: Accountant;
  residency: Residency;
  /** Where the offloaded experts are read from ("resident" when none are offloaded). */
  origin: ExpertOrigin;
  weights: Record<string, Packed[]>;
  vectors: Record<string, Float32Array[]>;
  kv: Float32Array[][];
  arena: Float32Array;
  /** The forward pass's hook: the chosen experts' gate/up/down addresses for one MoE op in one layer. */
  experts(moe: number, layer: number, s: Float32Array, so: number): Float64Array;
  /** The batched prefill's hook: one expert's gate/up/down addresses (loaded into a slot if offloaded). */
  expert(moe: number, layer: number, expert: number): Float64Array;
  /** The forward pass's other hook: the residual stream as `layer` leaves it, to guess and load the next
   * layer's experts (nothing when prefetch is off or the experts are resident). */
  prefetch(moe: number, layer: number, x: Float32Array, xo: number): void;
  caches: ExpertCache[];
  /** The "memory" object of `--stats` / `--json`. */
  memory(): MemoryStats;
  /** Zeroes the expert caches' counters (the slots keep their experts). */
  resetStats(): void;
  close(): void;
}

/** Host memory too small for the offloaded experts, with weights that are not a file to read them from. */
export class HostBudgetError extends RangeError {
  override readonly name = "HostBudgetError";
  readonly exitCode = 2;
  constructor(
    readonly budget: number,
    readonly needed: number,
  ) {
    super(
      `the offloaded experts need ${needed} bytes of host memory but --host-memory is ${budget} (${needed - budget} short), and these weights are not a GGUF file to read experts from instead: give more --host-memory or run from a .gguf`,
    );
  }
}

/** A source filled in after the device is laid out (the cache is built, with its slots, before the heap). */
class LateSource implements ExpertSource {
  inner: ExpertSource | undefined;
  read(...args: Parameters<ExpertSource["read"]>): void {
    if (!this.inner) throw new Error("expert cache: its source is not ready yet");
    this.inner.read(...args);
  }
}

export function placeModel(m: Manifest, source: WeightSource, o: MemoryOptions = {}): PlacedMemory {
  const budget = Math.min(o.deviceBudget ?? HEAP_LIMIT, HEAP_LIMIT);
  const residency = chooseResidency(m, budget);
  if (!residency.fits) {
    throw new DeviceBudgetError(m.model, budget, residency.minimum.used, describeUse(m, residency.minimum));
  }
  const moes = m.moe ?? [];
  const offloaded = moes.map((_, i) => !isResident(m, residency.slots, i));
  const keysOf = (e: MoeEntry): ExpertKeys => ({ gate: e.gate, up: e.up, down: e.down });

  // Where offloaded experts come from: host copies while the host budget holds them all, else the file.
  let origin: ExpertOrigin = "resident";
  if (offloaded.some(Boolean)) {
    const hostBytes = moes.reduce((n, e, i) => n + (offloaded[i] ? allExpertBytes(m, e) : 0), 0);
    origin = o.hostBudget === undefined || hostBytes <= o.hostBudget ? "host" : "file";
    if (origin === "file" && o.expertFile === undefined) throw new HostBudgetError(o.hostBudget!, hostBytes);
  }

  const acct = new Accountant(budget);
  const late: LateSource[] = [];
  const caches: (ExpertCache | undefined)[] = moes.map(() => undefined);
  const placement = allocateDevice(acct, m, residency.slots, {
    makeCache: (i, e, slots) => {
      const src = new LateSource();
      late[i] = src;
      caches[i] = new ExpertCache({
        layers: e.layers,
        experts: e.experts,
        slotsPerLayer: slots,
        topK: e.topK,
        bytes: expertBytesByLayer(m, e),
        alloc: (label, bytes) => acct.alloc(label, bytes),
        source: src,
        policy: o.policy,
      });
    },
  });
  const heap = new Heap(acct.used);
  for (const c of caches) c?.attach(heap.u8);

  // Resident weights into the heap.
  const weights: Record<string, Packed[]> = {};
  const vectors: Record<string, Float32Array[]> = {};
  const placed = m.weights.filter((w) => placement.weights.has(w.key));
  const total = placed.reduce((n, w) => n + deviceWeightTotal(w), 0);
  let done = 0;
  for (const w of placed) {
    const at = placement.weights.get(w.key)!;
    const layers = w.layers === 0 ? [undefined] : [...Array(w.layers).keys()];
    if (w.shape.length === 1) {
      vectors[w.key] = layers.map((l, i) => {
        const out = heap.floats(at[i]!, w.shape[0]!);
        getScheme(schemeAt(w, l)).decode(source.bytes(w.key, l), out);
        return out;
      });
    } else {
      weights[w.key] = layers.map((l, i) => {
        const bytes = source.bytes(w.key, l);
        const want = deviceWeightBytes(w, l);
        if (bytes.length !== want) {
          throw new Error(`${w.key}: ${bytes.length} bytes where its shape and scheme need ${want}`);
        }
        heap.u8.set(bytes, at[i]!);
        toRows8(w, l, heap.u8, at[i]!, bytes.length);
        return { u8: heap.u8, i8: heap.i8, f32: heap.f32, base: at[i]! };
      });
    }
    done += deviceWeightTotal(w);
    o.onProgress?.(done, total);
  }
  const kv = placement.kv.map((layers, j) => {
    const c = m.kv[j >> 1]!;
    // A narrower cache is bytes the kernels address: the view only carries its place in the heap.
    return layers.map((at) => heap.floats(at, Math.floor(kvRegionBytes(c, m.maxContext, m.kvType) / 4)));
  });
  const arena = heap.floats(placement.arena, Math.ceil(m.arenaBytes / 4));

  // The offloaded experts' source, now that the device is filled.
  const files: FileExpertSource[] = [];
  let hostExpertBytes: number | undefined;
  moes.forEach((e, i) => {
    if (!offloaded[i]) return;
    if (origin === "file") {
      const f = FileExpertSource.open(o.expertFile!, m, keysOf(e));
      files.push(f);
      late[i]!.inner = rows8Experts(f, expertLayout(m, keysOf(e)).entries);
    } else {
      const layout = expertLayout(m, keysOf(e));
      const h = new HostExpertSource(source, layout, {
        prepare: (l, role, copy) => toRows8(layout.entries[role], l, copy),
      });
      hostExpertBytes = (hostExpertBytes ?? 0) + h.hostBytes;
      late[i]!.inner = h;
    }
  });

  const prefetch = o.prefetch ?? true;
  const states: MoeState[] = moes.map((e, i) => {
    const bytes = expertBytesByLayer(m, e);
    const st: MoeState = {
      entry: e,
      k: e.topK,
      bytes,
      addr: new Float64Array(3 * e.topK),
      ids: new Int32Array(e.topK),
      offsets: new Float64Array(e.topK),
      logits: new Float32Array(e.experts),
      guess: new Int32Array(e.topK),
    };
    const cache = caches[i];
    if (!cache) {
      st.stacks = { gate: weights[e.gate]!, up: weights[e.up]!, down: weights[e.down]! };
      return st;
    }
    st.cache = cache;
    const router = m.weights.find((w) => w.key === e.router);
    const norm = e.norm === undefined ? undefined : vectors[e.norm];
    if (prefetch && router && norm && e.eps !== undefined && e.layers > 1) {
      const hidden = router.shape[1]!;
      const routers = weights[e.router]!;
      // Decoded once from the device copies: the guess runs in f32 on the host side of the runtime.
      st.next = Array.from({ length: e.layers }, (_, l) => {
        const rl = router.layers ? l : undefined;
        const r = routers[rl ?? 0]!;
        const rb = deviceWeightBytes(router, rl);
        return {
          router: decodeRouter(
            heap.u8.subarray(r.base, r.base + rb),
            schemeAt(router, rl),
            e.experts,
            hidden,
          ),
          norm: norm[norm.length > 1 ? l : 0]!,
          eps: e.eps!,
        };
      });
    }
    return st;
  });

  const experts = (moe: number, layer: number, s: Float32Array, so: number) => {
    const st = states[moe]!;
    const a = st.addr;
    const { gate: gb, up: ub, down: db } = st.bytes[st.entry.layers ? layer : 0]!;
    if (st.stacks) {
      const l = st.entry.layers ? layer : 0;
      const g = st.stacks.gate[l]!.base;
      const u = st.stacks.up[l]!.base;
      const d = st.stacks.down[l]!.base;
      for (let j = 0; j < st.k; j++) {
        const e = s[so + j]! | 0;
        a[3 * j] = g + e * gb;
        a[3 * j + 1] = u + e * ub;
        a[3 * j + 2] = d + e * db;
      }
      return a;
    }
    for (let j = 0; j < st.k; j++) st.ids[j] = s[so + j]! | 0;
    st.cache!.locateInto(layer, st.ids, st.offsets);
    for (let j = 0; j < st.k; j++) {
      const at = st.offsets[j]!;
      a[3 * j] = at;
      a[3 * j + 1] = at + gb;
      a[3 * j + 2] = at + gb + ub;
    }
    return a;
  };
  const one = new Float64Array(3);
  const expert = (moe: number, layer: number, e: number) => {
    const st = states[moe]!;
    const { gate: gb, up: ub, down: db } = st.bytes[st.entry.layers ? layer : 0]!;
    if (st.stacks) {
      const l = st.entry.layers ? layer : 0;
      one[0] = st.stacks.gate[l]!.base + e * gb;
      one[1] = st.stacks.up[l]!.base + e * ub;
      one[2] = st.stacks.down[l]!.base + e * db;
      return one;
    }
    const at = st.cache!.locate(layer, e);
    one[0] = at;
    one[1] = at + gb;
    one[2] = at + gb + ub;
    return one;
  };
  // The next layer's experts, guessed from the residual stream as this layer leaves it, loaded ahead of use.
  const prefetchNext = (moe: number, layer: number, x: Float32Array, xo: number) => {
    const st = states[moe]!;
    if (!st.next || layer + 1 >= st.entry.layers) return;
    predictInto(st.next[layer + 1]!, x, xo, st.logits, st.guess);
    st.cache!.prefetch(layer + 1, st.guess);
  };

  const active = caches.filter((c): c is ExpertCache => c !== undefined);
  const sum = () => sumStats(active);
  return {
    heap,
    accountant: acct,
    residency,
    origin,
    weights,
    vectors,
    kv,
    arena,
    experts,
    expert,
    prefetch: prefetchNext,
    caches: active,
    memory: () => memoryStats(acct, active.length ? { stats: sum } : undefined, hostExpertBytes),
    resetStats: () => {
      for (const c of active) c.resetStats();
    },
    close: () => {
      for (const f of files) f.close();
    },
  };
}
