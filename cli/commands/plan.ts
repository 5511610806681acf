import { type DevicePlan, devicePlanner } from "../../compiler/plan/device.ts";
import { pickModel, pickQuant, pickTarget } from "../../compiler/select.ts";
import { writeFileAtomic } from "../../runtime/atomic.ts";
import type { KvType } from "../../runtime/kv-type.ts";
import { schemes } from "../../runtime/quant/registry.ts";
import { parseSize } from "../../runtime/units.ts";
import { out, table } from "../color.ts";
import { bytes } from "../format.ts";
import { loadSpecArgument } from "../spec-argument.ts";
import { UserError } from "../user-error.ts";
import { backendOption, kvTypeOption } from "./run.ts";

export interface PlanOptions {
  quant?: string;
  model?: string;
  target?: string;
  vram?: string;
  context?: string;
  json?: boolean;
  table?: boolean;
  html?: string;
  /** The backend whose allocations to plan (default: the target's, else cpu). */
  backend?: string;
  /** f32, f16 or q8_0 (default: the target's kv_type, else the backend's). */
  kvType?: string;
  /** Sequences with their own KV caches (`moec serve --parallel`, default 1). */
  parallel?: string;
}

function budgetOf(o: PlanOptions, fallback: number | undefined): number {
  if (o.vram === undefined) {
    if (fallback === undefined)
      throw new UserError("no memory budget: give --vram SIZE (e.g. 24GiB) or a target in the spec");
    return fallback;
  }
  const b = parseSize(o.vram);
  if (b === undefined || b <= 0)
    throw new UserError(`--vram: \`${o.vram}\` is not a size (try 24GiB, 80GB or a number of bytes)`);
  return b;
}

export function planCommand(file: string, o: PlanOptions): void {
  const { spec } = loadSpecArgument(file);
  const model = pickModel(spec, o.model);
  const target = o.target ? pickTarget(spec, o.target) : spec.targets[0];
  const modelContext = model.params.get("context");
  let context = target?.maxContext ?? modelContext ?? 4096;
  if (o.context !== undefined) {
    context = Number(o.context);
    if (!Number.isInteger(context) || context <= 0)
      throw new UserError(`--context: expected a positive whole number, found \`${o.context}\``);
  }
  if (modelContext !== undefined && context > modelContext) {
    throw new UserError(`--context ${context} is larger than the model's context of ${modelContext}`);
  }
  const backend = backendOption(o.backend) ?? target?.backend ?? "cpu";
  const kvType = kvTypeOption(o.kvType) ?? target?.kvType;
  if (o.table) {
    printTable(model, modelContext, o.json === true, backend, kvType);
    return;
  }
  const quant = pickQuant(spec, model, o.quant, true);
  const budget = budgetOf(o, target?.memoryBytes);
  const parallel = o.parallel === undefined ? 1 : Number(o.parallel);
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 256) {
    throw new UserError(`--parallel: expected a whole number from 1 to 256, found \`${o.parallel}\``);
  }
  const plan = devicePlanner(model, quant, backend, kvType, parallel).plan({
    budgetBytes: budget,
    context,
  });
  if (o.html) writeFileAtomic(o.html, html(model.name, plan));
  if (o.json) {
    process.stdout.write(`${JSON.stringify(plan, null, 2)}\n`);
  } else {
    const t = table({ head: ["", "bytes", "share of budget"], style: { head: [] } });
    const share = (n: number) => `${((100 * n) / budget).toFixed(1)}%`;
    t.push([
      "dense weights (embeddings, attention, norms, router, head)",
      bytes(plan.weights.dense_bytes),
      share(plan.weights.dense_bytes),
    ]);
    const e = plan.experts;
    const onDevice = plan.weights.resident_bytes - plan.weights.dense_bytes;
    if (e.total) {
      const perLayer = e.total / Math.max(1, e.layers);
      t.push([
        e.cache_slots_per_layer >= perLayer
          ? `experts, all resident: ${e.total}`
          : `expert cache: ${e.cache_slots_per_layer} of ${perLayer} experts per layer (${e.resident} of ${e.total})`,
        bytes(onDevice),
        share(onDevice),
      ]);
    }
    t.push([
      `KV cache (${parallel > 1 ? `${parallel} sequences × ` : ""}${plan.context} tokens, ${plan.kv_type})`,
      bytes(plan.kv_cache_bytes),
      share(plan.kv_cache_bytes),
    ]);
    t.push(["activation arena and kernel scratch", bytes(plan.arena_bytes), share(plan.arena_bytes)]);
    const rest = plan.f16_table_bytes + plan.padding_bytes;
    t.push(["half-float table, alignment", bytes(rest), share(rest)]);
    t.push([out.bold("on the device"), out.bold(bytes(plan.device_bytes)), share(plan.device_bytes)]);
    t.push(["headroom", bytes(budget - plan.device_bytes), share(budget - plan.device_bytes)]);
    if (plan.host_expert_bytes)
      t.push(["experts in host memory (or read from the file)", bytes(plan.host_expert_bytes), ""]);
    process.stdout.write(
      `${model.name} on ${bytes(budget)}: ${plan.fits ? out.green("fits") : out.red("does not fit")}\n${t.toString()}\n`,
    );
    process.stdout.write(`largest context that fits: ${plan.max_context}\n`);
  }
  if (!plan.fits) {
    throw new UserError(
      `${model.name} needs at least ${bytes(plan.shortfall!.needed_bytes)} (dense weights, ${plan.experts.top_k} expert slots per layer, KV for ${parallel > 1 ? `${parallel} sequences × ` : ""}${context} tokens, arena) but the budget is ${bytes(budget)}; try ${plan.shortfall!.advice}`,
    );
  }
}

