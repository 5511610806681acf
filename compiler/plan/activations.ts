// Activation memory: the scheduled graph's values become buffers with live ranges, packed into one
// arena by planArena. A loop body is planned once and reused by every layer; values the body reads
// from outside, and the carried values, stay live for the whole loop.
import type { Graph } from "../ir/graph.ts";
import { valueBytes } from "../passes/schedule.ts";
import { type ArenaPlan, type LiveBuffer, planArena } from "./arena.ts";

export interface ActivationPlan {
  arena: ArenaPlan;
  buffers: LiveBuffer[];
  /** Values that share another value's buffer (a loop's results live in its carried buffers). */
  alias: Map<number, number>;
  /** Byte size per value id. */
  sizes: Map<number, number>;
}

export function planActivations(g: Graph, tokens = 1): ActivationPlan {
  const start = new Map<number, number>();
  const end = new Map<number, number>();
  const sizes = new Map<number, number>();
  const alias = new Map<number, number>();
  let step = 0;
  const def = (id: number, bytes: number) => {
    const real = alias.get(id) ?? id;
    if (!start.has(real)) start.set(real, step);
    end.set(real, Math.max(end.get(real) ?? step, step));
    sizes.set(real, Math.max(sizes.get(real) ?? 0, bytes * tokens));
  };
  const use = (id: number, at = step) => {
    const real = alias.get(id) ?? id;
    if (start.has(real)) end.set(real, Math.max(end.get(real)!, at));
  };
  const visit = (x: Graph) => {
    for (const n of x.nodes) {
      if (n.op === "loop_result") {
        // The loop's k-th carried buffer is the result; no copy.
        const loop = x.nodes.find((m) => m.id === n.inputs[0])!;
        alias.set(n.id, loop.body!.params[n.attrs.index as number]!.id);
        use(n.id);
        continue;
      }
      if (!n.body) {
        for (const i of n.inputs) use(i);
        // A cache-writing projection writes into the KV cache, not the arena.
        def(n.id, n.attrs.kv !== undefined ? 0 : valueBytes(n.shape));
        step++;
        continue;
      }
      const b = n.body;
      b.params.forEach((p, k) => {
        use(n.inputs[k]!);
        def(p.id, valueBytes(p.shape));
      });
      step++;
      visit(b);
      // Everything the body reads from outside lives until the last layer is done.
      const inner = new Set(b.nodes.map((m) => m.id));
      const outside = new Set<number>();
      const collect = (y: Graph) =>
        y.nodes.forEach((m) => m.inputs.forEach((i) => !inner.has(i) && outside.add(i)));
      collect(b);
      for (const i of outside) use(i, step);
      for (const r of b.results) use(r, step);
      for (const p of b.params) use(p.id, step);
      step++;
    }
    for (const r of x.results) use(r, step);
  };
  visit(g);
  const buffers: LiveBuffer[] = [...start.keys()]
    .filter((id) => (sizes.get(id) ?? 0) > 0)
    .map((id) => ({ id, size: sizes.get(id)!, start: start.get(id)!, end: end.get(id)! }));
  return { arena: planArena(buffers), buffers, alias, sizes };
}
