// Device memory planning: what a model needs on a target (weights, KV cache, activation arena) and,
// when the experts do not all fit, how many stay resident per layer as cache slots fed from the host.
// Everything is decided here, before anything runs; the numbers are bytes.
import { findScheme } from "../../runtime/quant/registry.ts";
import { walk } from "../ir/graph.ts";
import type { CheckedModel } from "../lang/check.ts";
import type { WeightInfo } from "../lang/lower.ts";
import { type Quant, runPasses, schemeResolver } from "../pipeline.ts";
import { planActivations } from "./activations.ts";

export interface DevicePlanInput {
  model: CheckedModel;
  quant: Quant;
  budgetBytes: number;
  /** Context to plan the KV cache for. */
  context: number;
  /** Bytes per KV element: 2 for f16 (llama.cpp's default), 4 for f32. */
  kvBytes?: number;
}

export interface DevicePlan {
  fits: boolean;
  budget_bytes: number;
  device_bytes: number;
  kv_cache_bytes: number;
  arena_bytes: number;
  weights: { resident_bytes: number; offloaded_bytes: number; dense_bytes: number; expert_bytes: number };
  experts: {
    resident: number;
    total: number;
    cache_slots_per_layer: number;
    bytes_each: number;
    layers: number;
    top_k: number;
  };
  context: number;
  /** The largest context whose KV cache fits beside the minimum (dense weights, top-k expert slots, arena). */
  max_context: number;
  /** When it does not fit: what is needed and what would help. */
  shortfall?: { needed_bytes: number; advice: string };
}

const elements = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Facts of the model the planner needs, read off its graph: experts per layer, top-k, KV bytes per token. */
export function modelFacts(m: CheckedModel, kvBytes = 2) {
  const expertKeys = new Set<string>();
  let experts = 0;
  let topK = 0;
  let kvPerToken = 0;
  for (const { node, inLoop } of walk(m.graph)) {
    if (node.op === "moe") {
      for (const k of Object.values(node.expert!.weights)) expertKeys.add(k);
      experts = m.weights.get(node.weights.router!)!.shape[0]!;
      topK = node.attrs.top_k as number;
    }
    if (node.op === "attention") {
      const layers = inLoop ? (inLoop.attrs.count as number) : 1;
      const headDim = node.shape[0]! / (node.attrs.heads as number);
      kvPerToken += layers * 2 * (node.attrs.kv_heads as number) * headDim * kvBytes;
    }
  }
  const layers = [...m.groups.values()].reduce((n, g) => Math.max(n, g.count), 1);
  return { expertKeys, experts, topK, kvPerToken, layers };
}

export function weightBytesOf(m: CheckedModel, w: WeightInfo, scheme: string): number {
  const s = findScheme(scheme)!;
  const copies = w.group ? m.groups.get(w.group)!.count : 1;
  return (elements(w.shape) / s.blockSize) * s.blockBytes * copies;
}

export function planDevice(p: DevicePlanInput): DevicePlan {
  const { model: m } = p;
  const f = modelFacts(m, p.kvBytes);
  const schemeOf = schemeResolver(m, p.quant);
  let dense = 0;
  let expertTotal = 0;
  for (const w of m.weights.values()) {
    const b = weightBytesOf(m, w, schemeOf(w.key));
    if (f.expertKeys.has(w.key)) expertTotal += b;
    else dense += b;
  }
  const totalExperts = f.experts * (f.expertKeys.size ? f.layers : 0);
  const expertEach = totalExperts ? expertTotal / totalExperts : 0;
  const arena = planActivations(runPasses(m, p.quant).at(-1)!.graph).arena.size;
  const kv = f.kvPerToken * p.context;
  // The least that can run: dense weights, the arena, and top-k expert slots in every MoE layer.
  const minimum = dense + arena + f.topK * expertEach * (f.expertKeys.size ? f.layers : 0);
  const room = p.budgetBytes - dense - arena - kv;
  const perLayer = f.expertKeys.size
    ? Math.max(0, Math.min(f.experts, Math.floor(room / expertEach / f.layers)))
    : 0;
  const resident = perLayer * (f.expertKeys.size ? f.layers : 0);
  const fits = minimum + kv <= p.budgetBytes && (!f.expertKeys.size || perLayer >= f.topK);
  const residentBytes = dense + resident * expertEach;
  const maxContext = f.kvPerToken
    ? Math.max(0, Math.floor((p.budgetBytes - minimum) / f.kvPerToken))
    : Number.MAX_SAFE_INTEGER;
  const plan: DevicePlan = {
    fits,
    budget_bytes: p.budgetBytes,
    device_bytes: residentBytes + kv + arena,
    kv_cache_bytes: kv,
    arena_bytes: arena,
    weights: {
      resident_bytes: residentBytes,
      offloaded_bytes: dense + expertTotal - residentBytes,
      dense_bytes: dense,
      expert_bytes: expertTotal,
    },
    experts: {
      resident,
      total: totalExperts,
      cache_slots_per_layer: perLayer,
      bytes_each: expertEach,
      layers: f.layers,
      top_k: f.topK,
    },
    context: p.context,
    max_context: maxContext,
  };
  if (!fits) {
    const advice: string[] = [];
    if (maxContext > 0 && maxContext < p.context) advice.push(`a context of at most ${maxContext}`);
    advice.push("a smaller quantization scheme");
    plan.shortfall = { needed_bytes: minimum + kv, advice: advice.join(", or ") };
  }
  return plan;
}
