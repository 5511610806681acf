// Scheduling: a topological order that keeps peak activation memory low. Greedy list scheduling:
// of the nodes whose inputs are ready, run the one that frees the most bytes net of what it allocates
// (ties keep source order, so the output is deterministic).
import type { Graph, Node } from "../ir/graph.ts";
import { useCounts } from "./rewrite.ts";

export const valueBytes = (shape: number[]) => shape.reduce((a, b) => a * b, 1) * 4;

function order(g: Graph, uses: Map<number, number>): Node[] {
  const defined = new Set<number>(g.params.map((p) => p.id));
  const local = new Set(g.nodes.map((n) => n.id));
  const remaining = new Map(uses);
  const pending = [...g.nodes];
  const out: Node[] = [];
  const ready = (n: Node) => n.inputs.every((i) => defined.has(i) || !local.has(i));
  while (pending.length) {
    let best = -1;
    let bestGain = Number.NEGATIVE_INFINITY;
    pending.forEach((n, i) => {
      if (!ready(n)) return;
      let gain = -valueBytes(n.shape);
      for (const id of new Set(n.inputs)) {
        const node = g.nodes.find((x) => x.id === id);
        const readsHere = n.inputs.filter((x) => x === id).length;
        if (node && remaining.get(id) === readsHere) gain += valueBytes(node.shape);
      }
      if (gain > bestGain) {
        best = i;
        bestGain = gain;
      }
    });
    if (best < 0) throw new Error("schedule: the graph has a cycle");
    const [n] = pending.splice(best, 1) as [Node];
    for (const id of n.inputs) remaining.set(id, (remaining.get(id) ?? 0) - 1);
    defined.add(n.id);
    out.push(n);
  }
  return out;
}

export function schedule(g: Graph): Graph {
  const uses = useCounts(g);
  const visit = (x: Graph): Graph => ({
    ...x,
    nodes: order(x, uses).map((n) => (n.body ? { ...n, body: visit(n.body) } : n)),
  });
  return visit(g);
}
