// Tensor types in a GGUF file: GGUF's own type ids (below 1024) come from the scheme registry; a scheme
// GGUF does not have (a plugin's, e.g. nf4) is stored under a moec type id from 1024 up, which the file
// itself names in its metadata:
//
//   moec.scheme.<id>              string  the scheme's registered name, e.g. "nf4"
//   moec.scheme.<id>.block_size   u32     elements per block, checked against the registered scheme
//   moec.scheme.<id>.block_bytes  u32     bytes per block, checked likewise
//
// The reader and the writer both resolve a type id through `resolveTensorType`, so a file moec writes
// with such a type reads back exactly when the scheme is registered (by a plugin) in the reading process.
// llama.cpp does not know these ids and refuses such files.
import { findScheme, schemeByGgmlType, schemes } from "../quant/index.ts";
import type { QuantScheme } from "../quant/scheme.ts";
import { CUSTOM_GGML_TYPE_BASE } from "../quant/validate.ts";
import { type GgufValue, gv } from "./gguf-value.ts";

export { CUSTOM_GGML_TYPE_BASE };

export const customTypeKey = (id: number): string => `moec.scheme.${id}`;
const CUSTOM_KEY = /^moec\.scheme\.\d+(\.block_size|\.block_bytes)?$/;

/** Is this metadata key one of the custom-type keys above (a writer regenerates them)? */
export function isCustomTypeKey(key: string): boolean {
  return CUSTOM_KEY.test(key);
}

export type MetadataLookup = (key: string) => GgufValue | undefined;

/**
 * ggml's names of its tensor types (`ggml_type_name`, ggml/src/ggml.c of the llama.cpp that node-llama-cpp
 * ships), by type id, so that a type moec has no scheme for is named as llama.cpp names it.
 */
export const GGML_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: "f32",
  1: "f16",
  2: "q4_0",
  3: "q4_1",
  6: "q5_0",
  7: "q5_1",
  8: "q8_0",
  9: "q8_1",
  10: "q2_K",
  11: "q3_K",
  12: "q4_K",
  13: "q5_K",
  14: "q6_K",
  15: "q8_K",
  16: "iq2_xxs",
  17: "iq2_xs",
  18: "iq3_xxs",
  19: "iq1_s",
  20: "iq4_nl",
  21: "iq3_s",
  22: "iq2_s",
  23: "iq4_xs",
  24: "i8",
  25: "i16",
  26: "i32",
  27: "i64",
  28: "f64",
  29: "iq1_m",
  30: "bf16",
  34: "tq1_0",
  35: "tq2_0",
  39: "mxfp4",
  40: "nvfp4",
  41: "q1_0",
  42: "q2_0",
};

/** ggml's name of a type id (`q4_K`, `iq4_nl`), or undefined for an id ggml does not have. */
export const ggmlTypeName = (type: number): string | undefined => GGML_TYPE_NAMES[type];

/** The GGUF types moec reads, by ggml's names (F32, F16, …, Q8_0). */
function readable(): string {
  return schemes()
    .filter((s) => s.ggmlType !== undefined)
    .sort((a, b) => a.ggmlType! - b.ggmlType!)
    .map((s) => (ggmlTypeName(s.ggmlType!) ?? s.name).toUpperCase())
    .join(", ");
}

/** The scheme a tensor type id stands for in a file with this metadata, or why there is none. */
export function resolveTensorType(
  type: number,
  metadata: MetadataLookup,
): { scheme: QuantScheme } | { problem: string } {
  const builtin = type < CUSTOM_GGML_TYPE_BASE ? schemeByGgmlType(type) : undefined;
  if (builtin) return { scheme: builtin };
  const ggml = ggmlTypeName(type);
  if (ggml !== undefined)
    return {
      problem: `type ${ggml.toUpperCase()} (ggml type ${type}, \`${ggml}\` in llama.cpp) has no quantization scheme in moec, which reads ${readable()}: re-quantize the original weights to one of those, e.g. with \`moec quantize --preset Q4_K_M\` or llama.cpp's llama-quantize`,
    };
  if (type < CUSTOM_GGML_TYPE_BASE)
    return {
      problem: `unknown tensor type ${type} (no registered quantization scheme has this ggml type id)`,
    };
  const key = customTypeKey(type);
  const named = metadata(key);
  if (named === undefined || named.type !== "string")
    return {
      problem: `unknown tensor type ${type} (a moec custom type, but the file has no string \`${key}\` naming its scheme)`,
    };
  const name = named.value;
  const s = findScheme(name);
  if (!s)
    return {
      problem: `tensor type ${type} is the quantization scheme \`${name}\` (metadata ${key}), which is not registered: load the plugin that defines it with --plugin FILE`,
    };
  for (const [suffix, want] of [
    ["block_size", s.blockSize],
    ["block_bytes", s.blockBytes],
  ] as const) {
    const v = metadata(`${key}.${suffix}`);
    if (v !== undefined && v.value !== want)
      return {
        problem: `tensor type ${type} is \`${name}\` with ${suffix} ${String(v.value)} in the file, but the registered \`${name}\` has ${want} (a different version of its plugin?)`,
      };
  }
  return { scheme: s };
}

/**
 * Type ids for the schemes of a file to write: GGUF's own id where the scheme has one, else 1024, 1025, …
 * in order of first use, with the metadata entries that name them.
 */
export class TensorTypeTable {
  private readonly custom = new Map<string, number>();

  typeOf(s: QuantScheme): number {
    if (s.ggmlType !== undefined) return s.ggmlType;
    let id = this.custom.get(s.name);
    if (id === undefined) {
      id = CUSTOM_GGML_TYPE_BASE + this.custom.size;
      this.custom.set(s.name, id);
    }
    return id;
  }

  /** The `moec.scheme.*` entries for the custom ids handed out so far. */
  metadata(): [string, GgufValue][] {
    const out: [string, GgufValue][] = [];
    for (const [name, id] of this.custom) {
      const s = findScheme(name)!;
      out.push(
        [customTypeKey(id), gv.str(name)],
        [`${customTypeKey(id)}.block_size`, gv.u32(s.blockSize)],
        [`${customTypeKey(id)}.block_bytes`, gv.u32(s.blockBytes)],
      );
    }
    return out;
  }
}
