// High-level ops → primitives: every weight use becomes an explicit `dequantize` feeding a `matmul`,
// swiglu and moe unfold into their matmuls and activations, attention into cache writes and `attend`,
// a linear's bias into a `bias` step after its product.
// The reference executor runs this form; the fusion pass folds it back into kernels.
import type { Graph, Node } from "../ir/graph.ts";
import { ops } from "../lang/ops.ts";
import { Ids, mapNodes } from "./rewrite.ts";

export interface WeightSchemes {
  schemeOf(key: string): { scheme: string; layers?: string[] };
  shapeOf(key: string): number[];
}

export function decompose(g: Graph, w: WeightSchemes): Graph {
  const ids = new Ids(g);
  let caches = 0;
  return mapNodes(g, (n) => {
    const out: Node[] = [];
    const emit = (
      op: string,
      inputs: number[],
      shape: number[],
      patch: Partial<Node> = {},
      id = ids.fresh(),
    ): number => {
      out.push({ id, op, inputs, weights: {}, attrs: {}, shape, dtype: "f32", loc: n.loc, ...patch });
      return id;
    };
    const dq = (key: string) => {
      const s = w.schemeOf(key);
      const layerAttrs = s.layers?.map((scheme) => ({ scheme }));
      return emit("dequantize", [], w.shapeOf(key), {
        weights: { w: key },
        attrs: { scheme: s.scheme },
        ...(layerAttrs && { layerAttrs }),
      });
    };
    const matmul = (x: number, key: string, id?: number) => {
      const shape = w.shapeOf(key);
      return emit("matmul", [x, dq(key)], [shape.at(-2)!], {}, id);
    };
    const swiglu = (x: number, gate: string, up: string, down: string, id: number) => {
      const s = emit("silu", [matmul(x, gate)], [w.shapeOf(gate).at(-2)!]);
      const m = emit("mul", [s, matmul(x, up)], [w.shapeOf(gate).at(-2)!]);
      matmul(m, down, id);
    };
    switch (n.op) {
      case "linear":
        if (!n.weights.bias) {
          matmul(n.inputs[0]!, n.weights.w!, n.id);
          return out;
        }
        // The bias is its own step here; the fusion pass folds it into the product's epilogue.
        emit(
          "bias",
          [matmul(n.inputs[0]!, n.weights.w!)],
          n.shape,
          { weights: { bias: n.weights.bias } },
          n.id,
        );
        return out;
      case "swiglu":
        swiglu(n.inputs[0]!, n.weights.gate!, n.weights.up!, n.weights.down!, n.id);
        return out;
      case "moe": {
        const experts = w.shapeOf(n.weights.router!)[0]!;
        const probs = emit("softmax", [matmul(n.inputs[0]!, n.weights.router!)], [experts]);
        const k = n.attrs.top_k as number;
        const sel = emit("topk", [probs], [2 * k], { attrs: { k, normalize: n.attrs.normalize! } });
        const e = n.expert!;
        const weights = ops[e.op]!.expertWeights!.map((role) => dq(e.weights[role]!));
        emit(
          "expert_mix",
          [n.inputs[0]!, sel, ...weights],
          n.shape,
          { attrs: { body: e.op, experts } },
          n.id,
        );
        return out;
      }
      case "attention": {
        const [q, k, v] = n.inputs as [number, number, number];
        // A cache write defines no activation (shape [0]); attend depends on it so the order holds.
        const cache = caches++;
        const kw = emit("kv_write", [k], [0], { attrs: { slot: "k", cache } });
        const vw = emit("kv_write", [v], [0], { attrs: { slot: "v", cache } });
        emit("attend", [q, kw, vw], n.shape, { attrs: { ...n.attrs, cache } }, n.id);
        return out;
      }
      default:
        return [n];
    }
  });
}
