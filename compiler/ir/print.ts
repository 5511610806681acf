// A readable dump of the IR, one node per line: `%7 = linear(%3) w=layer.wq [4096] @12:9`.
import type { Graph, Node } from "./graph.ts";

function attrs(n: Node): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(n.weights)) parts.push(`${k}=${v}`);
  for (const [k, v] of Object.entries(n.attrs))
    parts.push(`${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
  // Per-layer attributes: each distinct value with the layers that take it, `scheme={q6_k: 0-1,4 | q4_k: 2-3}`.
  for (const k of new Set((n.layerAttrs ?? []).flatMap((a) => Object.keys(a)))) {
    const by = new Map<string, number[]>();
    n.layerAttrs!.forEach((a, l) => {
      const v = String(a[k] ?? n.attrs[k]);
      by.set(v, [...(by.get(v) ?? []), l]);
    });
    const i = parts.findIndex((p) => p.startsWith(`${k}=`));
    const shown = `${k}={${[...by].map(([v, ls]) => `${v}: ${layerRanges(ls)}`).join(" | ")}}`;
    if (i >= 0) parts[i] = shown;
    else parts.push(shown);
  }
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

/** Sorted layer numbers as ranges: [0, 1, 2, 5] → "0-2,5". */
export function layerRanges(ls: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < ls.length; ) {
    let j = i;
    while (j + 1 < ls.length && ls[j + 1] === ls[j]! + 1) j++;
    out.push(j === i ? String(ls[i]) : `${ls[i]}-${ls[j]}`);
    i = j + 1;
  }
  return out.join(",");
}
