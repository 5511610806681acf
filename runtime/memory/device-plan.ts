// What goes on the device, decided once from a compiled model's manifest and a budget, and shared by the
// planner (compiler/plan/device.ts, `moec plan`) and the runtime (runtime/model.ts, `moec run --vram`):
// both call allocateDevice, so the runtime's accountant sees exactly the allocations the plan counted, in
// the same order, under the same labels, with the same alignment.
//
// The rule (issue 6): dense weights first (embeddings, attention, norms, routers, head), then experts
// while the budget allows. When a MoE op's experts do not all fit, each of its layers gets the same
// number of expert cache slots on the device, fed from host memory or the checkpoint file.
import { type KvType, kvRowBytes } from "../kv-type.ts";
import { type KvEntry, type Manifest, type MoeEntry, schemeAt, type WeightEntry } from "../manifest.ts";
import { getScheme } from "../quant/registry.ts";
import { formatBytes } from "../units.ts";
import { Accountant } from "./accountant.ts";
import { EXPERT_SLOTS_LABEL } from "./expert-cache.ts";

/** The half-float table the kernels read at device address 0: 65536 f32 values. */
export const F16_TABLE_BYTES = 65536 * 4;

/** The accountant's labels, one per category, in allocation order. */
export const LABEL = {
  table: "f16 table",
  weights: "weights",
  norms: "norms",
  experts: "experts",
  slots: EXPERT_SLOTS_LABEL,
  kv: "kv",
  arena: "arena",
} as const;

/** Bytes of one layer of a weight on the device: norm vectors decoded to f32, matrices packed in their scheme
 * (that layer's, where the scheme differs by layer). */
export function deviceWeightBytes(w: WeightEntry, layer?: number): number {
  if (w.shape.length === 1) return w.shape[0]! * 4;
  const s = getScheme(schemeAt(w, layer));
  return (w.shape.reduce((a, b) => a * b, 1) / s.blockSize) * s.blockBytes;
}

/** Bytes of every layer of a weight on the device. */
export function deviceWeightTotal(w: WeightEntry): number {
  if (w.layers === 0) return deviceWeightBytes(w);
  let n = 0;
  for (let l = 0; l < w.layers; l++) n += deviceWeightBytes(w, l);
  return n;
}

/** Bytes of one K (or V) cache of one layer at `context` positions, stored as `type`. */
export function kvRegionBytes(c: KvEntry, context: number, type: KvType = "f32"): number {
  return context * kvRowBytes(c.kvHeads * c.headDim, type);
}

/** Bytes the KV caches of a model take per position: every cache, K and V, every layer. */
export function kvBytesPerToken(m: Pick<Manifest, "kv" | "kvType">): number {
  return m.kv.reduce((n, c) => n + 2 * c.layers * kvRegionBytes(c, 1, m.kvType), 0);
}

export interface ExpertBytes {
  gate: number;
  up: number;
  down: number;
  /** gate + up + down: one expert, one cache slot. */
  each: number;
}

function entryOf(m: Pick<Manifest, "weights">, key: string): WeightEntry {
  const w = m.weights.find((x) => x.key === key);
  if (!w) throw new Error(`no weight \`${key}\` in the manifest`);
  return w;
}

/** One expert's packed bytes per matrix of a MoE op in `layer` (the schemes may differ by layer). */
export function expertBytes(m: Pick<Manifest, "weights">, moe: MoeEntry, layer = 0): ExpertBytes {
  const one = (key: string) => {
    const w = entryOf(m, key);
    return deviceWeightBytes(w, w.layers ? layer : undefined) / moe.experts;
  };
  const gate = one(moe.gate);
  const up = one(moe.up);
  const down = one(moe.down);
  return { gate, up, down, each: gate + up + down };
}

/** One expert's bytes per layer of a MoE op (one entry for an op outside the loop). */
export function expertBytesByLayer(m: Pick<Manifest, "weights">, moe: MoeEntry): ExpertBytes[] {
  return Array.from({ length: Math.max(1, moe.layers) }, (_, l) => expertBytes(m, moe, l));
}

