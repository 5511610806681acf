import { compileModel, dumpStages } from "../../compiler/compile.ts";
import { passNames } from "../../compiler/pipeline.ts";
import { pickModel, pickQuant, pickTarget } from "../../compiler/select.ts";
import { writeDirAtomic } from "../../runtime/atomic.ts";
import { out as color } from "../color.ts";
import { bytes } from "../format.ts";
import { loadSpecArgument } from "../spec-argument.ts";
import { UserError } from "../user-error.ts";
import { backendOption, kvTypeOption } from "./run.ts";

export interface CompileOptions {
  quant?: string;
  target?: string;
  model?: string;
  out?: string;
  dumpIr?: string | boolean;
  /** cpu, webgpu or gpujs (default: the target's, else cpu). */
  backend?: string;
  /** f32, f16 or q8_0 (default: the target's kv_type, else the backend's). */
  kvType?: string;
  /** Print the report as one JSON object (and the IR of --dump-ir as its `ir`). */
  json?: boolean;
}

export function compileCommand(file: string, opts: CompileOptions): void {
  const started = performance.now();
  const dump = typeof opts.dumpIr === "string" ? opts.dumpIr : undefined;
  if (typeof dump === "string" && !passNames.includes(dump)) {
    throw new UserError(`--dump-ir: unknown pass \`${dump}\` (passes: ${passNames.join(", ")})`);
  }
  const { spec } = loadSpecArgument(file);
  const model = pickModel(spec, opts.model);
  const quant = pickQuant(spec, model, opts.quant, true);
  const target = pickTarget(spec, opts.target);
  const backend = backendOption(opts.backend);
  const c = compileModel(spec, model, { quant, target, backend, kvType: kvTypeOption(opts.kvType) });
  const ir = opts.dumpIr ? dumpStages(c.stages, dump, c.manifest.maxContext, target?.batch) : undefined;
  if (ir !== undefined && !opts.json) process.stdout.write(`${ir}\n\n`);
  const out = opts.out ?? `generated/${model.name}`;
  writeDirAtomic(out, c.files);
  const s = c.summary;
  if (opts.json) {
    const report = {
      model: model.name,
      out,
      files: Object.keys(c.files).sort(),
      quantization: quant === undefined ? "f32" : typeof quant === "string" ? quant : quant.name,
      backend: backend ?? target?.backend ?? "cpu",
      max_context: c.manifest.maxContext,
      kv_type: c.manifest.kvType,
      ops_before: s.opsBefore,
      ops_after: s.opsAfter,
      kernels: s.kernels,
      arena_bytes: s.arenaBytes,
      ms: Math.round(performance.now() - started),
      ...(ir === undefined ? {} : { ir }),
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  const ms = (performance.now() - started).toFixed(0);
  process.stdout.write(
    `${color.green("compiled")} ${model.name} → ${out}/  ${s.opsBefore} ops → ${s.opsAfter} after fusion, ${s.kernels} kernels, arena ${bytes(s.arenaBytes)} per token, ${c.manifest.kvType} KV cache, ${ms} ms\n`,
  );
}
