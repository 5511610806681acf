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

/** The scheme of each weight key; per-layer rules must agree across layers, since one kernel serves them all. */
export function schemeResolver(m: CheckedModel, quant: Quant): (key: string) => string {
  const cache = new Map<string, string>();
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
    const s = of(w.group ? 0 : undefined);
    if (w.group) {
      const count = m.groups.get(w.group)!.count;
      for (let l = 1; l < count; l++) {
        if (of(l) !== s) {
          const where = typeof quant === "object" ? quant.decl.loc : w.loc;
          throw new SpecError(
            where,
            `\`${key}\` is ${s} in layer 0 but ${of(l)} in layer ${l}; one kernel serves every layer, so a weight's scheme must be the same in all of them`,
          );
        }
      }
    }
    if (!findScheme(s)) throw new SpecError(w.loc, `unknown quantization scheme \`${s}\``);
    cache.set(key, s);
    return s;
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
