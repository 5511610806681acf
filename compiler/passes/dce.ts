// Dead-code elimination: keep what the results need, inside loop bodies too.
import type { Graph } from "../ir/graph.ts";

export function dce(g: Graph, live = new Set<number>()): Graph {
  for (const r of g.results) live.add(r);
  const keep = new Array<boolean>(g.nodes.length).fill(false);
  const bodies = new Map<number, Graph>();
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const n = g.nodes[i]!;
    if (!live.has(n.id) && n.op !== "loop") continue;
    if (n.body) {
      // A loop is live if any of its results is; its body keeps what its results need.
      bodies.set(n.id, dce(n.body, live));
      n.body.params.forEach((p, k) => live.has(p.id) && live.add(n.inputs[k]!));
      for (const id of n.inputs) live.add(id);
    }
    keep[i] = true;
    for (const id of n.inputs) live.add(id);
  }
  return {
    ...g,
    nodes: g.nodes.filter((_, i) => keep[i]).map((n) => (n.body ? { ...n, body: bodies.get(n.id)! } : n)),
  };
}
