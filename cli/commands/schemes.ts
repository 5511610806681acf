// `moec schemes`: every registered quantization scheme (built-ins and those --plugin added).
import { schemes } from "../../runtime/quant/registry.ts";
import { bitsPerWeight, type QuantScheme } from "../../runtime/quant/scheme.ts";
import { table } from "../color.ts";

export interface SchemeInfo {
  name: string;
  bits_per_weight: number;
  block_size: number;
  block_bytes: number;
  /** GGUF's type id, or null for a scheme GGUF does not have (stored under a moec id, 1024 and up). */
  ggml_type: number | null;
  description: string;
}

export function schemeInfo(s: QuantScheme): SchemeInfo {
  return {
    name: s.name,
    bits_per_weight: bitsPerWeight(s),
    block_size: s.blockSize,
    block_bytes: s.blockBytes,
    ggml_type: s.ggmlType ?? null,
    description: s.description,
  };
}

/** A table of schemes: name, bits per weight, block, GGUF type, description. */
export function schemesTable(list: readonly QuantScheme[] = schemes()): string {
  const t = table({
    head: ["scheme", "bits/weight", "block", "GGUF type", "description"],
    style: { head: [], border: [] },
    chars: { mid: "", "left-mid": "", "mid-mid": "", "right-mid": "" },
    colAligns: ["left", "right", "right", "right", "left"],
  });
  for (const s of list) {
    const i = schemeInfo(s);
    t.push([
      i.name,
      String(i.bits_per_weight),
      `${i.block_size} in ${i.block_bytes} B`,
      i.ggml_type ?? "moec",
      i.description,
    ]);
  }
  return t.toString();
}

export function schemesCommand(o: { json?: boolean }): void {
  if (o.json) process.stdout.write(`${JSON.stringify({ schemes: schemes().map(schemeInfo) }, null, 2)}\n`);
  else process.stdout.write(`${schemesTable()}\n`);
}
