// A readable dump of the IR, one node per line: `%7 = linear(%3) w=layer.wq [4096] @12:9`.
import type { Graph, Node } from "./graph.ts";

function attrs(n: Node): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(n.weights)) parts.push(`${k}=${v}`);
  for (const [k, v] of Object.entries(n.attrs))
    parts.push(`${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
  if (n.expert)
    parts.push(
      `expert=${n.expert.op}(${Object.entries(n.expert.weights)
        .map(([k, v]) => `${k}=${v}`)
        .join(", ")})`,
    );
  return parts.length ? ` ${parts.join(" ")}` : "";
}

export function printGraph(g: Graph, indent = ""): string {
  const lines: string[] = [];
  for (const p of g.params) lines.push(`${indent}param %${p.id} ${p.name} [${p.shape}] ${p.dtype}`);
  for (const n of g.nodes) {
    const ins = n.inputs.map((i) => `%${i}`).join(", ");
    lines.push(`${indent}%${n.id} = ${n.op}(${ins})${attrs(n)} [${n.shape}] @${n.loc.line}:${n.loc.col}`);
    if (n.body) {
      lines.push(printGraph(n.body, `${indent}  `));
    }
  }
  lines.push(`${indent}results ${g.results.map((r) => `%${r}`).join(", ")}`);
  return lines.join("\n");
}
