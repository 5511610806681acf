// Common-subexpression elimination: two nodes with the same op, inputs, weights and attributes
// compute the same value; keep the first. Cache writes are effects and never merge.
import type { Graph, Node } from "../ir/graph.ts";

function key(n: Node, rename: Map<number, number>): string {
  const inputs = n.inputs.map((i) => rename.get(i) ?? i);
  return JSON.stringify([n.op, inputs, n.weights, n.attrs, n.layerAttrs ?? null, n.expert ?? null]);
}

export function cse(g: Graph, rename = new Map<number, number>()): Graph {
  const seen = new Map<string, number>();
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    if (n.body) {
      nodes.push({ ...n, inputs: n.inputs.map((i) => rename.get(i) ?? i), body: cse(n.body, rename) });
      continue;
    }
    const k = key(n, rename);
    const prior = seen.get(k);
    if (prior !== undefined && n.op !== "kv_write" && n.op !== "loop_result") {
      rename.set(n.id, prior);
      continue;
    }
    seen.set(k, n.id);
    nodes.push({ ...n, inputs: n.inputs.map((i) => rename.get(i) ?? i) });
  }
  return { ...g, nodes, results: g.results.map((r) => rename.get(r) ?? r) };
}