/** Bytes of all of a MoE op's experts in every layer: what offloading it puts on the host. */
export function allExpertBytes(m: Pick<Manifest, "weights">, moe: MoeEntry): number {
  return expertBytesByLayer(m, moe).reduce((n, b) => n + b.each * moe.experts, 0);
}

/** Keys of every stacked expert weight. */
export function expertKeys(m: Pick<Manifest, "moe">): Set<string> {
  return new Set((m.moe ?? []).flatMap((e) => [e.gate, e.up, e.down]));
}

/** Whether MoE op `i` keeps every expert resident (stacked, as compiled) under `slots`. */
export function isResident(m: Pick<Manifest, "moe">, slots: readonly number[], i: number): boolean {
  const e = m.moe![i]!;
  return e.layers === 0 || slots[i]! >= e.experts;
}

export interface Placement {
  /** Where the half-float table is: always 0. */
  table: number;
  /** Device offset per layer (one entry for a weight outside the loop) of every weight placed: dense
   * matrices, norm vectors, resident expert stacks. Offloaded expert stacks are absent. */
  weights: Map<string, number[]>;
  /** [cache * 2 + (0 for K, 1 for V)][layer] → offset. */
  kv: number[][];
  arena: number;
}

export interface AllocateOptions {
  /** Makes MoE op `index`'s cache slots (`slots` per layer): the runtime builds its ExpertCache here, which
   * reserves them through the same accountant. By default they are reserved here, the same way. */
  makeCache?: (index: number, entry: MoeEntry, slots: number) => void;
}

/**
 * Every device allocation of a model, in order: the f16 table (at 0, where the kernels expect it), dense
 * matrices, norm vectors, resident expert stacks, expert cache slots (layer by layer), KV caches, the arena.
 * `slots[i]` is MoE op i's experts per layer on the device (its expert count: all resident, stacked).
 */
export function allocateDevice(
  acct: Accountant,
  m: Manifest,
  slots: readonly number[],
  opts: AllocateOptions = {},
): Placement {
  const moes = m.moe ?? [];
  if (slots.length !== moes.length) {
    throw new RangeError(`${slots.length} slot counts for ${moes.length} MoE ops`);
  }
  const table = acct.alloc(LABEL.table, F16_TABLE_BYTES);
  if (table !== 0) throw new Error(`the f16 table must be the first allocation (at ${table})`);
  const experts = expertKeys(m);
  const resident = new Set<string>();
  moes.forEach((e, i) => {
    if (isResident(m, slots, i)) for (const k of [e.gate, e.up, e.down]) resident.add(k);
  });
  const weights = new Map<string, number[]>();
  const place = (w: WeightEntry, label: string) => {
    weights.set(
      w.key,
      Array.from({ length: Math.max(1, w.layers) }, (_, l) =>
        acct.alloc(label, deviceWeightBytes(w, w.layers ? l : undefined)),
      ),
    );
  };
  for (const w of m.weights) if (w.shape.length > 1 && !experts.has(w.key)) place(w, LABEL.weights);
  for (const w of m.weights) if (w.shape.length === 1) place(w, LABEL.norms);
  for (const w of m.weights) if (resident.has(w.key)) place(w, LABEL.experts);
  moes.forEach((e, i) => {
    if (isResident(m, slots, i)) return;
    if (opts.makeCache) opts.makeCache(i, e, slots[i]!);
    else {
      // Layer by layer, as ExpertCache reserves them: a slot holds one expert of its own layer.
      for (let l = 0; l < e.layers; l++) {
        const each = expertBytes(m, e, l).each;
        for (let s = 0; s < slots[i]!; s++) acct.alloc(LABEL.slots, each);
      }
    }
  });
  const kv = m.kv.flatMap((c) => {
    const one = () =>
      Array.from({ length: c.layers }, () => acct.alloc(LABEL.kv, kvRegionBytes(c, m.maxContext, m.kvType)));
    return [one(), one()];
  });
  const arena = acct.alloc(LABEL.arena, m.arenaBytes);
  return { table, weights, kv, arena };
}

