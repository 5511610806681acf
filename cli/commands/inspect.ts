import { categories, inspect, weightBytes } from "../../compiler/inspect.ts";
import { layerRanges } from "../../compiler/ir/print.ts";
import type { CheckedModel, CheckedQuant } from "../../compiler/lang/check.ts";
import { defaultScheme } from "../../compiler/lang/check.ts";
import { pickModel, pickQuant } from "../../compiler/select.ts";
import { openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import { plainValue } from "../../runtime/checkpoint/gguf-value.ts";
import { presetByFileType } from "../../runtime/checkpoint/presets.ts";
import { findScheme, schemes } from "../../runtime/quant/registry.ts";
import { bitsPerWeight } from "../../runtime/quant/scheme.ts";
import { out as color, table } from "../color.ts";
import { bytes, count } from "../format.ts";
import { loadSpecArgument } from "../spec-argument.ts";
import { kvTypeOption } from "./run.ts";
import { schemeInfo } from "./schemes.ts";

export interface InspectOptions {
  quant?: string;
  model?: string;
  json?: boolean;
  /** The KV cache type to count bytes per token in (default f16). */
  kvType?: string;
}

export function inspectCommand(file: string, opts: InspectOptions): void {
  const { spec, checkpoint } = loadSpecArgument(file);
  const model = pickModel(spec, opts.model);
  // A GGUF's own types (its `from_file` block) unless --quant says otherwise.
  const quant = pickQuant(spec, model, opts.quant, checkpoint === "gguf");
  const info = inspect(model, spec.quants, undefined, kvTypeOption(opts.kvType));
  const chosen =
    quant === undefined
      ? undefined
      : {
          name: typeof quant === "string" ? quant : quant.name,
          bytes: weightBytes(model, (w, layer) =>
            typeof quant === "string" ? defaultScheme(w, quant) : quant.schemeFor(w.key, layer),
          ),
        };
  const fileInfo =
    checkpoint === "gguf" && typeof quant === "object" ? ggufSchemes(file, model, quant) : undefined;
  if (opts.json) {
    const registered = schemes().map(schemeInfo);
    const extra = fileInfo ? { file: fileInfo } : {};
    process.stdout.write(
      `${JSON.stringify({ ...info, quant: chosen, ...extra, schemes: registered }, null, 2)}\n`,
    );
    return;
  }
  const p = info.params;
  const out: string[] = [];
  out.push(`${color.bold(info.model)}  ${color.dim(file)}`);
  out.push(
    `parameters: ${color.bold(count(p.total))} total, ${color.bold(count(p.active))} active per token (${info.layers} layers)`,
  );
  // Some model cards count active parameters without the embedding table (Granite's 800M): a token reads
  // one row of it, though a tied head still multiplies by all of it.
  if (p.breakdown.embeddings.active)
    out.push(`  without the embedding table: ${count(p.active - p.breakdown.embeddings.active)} active`);
  const t = table({ head: ["", "total", "active"], style: { head: [] } });
  for (const c of categories)
    if (p.breakdown[c].total) t.push([c, count(p.breakdown[c].total), count(p.breakdown[c].active)]);
  out.push(t.toString());
  out.push(
    `FLOPs per decoded token: ${count(info.flops.per_token)} + ${count(info.flops.per_context_position)} per position of context`,
  );
  for (const [ctx, f] of Object.entries(info.flops.at_context)) out.push(`  at context ${ctx}: ${count(f)}`);
  out.push(`KV cache: ${bytes(info.kv_cache.bytes_per_token)} per token (${info.kv_cache.dtype})`);
  const w = table({ head: ["weights as", "bits/weight", "bytes", "scheme"], style: { head: [] } });
  for (const [name, b] of Object.entries(info.weight_bytes.quantizations))
    w.push([`${name} (spec)`, "", bytes(b), ""]);
  for (const [name, b] of Object.entries(info.weight_bytes.uniform)) {
    const s = findScheme(name)!;
    w.push([name, String(bitsPerWeight(s)), bytes(b), s.description]);
  }
  out.push(w.toString());
  if (chosen) out.push(`with --quant ${chosen.name}: ${color.bold(bytes(chosen.bytes))} of weights`);
  if (fileInfo) {
    const preset = fileInfo.preset ?? `general.file_type ${fileInfo.file_type ?? "absent"}`;
    out.push(`the file's schemes (llama.cpp preset ${color.bold(preset)}):`);
    const f = table({ head: ["weight", "tensor", "scheme by layer"], style: { head: [] } });
    for (const [key, w] of Object.entries(fileInfo.weights)) {
      f.push([
        key,
        w.tensor,
        Object.entries(w.schemes)
          .map(([s, ls]) => (ls ? `${s}: ${ls}` : s))
          .join("  "),
      ]);
    }
    out.push(f.toString());
  }
  process.stdout.write(`${out.join("\n")}\n`);
}

interface FileSchemes {
  /** llama.cpp's name for the file's `general.file_type` ("Q4_K_M"), when it is one of its presets. */
  preset?: string;
  file_type?: number;
  /** Per weight: its tensor name and each scheme with the layers that have it ("0-3,7"; "" outside the loop
   * or when every layer has it). */
  weights: Record<string, { tensor: string; schemes: Record<string, string> }>;
}

/** Each weight's type in a GGUF file, by layer, and the preset llama.cpp names the file by. */
function ggufSchemes(path: string, model: CheckedModel, quant: CheckedQuant): FileSchemes {
  const file = openGguf(path);
  let ftype: number | undefined;
  try {
    const v = file.metadata.get("general.file_type");
    if (v !== undefined && typeof plainValue(v) === "number") ftype = plainValue(v) as number;
  } finally {
    file.close();
  }
  const weights: FileSchemes["weights"] = {};
  for (const w of model.weights.values()) {
    const count = w.group ? model.groups.get(w.group)!.count : 0;
    const per = count
      ? Array.from({ length: count }, (_, l) => quant.schemeFor(w.key, l))
      : [quant.schemeFor(w.key)];
    const by: Record<string, string> = {};
    const distinct = [...new Set(per)];
    for (const s of distinct) {
      const layers = per.flatMap((x, l) => (x === s ? [l] : []));
      by[s] = distinct.length === 1 ? "" : layerRanges(layers);
    }
    weights[w.key] = { tensor: w.tensor, schemes: by };
  }
  const preset = ftype === undefined ? undefined : presetByFileType(ftype)?.name;
  return { ...(preset ? { preset } : {}), ...(ftype === undefined ? {} : { file_type: ftype }), weights };
}