/**
 * Memory needed, fully resident, per scheme (rows) and context (columns): the VRAM calculators' table. With
 * --json, `{"model", "contexts": [N], "schemes": [{"name", "bits_per_weight", "bytes": [N per context]}]}`.
 */
function printTable(
  model: Parameters<typeof devicePlanner>[0],
  modelContext: number | undefined,
  json: boolean,
  backend: string,
  kvType: KvType | undefined,
): void {
  const plannerFor = (scheme: string) => devicePlanner(model, scheme, backend, kvType);
  const type = plannerFor(schemes()[0]!.name).manifestAt(1).kvType ?? "f32";
  const contexts = [
    1024,
    4096,
    8192,
    32768,
    ...(modelContext && ![1024, 4096, 8192, 32768].includes(modelContext) ? [modelContext] : []),
  ].filter((c) => modelContext === undefined || c <= modelContext);
  if (json) {
    const rows = schemes().map((s) => {
      const planner = plannerFor(s.name);
      return {
        name: s.name,
        bits_per_weight: (s.blockBytes * 8) / s.blockSize,
        bytes: contexts.map((c) => planner.fullyResident(c)),
      };
    });
    process.stdout.write(
      `${JSON.stringify({ model: model.name, kv_type: type, contexts, schemes: rows }, null, 2)}\n`,
    );
    return;
  }
  const t = table({
    head: ["scheme", "bits/w", ...contexts.map((c) => (c >= 1024 ? `${c / 1024}k` : String(c)))],
    style: { head: [] },
  });
  for (const s of schemes()) {
    const planner = plannerFor(s.name);
    const row = contexts.map((c) => bytes(planner.fullyResident(c)));
    t.push([s.name, ((s.blockBytes * 8) / s.blockSize).toFixed(2), ...row]);
  }
  process.stdout.write(
    `${model.name}: memory to hold everything on the device (weights + ${type} KV cache + arena), as moec run allocates it\n${t.toString()}\n`,
  );
}

function html(name: string, p: DevicePlan): string {
  const parts: [string, number, string][] = [
    ["dense weights", p.weights.dense_bytes, "#4e79a7"],
    ["resident experts or cache slots", p.weights.resident_bytes - p.weights.dense_bytes, "#f28e2b"],
    ["KV cache", p.kv_cache_bytes, "#59a14f"],
    ["arena", p.arena_bytes, "#b07aa1"],
    ["headroom", Math.max(0, p.budget_bytes - p.device_bytes), "#e0e0e0"],
  ];
  const esc = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const bar = parts
    .map(
      ([label, n, color]) =>
        `<div title="${esc(label)}: ${bytes(n)}" style="flex:${n};background:${color}"></div>`,
    )
    .join("");
  const legend = parts
    .map(
      ([label, n, color]) => `<li><span style="background:${color}"></span>${esc(label)}: ${bytes(n)}</li>`,
    )
    .join("");
  const layers = Array.from({ length: p.experts.layers }, (_, l) => {
    const cells = Array.from(
      { length: p.experts.total / Math.max(1, p.experts.layers) },
      (_, e) => `<td class="${e < p.experts.cache_slots_per_layer ? "on" : "off"}"></td>`,
    ).join("");
    return `<tr><th>${l}</th>${cells}</tr>`;
  }).join("");
  return `<!doctype html><meta charset="utf-8"><title>${esc(name)} memory plan</title>
<style>body{font:14px system-ui;margin:2em}.bar{display:flex;height:40px;border:1px solid #888}li span{display:inline-block;width:1em;height:1em;margin-right:.5em}td{width:14px;height:14px}td.on{background:#f28e2b}td.off{background:#ddd}</style>
<h1>${esc(name)}: ${p.fits ? "fits" : "does not fit"} in ${bytes(p.budget_bytes)}</h1>
<div class="bar">${bar}</div><ul>${legend}</ul>
<h2>Expert slots per layer (orange: resident)</h2><table>${layers}</table>
<p>Context ${p.context}; the largest that fits is ${p.max_context}.</p>\n`;
}
