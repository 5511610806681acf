// The graph IR: typed ops with static per-token shapes. Every node defines one value (its id).
// A layer loop is one node whose body is a subgraph run once per layer, never unrolled.
import type { Loc } from "../lang/ast.ts";

export type DType = "f32" | "i32";
export type Attr = number | string | boolean;

export interface Node {
  id: number;
  op: string;
  inputs: number[];
  /** Weight arguments by role (`w`, `router`, `gate`…) → weight key (`tok_embed`, `layer.wq`). */
  weights: Record<string, string>;
  attrs: Record<string, Attr>;
  /**
   * In a loop body, attributes that differ by layer (a weight quantized with q6_k in some layers and q4_k
   * in others): entry l overrides `attrs` in layer l. Absent when every layer agrees.
   */
  layerAttrs?: Record<string, Attr>[];
  /** Per-token shape; the token dimension is implicit. */
  shape: number[];
  dtype: DType;
  loc: Loc;
  /** `loop`: the layer body. Its params are the carried values; its results their new values. */
  body?: Graph;
  /** `moe`: the expert body op; its weights (by role) carry a leading experts dimension. */
  expert?: { op: string; weights: Record<string, string> };
}

export interface Graph {
  /** Values defined outside the node list: forward inputs, or a loop's carried values. */
  params: { id: number; name: string; shape: number[]; dtype: DType }[];
  nodes: Node[];
  results: number[];
}

/** Every node, loop bodies included, in order. */
export function* walk(g: Graph): Generator<{ node: Node; inLoop: Node | undefined }> {
  for (const node of g.nodes) {
    yield { node, inLoop: undefined };
    if (node.body)
      for (const inner of walk(node.body)) yield { node: inner.node, inLoop: inner.inLoop ?? node };
  }
}

/** The node as layer `l` runs it: its per-layer attributes applied. */
export function atLayer(n: Node, l: number): Node {
  const over = n.layerAttrs?.[l];
  return over ? { ...n, attrs: { ...n.attrs, ...over }, layerAttrs: undefined } : n;
}

/**
 * The distinct forms of a node over `count` layers, and which form each layer runs: one form (table all
 * zeros) unless its attributes differ by layer. Code generators emit one kernel per form and index the
 * form by the layer.
 */
export function layerForms(n: Node, count: number): { forms: Node[]; table: number[] } {
  if (!n.layerAttrs) return { forms: [n], table: new Array<number>(count).fill(0) };
  const seen = new Map<string, number>();
  const forms: Node[] = [];
  const table = Array.from({ length: count }, (_, l) => {
    const key = JSON.stringify(n.layerAttrs![l] ?? {});
    let i = seen.get(key);
    if (i === undefined) {
      seen.set(key, (i = forms.length));
      forms.push(atLayer(n, l));
    }
    return i;
  });
  return { forms, table };
}
