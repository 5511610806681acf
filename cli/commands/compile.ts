import pc from "picocolors";
import { compileModel, dumpStages } from "../../compiler/compile.ts";
import { passNames } from "../../compiler/pipeline.ts";
import { pickModel, pickQuant, pickTarget } from "../../compiler/select.ts";
import { writeDirAtomic } from "../../runtime/atomic.ts";
import { bytes } from "../format.ts";
import { loadSpecArgument } from "../spec-argument.ts";
import { UserError } from "../user-error.ts";
import { backendOption } from "./run.ts";

export interface CompileOptions {
  quant?: string;
  target?: string;
  model?: string;
  out?: string;
  dumpIr?: string | boolean;
  /** cpu, webgpu or gpujs (default: the target's, else cpu). */
  backend?: string;
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
  const c = compileModel(spec, model, { quant, target, backend: backendOption(opts.backend) });
  if (opts.dumpIr)
    process.stdout.write(`${dumpStages(c.stages, dump, c.manifest.maxContext, target?.batch)}\n\n`);
  const out = opts.out ?? `generated/${model.name}`;
  writeDirAtomic(out, c.files);
  const s = c.summary;
  const ms = (performance.now() - started).toFixed(0);
  process.stdout.write(
    `${pc.green("compiled")} ${model.name} → ${out}/  ${s.opsBefore} ops → ${s.opsAfter} after fusion, ${s.kernels} kernels, arena ${bytes(s.arenaBytes)} per token, ${ms} ms\n`,
  );
}
