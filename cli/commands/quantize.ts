// `moec quantize IN -o OUT --scheme NAME [--rules SPEC]` or `--preset NAME`: re-quantize a GGUF checkpoint.
import { existsSync, statSync } from "node:fs";
import { weightEntries } from "../../compiler/compile.ts";
import { loadSpec } from "../../compiler/lang/frontend.ts";
import { ruleChoice } from "../../compiler/quantize-rules.ts";
import { pickModel, SelectionError } from "../../compiler/select.ts";
import { openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import { resolveGgufWeights } from "../../runtime/checkpoint/gguf-weights.ts";
import {
  findPreset,
  PRESETS,
  PRESETS_WITHOUT_SCHEMES,
  type Preset,
  presetQuantizeOptions,
} from "../../runtime/checkpoint/presets.ts";
import {
  type QuantizeOptions,
  type QuantizeReport,
  quantizeGguf,
  uniformChoice,
} from "../../runtime/checkpoint/quantize.ts";
import { findScheme, schemeNames } from "../../runtime/quant/registry.ts";
import { err, out, table } from "../color.ts";
import { bytes } from "../format.ts";
import { terminalBar } from "../progress.ts";
import { UserError } from "../user-error.ts";

export interface QuantizeCommandOptions {
  out?: string;
  scheme?: string;
  rules?: string;
  quant?: string;
  model?: string;
  preset?: string;
  json?: boolean;
}

function knownScheme(name: string): string {
  if (!findScheme(name))
    throw new UserError(
      `--scheme: unknown quantization scheme \`${name}\` (known: ${schemeNames().join(", ")})`,
    );
  return name.toLowerCase();
}

function knownPreset(name: string): Preset {
  const p = findPreset(name);
  if (p) return p;
  const names = PRESETS.map((x) => x.name).join(", ");
  if (PRESETS_WITHOUT_SCHEMES.includes(name.toUpperCase()))
    throw new UserError(
      `--preset ${name}: llama.cpp's ${name.toUpperCase()} uses types moec has no scheme for (moec's presets: ${names})`,
    );
  throw new UserError(`--preset: unknown preset \`${name}\` (llama.cpp's presets moec has: ${names})`);
}

/** The choice function: from --rules (a spec's quantization block, --scheme replacing its default) or --scheme. */
function chooser(input: string, o: QuantizeCommandOptions): QuantizeOptions["choose"] {
  const scheme = o.scheme === undefined ? undefined : knownScheme(o.scheme);
  if (o.rules === undefined) return uniformChoice(scheme!);
  const spec = loadSpec(o.rules);
  const model = pickModel(spec, o.model);
  const blocks = spec.quants.filter((q) => q.model === model.name);
  const quant = o.quant === undefined ? blocks[0] : blocks.find((q) => q.name === o.quant);
  if (!quant) {
    const names = blocks.map((q) => q.name);
    throw new SelectionError(
      o.quant === undefined
        ? `${o.rules}: no quantization block for model \`${model.name}\``
        : `${o.rules}: no quantization \`${o.quant}\` for \`${model.name}\` (${names.length ? `blocks: ${names.join(", ")}` : "it has none"})`,
    );
  }
  // The spec must describe this checkpoint: every weight's tensor present with the spec's shape.
  const file = openGguf(input);
  try {
    resolveGgufWeights(
      file,
      weightEntries(model, () => ({ scheme: "f32" })),
      { checkTypes: false },
    );
  } finally {
    file.close();
  }
  return ruleChoice(model, quant, scheme, o.rules);
}

export function quantizeCommand(input: string, o: QuantizeCommandOptions): void {
  if (!o.out) throw new UserError("-o OUT is required: the GGUF file to write");
  if (o.preset !== undefined && (o.scheme !== undefined || o.rules !== undefined))
    throw new UserError(
      "--preset chooses every tensor's scheme as llama.cpp does: give it without --scheme or --rules",
    );
  if (o.scheme === undefined && o.rules === undefined && o.preset === undefined)
    throw new UserError(
      `give --preset NAME (llama.cpp's: ${PRESETS.map((p) => p.name).join(", ")}), --scheme NAME (known: ${schemeNames().join(", ")}), --rules SPEC, or --scheme and --rules`,
    );
  const preset = o.preset === undefined ? undefined : knownPreset(o.preset);
  if (!existsSync(input)) throw new UserError(`${input}: no such file`, 2);
  if (statSync(input).isDirectory())
    throw new UserError(
      `${input} is a folder: moec quantize reads GGUF files (for a Hugging Face folder, convert it first with llama.cpp's convert_hf_to_gguf.py)`,
    );
  let choose: QuantizeOptions["choose"];
  let fileType: number | undefined;
  if (preset) {
    const file = openGguf(input);
    try {
      ({ choose, fileType } = presetQuantizeOptions(file, preset));
    } finally {
      file.close();
    }
  } else choose = chooser(input, o);
  const bar = o.json
    ? undefined
    : terminalBar(`quantizing ${err.cyan("{bar}")} {percentage}% | {value}/{total} MiB | {tensor}`);
  let report: QuantizeReport;
  const started = performance.now();
  try {
    report = quantizeGguf(input, o.out, {
      choose,
      fileType,
      onProgress: bar
        ? (p) => {
            if (p.done === 1) bar.start(Math.max(1, Math.round(p.bytesTotal / 2 ** 20)), 0, { tensor: "" });
            bar.update(Math.round(p.bytesDone / 2 ** 20), { tensor: p.tensor });
          }
        : undefined,
    });
  } finally {
    bar?.stop();
  }
  const ms = performance.now() - started;
  if (o.json) {
    process.stdout.write(
      `${JSON.stringify({ ...report, preset: preset?.name, ms: Math.round(ms) }, null, 2)}\n`,
    );
    return;
  }
  process.stdout.write(`${summary(report, ms, preset?.name)}\n`);
}

const rel = (rmse: number, rms: number) => (rms > 0 ? `${((100 * rmse) / rms).toFixed(2)}%` : "-");

/** The per-tensor table and the totals. */
export function summary(r: QuantizeReport, ms: number, preset?: string): string {
  const t = table({
    head: ["tensor", "type", "before", "after", "bits/w", "RMSE", "RMSE/RMS", "note"],
    style: { head: [], border: [] },
    chars: { mid: "", "left-mid": "", "mid-mid": "", "right-mid": "" },
    colAligns: ["left", "left", "right", "right", "right", "right", "right", "left"],
  });
  for (const x of r.tensors) {
    t.push([
      x.name,
      x.from === x.to ? x.to : `${x.from} → ${x.to}`,
      bytes(x.bytesBefore),
      bytes(x.bytesAfter),
      x.bitsPerWeight.toFixed(x.bitsPerWeight % 1 ? 3 : 0),
      x.rmse === 0 ? "0" : x.rmse.toExponential(3),
      x.rmse === 0 ? "0" : rel(x.rmse, x.rms),
      x.note ?? "",
    ]);
  }
  const elements = r.tensors.reduce((s, x) => s + x.bytesAfter * (8 / x.bitsPerWeight), 0);
  const fellBack = r.tensors.filter((x) => x.note?.startsWith("fell back"));
  const lines = [
    t.toString(),
    `${r.tensors.length} tensors: ${bytes(r.bytesBefore)} → ${out.bold(bytes(r.bytesAfter))} (${(r.bytesBefore / r.bytesAfter).toFixed(2)}×), ${((8 * r.bytesAfter) / elements).toFixed(3)} bits per weight overall`,
  ];
  if (fellBack.length)
    lines.push(
      out.yellow(
        `${fellBack.length} tensor${fellBack.length === 1 ? "" : "s"} fell back to a scheme whose block fits their rows: ${fellBack.map((x) => `${x.name} (${x.to}: ${x.note!.replace(/^fell back: /, "")})`).join(", ")}`,
      ),
    );
  lines.push(
    `${out.green("wrote")} ${r.output} (${bytes(r.fileBytes)}${r.fileType === undefined ? "" : `, general.file_type ${r.fileType}${preset ? ` (${preset})` : ""}`}) in ${(ms / 1000).toFixed(1)} s`,
  );
  return lines.join("\n");
}
