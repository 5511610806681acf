// What a spec costs, computed from its graph: parameters (total and active per token), a
// breakdown by role, FLOPs and KV-cache bytes per decoded token, and weight bytes per scheme.
import { DEFAULT_KV_TYPE, type KvType, kvBytesPerValue } from "../runtime/kv-type.ts";
import { findScheme, schemes } from "../runtime/quant/registry.ts";
import { walk } from "./ir/graph.ts";
import type { CheckedModel, CheckedQuant } from "./lang/check.ts";
import { defaultScheme } from "./lang/check.ts";
import type { WeightInfo } from "./lang/lower.ts";

export const categories = ["embeddings", "attention", "router", "experts", "ffn", "norms", "head"] as const;
export type Category = (typeof categories)[number];

export interface Inspection {
  model: string;
  params: { total: number; active: number; breakdown: Record<Category, { total: number; active: number }> };
  layers: number;
  /** Matmul FLOPs per decoded token, plus what each position of context adds (QKᵀ and AV). */
  flops: { per_token: number; per_context_position: number; at_context: Record<string, number> };
  kv_cache: { bytes_per_token: number; dtype: KvType };
  /** Weight bytes when every matrix uses one scheme (vectors stay f32), and under each of the spec's rules. */
  weight_bytes: { uniform: Record<string, number>; quantizations: Record<string, number> };
}

const elements = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Each weight's role, read off the op that consumes it. */
function roles(m: CheckedModel): Map<string, { category: Category; activeFraction: number }> {
  const out = new Map<string, { category: Category; activeFraction: number }>();
  const set = (key: string, category: Category, activeFraction = 1) => {
    if (!out.has(key)) out.set(key, { category, activeFraction });
  };
  const byId = new Map([...walk(m.graph)].map(({ node }) => [node.id, node]));
  // Projections feeding attention (possibly through rope) and the one reading its output are attention's.
  const attentionSide = new Set<number>();
  for (const { node } of walk(m.graph)) {
    if (node.op !== "attention") continue;
    for (let id of node.inputs) {
      // Through RoPE and a q/k norm to the projection.
      while (byId.get(id)?.op === "rope" || byId.get(id)?.op === "rms_norm") id = byId.get(id)!.inputs[0]!;
      attentionSide.add(id);
    }
  }
  for (const { node, inLoop } of walk(m.graph)) {
    switch (node.op) {
      case "embed":
        set(node.weights.table!, "embeddings");
        break;
      case "rms_norm":
        set(node.weights.weight!, "norms");
        break;
      case "moe": {
        set(node.weights.router!, "router");
        const experts = m.weights.get(node.weights.router!)!.shape[0]!;
        for (const key of Object.values(node.expert!.weights))
          set(key, "experts", (node.attrs.top_k as number) / experts);
        break;
      }
      case "swiglu":
        for (const key of Object.values(node.weights)) set(key, "ffn");
        break;
      case "linear": {
        const readsAttention = byId.get(node.inputs[0]!)?.op === "attention";
        const cat = attentionSide.has(node.id) || readsAttention ? "attention" : inLoop ? "ffn" : "head";
        set(node.weights.w!, cat);
        if (node.weights.bias) set(node.weights.bias, cat);
        break;
      }
    }
  }
  return out;
}

function copies(m: CheckedModel, w: WeightInfo): number {
  return w.group ? m.groups.get(w.group)!.count : 1;
}

export function weightBytes(m: CheckedModel, schemeOf: (w: WeightInfo, layer?: number) => string): number {
  let bytes = 0;
  for (const w of m.weights.values()) {
    const layers = w.group ? [...Array(copies(m, w)).keys()] : [undefined];
    for (const layer of layers) {
      const s = findScheme(schemeOf(w, layer))!;
      bytes += (elements(w.shape) / s.blockSize) * s.blockBytes;
    }
  }
  return bytes;
}

export function inspect(
  m: CheckedModel,
  quants: CheckedQuant[],
  contexts = [1, 4096, 32768],
  kvType: KvType = DEFAULT_KV_TYPE,
): Inspection {
  const role = roles(m);
  const breakdown = Object.fromEntries(
    categories.map((c) => [c, { total: 0, active: 0 }]),
  ) as Inspection["params"]["breakdown"];
  let total = 0;
  let active = 0;
  let matmulFlops = 0;
  for (const w of m.weights.values()) {
    const r = role.get(w.key) ?? { category: "ffn" as Category, activeFraction: 1 };
    const n = elements(w.shape) * copies(m, w);
    breakdown[r.category].total += n;
    breakdown[r.category].active += n * r.activeFraction;
    total += n;
    active += n * r.activeFraction;
    // A lookup and a scale are not matmuls; every other weight is multiplied once per token.
    if (r.category !== "embeddings" && r.category !== "norms") matmulFlops += 2 * n * r.activeFraction;
  }
  let kvPerToken = 0;
  let attnPerPosition = 0;
  let layers = 0;
  for (const { node, inLoop } of walk(m.graph)) {
    if (node.op === "loop") layers += node.attrs.count as number;
    if (node.op !== "attention") continue;
    const times = inLoop ? (inLoop.attrs.count as number) : 1;
    const heads = node.attrs.heads as number;
    const headDim = node.shape[0]! / heads;
    kvPerToken += times * 2 * (node.attrs.kv_heads as number) * headDim * kvBytesPerValue(kvType);
    attnPerPosition += times * 4 * heads * headDim;
  }
  const uniform: Record<string, number> = {};
  for (const s of schemes()) uniform[s.name] = weightBytes(m, (w) => defaultScheme(w, s.name));
  const quantizations: Record<string, number> = {};
  for (const q of quants.filter((q) => q.model === m.name)) {
    quantizations[q.name] = weightBytes(m, (w, layer) => q.schemeFor(w.key, layer));
  }
  return {
    model: m.name,
    params: { total, active: Math.round(active), breakdown },
    layers,
    flops: {
      per_token: Math.round(matmulFlops),
      per_context_position: attnPerPosition,
      at_context: Object.fromEntries(
        contexts.map((c) => [String(c), Math.round(matmulFlops + c * attnPerPosition)]),
      ),
    },
    kv_cache: { bytes_per_token: kvPerToken, dtype: kvType },
    weight_bytes: { uniform, quantizations },
  };
}
