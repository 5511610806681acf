// Shared machinery for passes: fresh ids, use counts, and node-by-node rewriting that recurses into loop bodies.
import type { Graph, Node } from "../ir/graph.ts";
import { walk } from "../ir/graph.ts";

export function maxId(g: Graph): number {
  let m = -1;
  for (const p of g.params) m = Math.max(m, p.id);
  for (const { node } of walk(g)) {
    m = Math.max(m, node.id);
    for (const p of node.body?.params ?? []) m = Math.max(m, p.id);
  }
  return m;
}

export class Ids {
  private next: number;
  constructor(g: Graph) {
    this.next = maxId(g) + 1;
  }
  fresh(): number {
    return this.next++;
  }
}

/** How many times each value is read, by nodes anywhere and by graph results. */
export function useCounts(g: Graph): Map<number, number> {
  const uses = new Map<number, number>();
  const add = (id: number) => uses.set(id, (uses.get(id) ?? 0) + 1);
  const visit = (x: Graph) => {
    for (const n of x.nodes) {
      n.inputs.forEach(add);
      if (n.body) visit(n.body);
    }
    x.results.forEach(add);
  };
  visit(g);
  return uses;
}

/** Every node by id, loop bodies included. */
export function nodeIndex(g: Graph): Map<number, Node> {
  return new Map([...walk(g)].map(({ node }) => [node.id, node]));
}

/** Rebuilds each graph's node list through `fn`, bodies first. `fn` returns the nodes that replace `n`. */
export function mapNodes(g: Graph, fn: (n: Node, g: Graph) => Node[]): Graph {
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    const m = n.body ? { ...n, body: mapNodes(n.body, fn) } : n;
    nodes.push(...fn(m, g));
  }
  return { ...g, nodes };
}

export function derive(n: Node, patch: Partial<Node>): Node {
  return {
    ...n,
    ...patch,
    weights: { ...n.weights, ...patch.weights },
    attrs: { ...n.attrs, ...patch.attrs },
    ...(patch.layerAttrs && { layerAttrs: mergeLayerAttrs(n.layerAttrs, patch.layerAttrs) }),
  };
}

/** Per-layer attributes of two sources, layer by layer (b's win); undefined when neither has any. */
export function mergeLayerAttrs(
  a: Node["layerAttrs"],
  b: Node["layerAttrs"],
): Node["layerAttrs"] | undefined {
  if (!a) return b;
  if (!b) return a;
  return a.map((x, l) => ({ ...x, ...b[l] }));
}

/** Attribute `from` of `src` under the name `to`, with its per-layer values: what a fused node takes from a
 * node it absorbs (a dequantize's scheme becomes a linear's `scheme` or a gate_up's `gate_scheme`). */
export function takeAttr(src: Node, from: string, to: string): Pick<Node, "attrs" | "layerAttrs"> {
  return {
    attrs: { [to]: src.attrs[from]! },
    layerAttrs: src.layerAttrs?.map((a) => (from in a ? { [to]: a[from]! } : {})),
  };
}

/** Several takeAttr results as one patch. */
export function takeAttrs(
  ...parts: Pick<Node, "attrs" | "layerAttrs">[]
): Pick<Node, "attrs" | "layerAttrs"> {
  return parts.reduce((acc, p) => ({
    attrs: { ...acc.attrs, ...p.attrs },
    layerAttrs: mergeLayerAttrs(acc.layerAttrs, p.layerAttrs),
  }));
}
