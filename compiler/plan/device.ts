// Device memory planning: what a model needs on a target (weights, KV cache, activation arena) and,
// when the experts do not all fit, how many experts per layer the device holds as cache slots fed from
// the host. Everything is decided here, before anything runs; the numbers are bytes.
//
// The plan is the runtime's own layout: the manifest a compile would write (its arena includes the
// kernels' scratch) laid out by runtime/memory/device-plan.ts, the code `moec run` allocates with. So the
// bytes per category here are exactly what the runtime's accountant reports (`byLabel()`), KV caches in
// the compile's KV type (f16 unless asked), the 64-byte alignment of every region included in `device_bytes`.

import type { KvType } from "../../runtime/kv-type.ts";
import { withSequences } from "../../runtime/manifest.ts";
import {
  allExpertBytes,
  chooseResidency,
  F16_TABLE_BYTES,
  kvBytesPerToken,
  LABEL,
  measureDevice,
  minimumSlots,
} from "../../runtime/memory/device-plan.ts";
import { manifestsFor } from "../compile.ts";
import type { CheckedModel } from "../lang/check.ts";
import type { Quant } from "../pipeline.ts";

export interface DevicePlanInput {
  model: CheckedModel;
  quant: Quant;
  budgetBytes: number;
  /** Context to plan the KV cache (and the attention scratch) for. */
  context: number;
  kvType?: KvType;
}

export interface DevicePlan {
  fits: boolean;
  budget_bytes: number;
  /** Device memory the runtime makes: every allocation below plus the f16 table and alignment. */
  device_bytes: number;
  kv_cache_bytes: number;
  /** Sequences whose KV caches kv_cache_bytes holds (each of `context` tokens). */
  sequences: number;
  /** The KV caches' element type, and their bytes per position (every layer, K and V). */
  kv_type: KvType;
  kv_bytes_per_token: number;
  /** Activations and kernel scratch: the compiled manifest's arenaBytes. */
  arena_bytes: number;
  weights: { resident_bytes: number; offloaded_bytes: number; dense_bytes: number; expert_bytes: number };
  experts: {
    /** Experts on the device at a time: resident ones, or cache slots. */
    resident: number;
    total: number;
    /** Experts per layer on the device; fewer than the layer's experts means an expert cache. */
    cache_slots_per_layer: number;
    bytes_each: number;
    layers: number;
    top_k: number;
  };
  context: number;
  /** The largest context that fits beside the minimum (dense weights, top-k expert slots, arena), at most
   * the model's own context. */
  max_context: number;
  /** Device bytes per category, as the runtime's accountant labels them. */
  allocations: Record<string, number>;
  f16_table_bytes: number;
  padding_bytes: number;
  /** Host bytes holding the offloaded experts when they are copied to host memory (0: none offloaded). */
  host_expert_bytes: number;
  /** When it does not fit: what is needed and what would help. */
  shortfall?: { needed_bytes: number; advice: string };
}

/** Plans for one model and quantization at any budget and context; compiles each context once. */
export function devicePlanner(
  model: CheckedModel,
  quant: Quant,
  backend = "cpu",
  kvType?: KvType,
  /** Sequences generated at once (`moec serve --parallel`), each with its own KV caches. */
  sequences = 1,
) {
  const compiled = manifestsFor(model, quant, backend, kvType);
  const manifestAt = (context: number) => withSequences(compiled(context), sequences);
  const limit = model.params.get("context") ?? model.params.get("max_context");

  /** Bytes of everything resident, no budget: the VRAM calculators' figure. */
  const fullyResident = (context: number): number => {
    const m = manifestAt(context);
    return measureDevice(
      m,
      (m.moe ?? []).map((e) => e.experts),
    ).used;
  };

  /** The largest context whose minimum (top-k slots per layer) fits in `budget`, at most the model's. */
  const largestContext = (budget: number): number => {
    const fitsAt = (c: number) => {
      const m = manifestAt(c);
      return measureDevice(m, minimumSlots(m)).used <= budget;
    };
    const probe = manifestAt(1);
    const kvPerToken = kvBytesPerToken(probe);
    if (!fitsAt(1)) return 0;
    const cap = limit ?? Number.MAX_SAFE_INTEGER;
    if (kvPerToken === 0) return cap;
    // The KV cache grows by kvPerToken a token and the arena does not shrink: an upper bound, then bisect.
    let hi = Math.min(
      cap,
      Math.floor((budget - measureDevice(probe, minimumSlots(probe)).used) / kvPerToken) + 1,
    );
    if (fitsAt(hi)) return hi;
    let lo = 1;
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (fitsAt(mid)) lo = mid;
      else hi = mid;
    }
    return lo;
  };

  const plan = ({
    budgetBytes: budget,
    context,
  }: Omit<DevicePlanInput, "model" | "quant" | "kvType">): DevicePlan => {
    const m = manifestAt(context);
    const res = chooseResidency(m, budget);
    const by = res.use.byLabel;
    const moes = m.moe ?? [];
    const dense = (by[LABEL.weights] ?? 0) + (by[LABEL.norms] ?? 0);
    let expertTotal = 0;
    let totalExperts = 0;
    let resident = 0;
    let hostBytes = 0;
    moes.forEach((e, i) => {
      const copies = Math.max(1, e.layers);
      const all = allExpertBytes(m, e);
      expertTotal += all;
      totalExperts += e.experts * copies;
      resident += Math.min(res.slots[i]!, e.experts) * copies;
      if (res.slots[i]! < e.experts) hostBytes += all;
    });
    const onDevice = (by[LABEL.experts] ?? 0) + (by[LABEL.slots] ?? 0);
    const first = moes[0];
    const out: DevicePlan = {
      fits: res.fits,
      budget_bytes: budget,
      device_bytes: res.use.used,
      kv_cache_bytes: by[LABEL.kv] ?? 0,
      sequences,
      kv_type: m.kvType ?? "f32",
      kv_bytes_per_token: kvBytesPerToken(m),
      arena_bytes: m.arenaBytes,
      weights: {
        resident_bytes: dense + onDevice,
        offloaded_bytes: expertTotal - onDevice,
        dense_bytes: dense,
        expert_bytes: expertTotal,
      },
      experts: {
        resident,
        total: totalExperts,
        cache_slots_per_layer: first ? res.slots[0]! : 0,
        bytes_each: totalExperts ? expertTotal / totalExperts : 0,
        layers: first ? Math.max(1, first.layers) : 0,
        top_k: first?.topK ?? 0,
      },
      context,
      max_context: largestContext(budget),
      allocations: by,
      f16_table_bytes: F16_TABLE_BYTES,
      padding_bytes: res.use.padding,
      host_expert_bytes: hostBytes,
    };
    if (!res.fits) {
      const advice: string[] = [];
      if (out.max_context > 0 && out.max_context < context)
        advice.push(`a context of at most ${out.max_context}`);
      advice.push("a smaller quantization scheme");
      out.shortfall = { needed_bytes: res.minimum.used, advice: advice.join(", or ") };
    }
    return out;
  };

  return { plan, fullyResident, largestContext, manifestAt };
}

export function planDevice(p: DevicePlanInput): DevicePlan {
  return devicePlanner(p.model, p.quant, "cpu", p.kvType).plan(p);
}
