import Table from "cli-table3";
import pc from "picocolors";
import { categories, inspect, weightBytes } from "../../compiler/inspect.ts";
import { defaultScheme } from "../../compiler/lang/check.ts";
import { loadSpec } from "../../compiler/lang/frontend.ts";
import { pickModel, pickQuant } from "../../compiler/select.ts";
import { findScheme, schemes } from "../../runtime/quant/registry.ts";
import { bitsPerWeight } from "../../runtime/quant/scheme.ts";
import { bytes, count } from "../format.ts";
import { schemeInfo } from "./schemes.ts";

export interface InspectOptions {
  quant?: string;
  model?: string;
  json?: boolean;
}

export function inspectCommand(file: string, opts: InspectOptions): void {
  const spec = loadSpec(file);
  const model = pickModel(spec, opts.model);
  const quant = pickQuant(spec, model, opts.quant);
  const info = inspect(model, spec.quants);
  const chosen =
    quant === undefined
      ? undefined
      : {
          name: typeof quant === "string" ? quant : quant.name,
          bytes: weightBytes(model, (w, layer) =>
            typeof quant === "string" ? defaultScheme(w, quant) : quant.schemeFor(w.key, layer),
          ),
        };
  if (opts.json) {
    const registered = schemes().map(schemeInfo);
    process.stdout.write(`${JSON.stringify({ ...info, quant: chosen, schemes: registered }, null, 2)}\n`);
    return;
  }
  const p = info.params;
  const out: string[] = [];
  out.push(`${pc.bold(info.model)}  ${pc.dim(file)}`);
  out.push(
    `parameters: ${pc.bold(count(p.total))} total, ${pc.bold(count(p.active))} active per token (${info.layers} layers)`,
  );
  const t = new Table({ head: ["", "total", "active"], style: { head: [] } });
  for (const c of categories)
    if (p.breakdown[c].total) t.push([c, count(p.breakdown[c].total), count(p.breakdown[c].active)]);
  out.push(t.toString());
  out.push(
    `FLOPs per decoded token: ${count(info.flops.per_token)} + ${count(info.flops.per_context_position)} per position of context`,
  );
  for (const [ctx, f] of Object.entries(info.flops.at_context)) out.push(`  at context ${ctx}: ${count(f)}`);
  out.push(`KV cache: ${bytes(info.kv_cache.bytes_per_token)} per token (${info.kv_cache.dtype})`);
  const w = new Table({ head: ["weights as", "bits/weight", "bytes", "scheme"], style: { head: [] } });
  for (const [name, b] of Object.entries(info.weight_bytes.quantizations))
    w.push([`${name} (spec)`, "", bytes(b), ""]);
  for (const [name, b] of Object.entries(info.weight_bytes.uniform)) {
    const s = findScheme(name)!;
    w.push([name, String(bitsPerWeight(s)), bytes(b), s.description]);
  }
  out.push(w.toString());
  if (chosen) out.push(`with --quant ${chosen.name}: ${pc.bold(bytes(chosen.bytes))} of weights`);
  process.stdout.write(`${out.join("\n")}\n`);
}
