// The compiler's middle: the lowered graph goes through each pass in turn. Every pass is a
// function IR → IR, and every intermediate graph is kept so `--dump-ir[=PASS]` can print it.
import { findScheme } from "../runtime/quant/registry.ts";
import type { Graph } from "./ir/graph.ts";
import { walk } from "./ir/graph.ts";
import type { CheckedModel, CheckedQuant } from "./lang/check.ts";
import { defaultScheme } from "./lang/check.ts";
import { SpecError } from "./lang/errors.ts";
import { cse } from "./passes/cse.ts";
import { dce } from "./passes/dce.ts";
import { decompose } from "./passes/decompose.ts";
import { fuse } from "./passes/fuse.ts";
import { schedule } from "./passes/schedule.ts";

export interface Stage {
  pass: string;
  graph: Graph;
}

/** `--quant` is a quantization block, one scheme for every matrix, or nothing (f32). */
export type Quant = CheckedQuant | string | undefined;

/** A weight's scheme: one for every layer, or `layers`, one per layer, where the layers differ (a llama.cpp
 * preset gives `ffn_down` q6_k in some layers and q4_k in the rest). `scheme` is then "mixed". */
export interface WeightScheme {
  scheme: string;
  layers?: string[];
}

/** The scheme of each weight key, per layer; every scheme named must be registered. */
export function schemeResolver(m: CheckedModel, quant: Quant): (key: string) => WeightScheme {
  const cache = new Map<string, WeightScheme>();
  return (key) => {
    const hit = cache.get(key);
    if (hit) return hit;
    const w = m.weights.get(key)!;
    const of = (layer?: number) =>
      quant === undefined
        ? "f32"
        : typeof quant === "string"
          ? defaultScheme(w, quant)
          : quant.schemeFor(key, layer);
    const count = w.group ? m.groups.get(w.group)!.count : 0;
    const all = count ? Array.from({ length: count }, (_, l) => of(l)) : [of()];
    for (const s of new Set(all)) {
      if (!findScheme(s)) {
        const where = typeof quant === "object" ? quant.decl.loc : w.loc;
        throw new SpecError(where, `unknown quantization scheme \`${s}\` for \`${key}\``);
      }
    }
    const out: WeightScheme =
      new Set(all).size === 1 ? { scheme: all[0]! } : { scheme: "mixed", layers: all };
    cache.set(key, out);
    return out;
  };
}

export function runPasses(m: CheckedModel, quant: Quant): Stage[] {
  const schemeOf = schemeResolver(m, quant);
  const shapeOf = (key: string) => m.weights.get(key)!.shape;
  const stages: Stage[] = [{ pass: "lower", graph: m.graph }];
  const run = (pass: string, f: (g: Graph) => Graph) => stages.push({ pass, graph: f(stages.at(-1)!.graph) });
  run("decompose", (g) => decompose(g, { schemeOf, shapeOf }));
  run("cse", cse);
  run("dce", dce);
  run("fuse", fuse);
  run("schedule", schedule);
  return stages;
}

export const passNames = ["lower", "decompose", "cse", "dce", "fuse", "schedule"];

export function countOps(g: Graph): number {
  return [...walk(g)].filter(({ node }) => node.op !== "loop_result").length;
}
