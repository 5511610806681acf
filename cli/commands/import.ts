import pc from "picocolors";
import { importCheckpoint, writeImportedSpec } from "../../compiler/import.ts";

export interface ImportOptions {
  out?: string;
  name?: string;
}

/** `moec import CHECKPOINT [-o SPEC.moe]`: a spec from a GGUF's metadata or a Hugging Face config.json. */
export function importCommand(checkpoint: string, opts: ImportOptions): void {
  if (opts.out === undefined) {
    process.stdout.write(importCheckpoint(checkpoint, { name: opts.name }).source);
    return;
  }
  const imported = writeImportedSpec(checkpoint, opts.out, { name: opts.name });
  const s = imported.shape;
  const ffn = s.experts > 0 ? `${s.experts} experts, top-${s.topK}` : "dense";
  process.stdout.write(
    `${pc.green("imported")} ${s.name} → ${opts.out}  ${s.layers} layers, hidden ${s.hidden}, ${s.heads}/${s.kvHeads} heads, ${ffn}, vocab ${s.vocab}${imported.format === "gguf" ? ", quantization from_file" : ""}\n`,
  );
  if (imported.mixedLayers.length) {
    process.stdout.write(
      `types differ between layers for ${imported.mixedLayers.join(", ")} (rules by layer)\n`,
    );
  }
}