export interface DeviceUse {
  /** Bytes from 0 to the end of the last region, alignment included: the device memory the runtime makes. */
  used: number;
  /** Bytes per label (`LABEL`), alignment not included. */
  byLabel: Record<string, number>;
  padding: number;
}

/** The device memory a model takes with `slots` experts per layer per MoE op (no budget applied). */
export function measureDevice(m: Manifest, slots: readonly number[]): DeviceUse {
  const acct = new Accountant(Number.MAX_SAFE_INTEGER);
  allocateDevice(acct, m, slots);
  return { used: acct.used, byLabel: acct.byLabel(), padding: acct.padding };
}

/** Slots per layer for every MoE op when `s` experts per layer fit (capped at each op's expert count). */
export function slotsFor(m: Pick<Manifest, "moe">, s: number): number[] {
  return (m.moe ?? []).map((e) => (e.layers === 0 ? e.experts : Math.min(s, e.experts)));
}

/** The least each MoE op can run with: its top-k experts per layer. */
export function minimumSlots(m: Pick<Manifest, "moe">): number[] {
  return (m.moe ?? []).map((e) => (e.layers === 0 ? e.experts : Math.min(e.topK, e.experts)));
}

export interface Residency {
  /** Experts per layer on the device, per MoE op (its expert count: all resident). */
  slots: number[];
  /** Whether the budget holds this, with at least top-k slots per layer. */
  fits: boolean;
  use: DeviceUse;
  /** The least that runs (dense weights, top-k slots per layer, KV, arena), alignment included. */
  minimum: DeviceUse;
}

/**
 * Dense weights first, then experts while the budget allows: the largest number of experts per layer
 * (the same for every MoE op, capped at its expert count) whose allocations fit in `budget`.
 */
export function chooseResidency(m: Manifest, budget: number): Residency {
  const minimum = measureDevice(m, minimumSlots(m));
  const most = Math.max(0, ...(m.moe ?? []).map((e) => e.experts));
  // Each step down frees whole experts; the scan is over at most the expert count, each a cheap replay.
  for (let s = most; s >= 0; s--) {
    const slots = slotsFor(m, s);
    const use = measureDevice(m, slots);
    if (use.used <= budget) {
      const least = minimumSlots(m);
      return { slots, fits: slots.every((n, i) => n >= least[i]!), use, minimum };
    }
  }
  const slots = slotsFor(m, 0);
  return { slots, fits: false, use: measureDevice(m, slots), minimum };
}

/** A device budget too small for even the minimum: the numbers, and what would help. */
export class DeviceBudgetError extends RangeError {
  override readonly name = "DeviceBudgetError";
  readonly exitCode = 2;
  constructor(
    readonly model: string,
    readonly budget: number,
    readonly needed: number,
    detail: string,
  ) {
    super(
      `${model} needs at least ${formatBytes(needed)} (${needed} bytes) of device memory: ${detail}; the budget is ${formatBytes(budget)} (${budget} bytes), ${needed - budget} bytes short. Give a larger --vram, a shorter --context or a smaller quantization scheme`,
    );
  }
}

/** What the minimum holds, for error messages: "dense weights 1.20 MiB, 2 expert slots per layer 3.00 MiB, …". */
export function describeUse(m: Manifest, use: DeviceUse): string {
  const b = use.byLabel;
  const f = (n: number | undefined) => formatBytes(n ?? 0);
  const parts = [`dense weights ${f((b[LABEL.weights] ?? 0) + (b[LABEL.norms] ?? 0))}`];
  const least = minimumSlots(m);
  if (b[LABEL.slots]) parts.push(`${Math.max(...least)} expert slots per layer ${f(b[LABEL.slots])}`);
  if (b[LABEL.experts]) parts.push(`resident experts ${f(b[LABEL.experts])}`);
  parts.push(
    `KV cache for ${m.maxContext} tokens ${f(b[LABEL.kv])}`,
    `arena ${f(b[LABEL.arena])}`,
    `f16 table and alignment ${f((b[LABEL.table] ?? 0) + use.padding)}`,
  );
  return parts.join(", ");
}
