// The MoE families after Mixtral as specs/ writes them, shrunk for tests: the same forward code with
// small sizes, so a test runs the real spec's ops and fusions in seconds.
import { readFileSync } from "node:fs";

export const FAMILY_SPECS = [
  "specs/qwen3-30b-a3b.moe",
  "specs/qwen1.5-moe-a2.7b.moe",
  "specs/olmoe-1b-7b.moe",
  "specs/granite-3.0-3b-a800m.moe",
] as const;

export const TINY_SIZES: Record<string, number> = {
  vocab: 320,
  hidden: 64,
  layers: 2,
  heads: 4,
  kv_heads: 2,
  head_dim: 32,
  ffn: 32,
  shared_ffn: 64,
  experts: 6,
  top_k: 2,
  context: 64,
};

/** A spec file with its `param` sizes replaced by `sizes` (every other line as written). */
export function tinySpec(file: string, sizes: Record<string, number> = TINY_SIZES): string {
  return readFileSync(file, "utf8").replace(/^(\s*param\s.*)$/gm, (line) =>
    line.replace(/\b(\w+) = ([^,]+)/g, (all, name: string) =>
      sizes[name] === undefined ? all : `${name} = ${sizes[name]}`,
    ),
  );
}
