// Where a command takes a spec (inspect, plan, compile), it also takes a checkpoint: a GGUF file, or a
// Hugging Face folder (or its config.json). The spec is imported from it in memory (compiler/import.ts);
// a GGUF's has the `from_file` quantization block, each weight's type in each layer as the file has it.
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { importCheckpoint } from "../compiler/import.ts";
import type { CheckedSpec } from "../compiler/lang/check.ts";
import { compileSource, loadSpec } from "../compiler/lang/frontend.ts";

/** Whether `path` is a checkpoint rather than a .moe spec: GGUF's magic, a folder holding config.json, a
 * config.json. */
export function isCheckpointPath(path: string): boolean {
  if (!existsSync(path)) return false;
  if (statSync(path).isDirectory()) return existsSync(join(path, "config.json"));
  if (/\.json$/i.test(path)) return true;
  const head = Buffer.alloc(4);
  const fd = openSync(path, "r");
  try {
    readSync(fd, head, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  return head.toString("latin1") === "GGUF";
}

export interface SpecArgument {
  spec: CheckedSpec;
  /** Set when the argument was a checkpoint: its format. */
  checkpoint?: "gguf" | "hf";
}

/** A .moe spec, or the spec imported from a checkpoint. */
export function loadSpecArgument(path: string): SpecArgument {
  if (!isCheckpointPath(path)) return { spec: loadSpec(path) };
  const imported = importCheckpoint(path);
  return {
    spec: compileSource(imported.source, `${path} (imported)`),
    checkpoint: imported.format === "gguf" ? "gguf" : "hf",
  };
}
