import { type Imported, importCheckpoint, writeImportedSpec } from "../../compiler/import.ts";
import { out } from "../color.ts";

export interface ImportOptions {
  out?: string;
  name?: string;
  /** Print one JSON object: the model's shape, and the spec (without -o) or where it went (with -o). */
  json?: boolean;
}

/** `moec import --json`: what was read and where the spec is. */
function report(imported: Imported, outFile: string | undefined) {
  const s = imported.shape;
  return {
    model: s.name,
    format: imported.format,
    ...(outFile === undefined ? { spec: imported.source } : { out: outFile }),
    layers: s.layers,
    hidden: s.hidden,
    heads: s.heads,
    kv_heads: s.kvHeads,
    head_dim: s.headDim,
    ffn: s.ffn,
    experts: s.experts,
    top_k: s.topK,
    vocab: s.vocab,
    context: s.context,
    mixed_layers: imported.mixedLayers,
  };
}

/** `moec import CHECKPOINT [-o SPEC.moe]`: a spec from a GGUF's metadata or a Hugging Face config.json. */
export function importCommand(checkpoint: string, opts: ImportOptions): void {
  if (opts.out === undefined) {
    const imported = importCheckpoint(checkpoint, { name: opts.name });
    process.stdout.write(
      opts.json ? `${JSON.stringify(report(imported, undefined), null, 2)}\n` : imported.source,
    );
    return;
  }
  const imported = writeImportedSpec(checkpoint, opts.out, { name: opts.name });
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(report(imported, opts.out), null, 2)}\n`);
    return;
  }
  const s = imported.shape;
  const ffn = s.experts > 0 ? `${s.experts} experts, top-${s.topK}` : "dense";
  process.stdout.write(
    `${out.green("imported")} ${s.name} → ${opts.out}  ${s.layers} layers, hidden ${s.hidden}, ${s.heads}/${s.kvHeads} heads, ${ffn}, vocab ${s.vocab}${imported.format === "gguf" ? ", quantization from_file" : ""}\n`,
  );
  if (imported.mixedLayers.length) {
    process.stdout.write(
      `types differ between layers for ${imported.mixedLayers.join(", ")} (rules by layer)\n`,
    );
  }
}
