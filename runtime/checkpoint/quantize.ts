// Re-quantizing a GGUF checkpoint: every tensor gets the scheme a rule picks for it (or stays as it is),
// is decoded from its current type, checked for NaN and infinity, encoded, and measured (RMSE of the
// round trip against the source values). The output keeps every metadata entry of the input, with
// `general.file_type` updated, and is written atomically one tensor at a time, so memory holds at
// most one tensor (in f32 and packed) besides the header. Schemes GGUF lacks are stored under moec's
// custom type ids (gguf-types.ts).
import { findScheme, getScheme } from "../quant/registry.ts";
import { bitsPerWeight, type QuantScheme } from "../quant/scheme.ts";
import { CheckpointError } from "./errors.ts";
import { type GgufFile, type GgufTensorInfo, openGguf } from "./gguf-read.ts";
import { isCustomTypeKey, TensorTypeTable } from "./gguf-types.ts";
import { type GgufValue, gv } from "./gguf-value.ts";
import { type GgufLazyTensorInput, writeGguf } from "./gguf-write.ts";
import { FILE_TYPE } from "./random-gguf.ts";

/** What a rule says about one tensor. */
export type TensorChoice =
  /** Leave the tensor exactly as it is. */
  | { keep: true; why: string }
  /**
   * Store it as `scheme`. `explicit`: a rule named this tensor, so a row that does not fill the scheme's
   * blocks is an error; otherwise (the default) the tensor falls back to a scheme whose block fits.
   */
  | { keep?: false; scheme: string; explicit: boolean; rule?: string; note?: string };

export interface QuantizeProgress {
  tensor: string;
  /** Tensors done so far (this one included) and in all. */
  done: number;
  total: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface QuantizeOptions {
  choose(t: GgufTensorInfo): TensorChoice;
  /**
   * `general.file_type` to write (a llama.cpp preset's LLAMA_FTYPE); by default the type of the scheme that
   * holds most quantized elements. Given, the file also gets `general.quantization_version` whatever its
   * types, as llama-quantize writes it.
   */
  fileType?: number;
  onProgress?(p: QuantizeProgress): void;
}

export interface TensorReport {
  name: string;
  /** ggml order (dims[0] is the row length). */
  dims: readonly number[];
  from: string;
  to: string;
  bytesBefore: number;
  bytesAfter: number;
  bitsPerWeight: number;
  /** Root-mean-square error of decode(encode(w)) against w (0 when the bytes were copied). */
  rmse: number;
  /** Root-mean-square of w itself, to read the RMSE against. */
  rms: number;
  /** Why the tensor got a scheme other than the rule's, or was kept. */
  note?: string;
}

export interface QuantizeReport {
  input: string;
  output: string;
  tensors: TensorReport[];
  bytesBefore: number;
  bytesAfter: number;
  /** Size of the written file. */
  fileBytes: number;
  /** `general.file_type` written (llama.cpp's LLAMA_FTYPE), or undefined when the key was dropped. */
  fileType: number | undefined;
}

/** A scheme that fits rows of `row` elements when `want` does not: llama.cpp's choices, then q8_0, f16, f32. */
const FALLBACKS: Record<string, string[]> = {
  q2_k: ["q4_0"],
  q3_k: ["q4_0"],
  q4_k: ["q5_0"],
  q5_k: ["q5_1"],
  q6_k: ["q8_0"],
};

export function fallbackScheme(want: QuantScheme, row: number): QuantScheme {
  for (const name of [...(FALLBACKS[want.name] ?? []), "q8_0", "f16", "f32"]) {
    const s = findScheme(name);
    if (s && row % s.blockSize === 0) return s;
  }
  return getScheme("f32");
}

interface Planned {
  info: GgufTensorInfo;
  to: QuantScheme;
  note?: string;
  keep: boolean;
}

/** Decides every tensor's scheme; throws (before anything is written) when an explicit rule cannot apply. */
function plan(file: GgufFile, opts: QuantizeOptions, outPath: string): Planned[] {
  const out: Planned[] = [];
  for (const info of file.tensors) {
    const c = opts.choose(info);
    if (c.keep) {
      out.push({ info, to: info.scheme, keep: true, note: c.why });
      continue;
    }
    const want = getScheme(c.scheme);
    const row = info.dims[0]!;
    if (row % want.blockSize === 0) {
      out.push({ info, to: want, keep: want === info.scheme, note: c.note });
      continue;
    }
    if (c.explicit) {
      throw new CheckpointError({
        file: outPath,
        what: info.name,
        whatKind: "tensor",
        problem: `rows of ${row} elements are not a multiple of ${want.name}'s block of ${want.blockSize}${c.rule ? ` (${c.rule})` : ""}: choose a scheme whose block divides ${row}, or leave the tensor to the default, which falls back to one that fits`,
      });
    }
    const fb = fallbackScheme(want, row);
    out.push({
      info,
      to: fb,
      keep: fb === info.scheme,
      note: `fell back: rows of ${row} do not fill ${want.name}'s blocks of ${want.blockSize}`,
    });
  }
  return out;
}

/** llama.cpp's general.file_type for the scheme holding most quantized elements; undefined if it has none. */
function fileTypeOf(planned: Planned[]): number | undefined {
  const byScheme = new Map<string, number>();
  for (const p of planned) {
    if (p.info.dims.length < 2) continue;
    byScheme.set(p.to.name, (byScheme.get(p.to.name) ?? 0) + p.info.elements);
  }
  let best: string | undefined;
  for (const [name, n] of byScheme) if (best === undefined || n > byScheme.get(best)!) best = name;
  return best === undefined ? undefined : FILE_TYPE[best];
}

const isFloat = (s: QuantScheme) => s.name === "f32" || s.name === "f16" || s.name === "bf16";

/** Re-quantizes `inPath` into `outPath` (atomically); the report has one row per tensor. */
export function quantizeGguf(inPath: string, outPath: string, opts: QuantizeOptions): QuantizeReport {
  const file = openGguf(inPath);
  try {
    const planned = plan(file, opts, outPath);
    const types = new TensorTypeTable();
    const reports: TensorReport[] = [];
    const bytesTotal = planned.reduce((s, p) => s + p.info.nbytes, 0);
    let bytesDone = 0;
    const tensors: GgufLazyTensorInput[] = planned.map((p, i) => {
      const { info, to } = p;
      const nbytes = (info.elements / to.blockSize) * to.blockBytes;
      return {
        name: info.name,
        dims: info.dims,
        type: types.typeOf(to),
        nbytes,
        produce: () => {
          const src = file.read(info);
          let out: Uint8Array;
          let rmse = 0;
          let rms = 0;
          const values = new Float32Array(info.elements);
          info.scheme.decode(src, values);
          const row = info.dims[0]!;
          let sum = 0;
          for (let k = 0; k < values.length; k++) {
            const v = values[k]!;
            if (v - v !== 0) {
              throw new CheckpointError({
                file: inPath,
                what: info.name,
                whatKind: "tensor",
                problem: `holds ${v} at element ${k} (row ${Math.floor(k / row)}, column ${k % row}): a quantized file must not carry NaN or infinity, so nothing was written`,
              });
            }
            sum += v * v;
          }
          rms = Math.sqrt(sum / values.length);
          if (p.keep) out = src;
          else {
            out = new Uint8Array(nbytes);
            to.encode(values, out);
            const back = new Float32Array(info.elements);
            to.decode(out, back);
            let e = 0;
            for (let k = 0; k < back.length; k++) e += (back[k]! - values[k]!) ** 2;
            rmse = Math.sqrt(e / back.length);
          }
          bytesDone += info.nbytes;
          reports.push({
            name: info.name,
            dims: info.dims,
            from: info.scheme.name,
            to: to.name,
            bytesBefore: info.nbytes,
            bytesAfter: nbytes,
            bitsPerWeight: bitsPerWeight(to),
            rmse,
            rms,
            note: p.note,
          });
          opts.onProgress?.({
            tensor: info.name,
            done: i + 1,
            total: planned.length,
            bytesDone,
            bytesTotal,
          });
          return out;
        },
      };
    });

    const fileType = opts.fileType ?? fileTypeOf(planned);
    const quantized = opts.fileType !== undefined || planned.some((p) => !isFloat(p.to));
    const metadata: [string, GgufValue][] = [];
    for (const [k, v] of file.metadata) {
      if (isCustomTypeKey(k)) continue;
      if (k === "general.file_type") {
        if (fileType !== undefined) metadata.push([k, gv.u32(fileType)]);
        continue;
      }
      if (k === "general.quantization_version" && quantized) continue;
      metadata.push([k, v]);
    }
    if (fileType !== undefined && !file.metadata.has("general.file_type"))
      metadata.push(["general.file_type", gv.u32(fileType)]);
    // ggml's quantization format version, which llama.cpp writes into every quantized file.
    if (quantized) metadata.push(["general.quantization_version", gv.u32(2)]);
    // Type ids for the schemes GGUF lacks are handed out while planning, before this is read.
    metadata.push(...types.metadata());

    const res = writeGguf(outPath, { metadata, tensors });
    return {
      input: inPath,
      output: outPath,
      tensors: reports,
      bytesBefore: reports.reduce((s, r) => s + r.bytesBefore, 0),
      bytesAfter: reports.reduce((s, r) => s + r.bytesAfter, 0),
      fileBytes: res.size,
      fileType,
    };
  } finally {
    file.close();
  }
}

/** Tensors the default leaves alone: vectors (norms, biases) and MoE routers, by GGUF or Hugging Face name. */
export function keptByDefault(name: string, dims: readonly number[]): string | undefined {
  if (dims.length < 2) return "kept: a vector (norm)";
  if (/(^|\.)ffn_gate_inp\.weight$|block_sparse_moe\.gate\.weight$|\.mlp\.gate\.weight$/.test(name))
    return "kept: the MoE router";
  return undefined;
}

/** The choice `--scheme NAME` alone makes: every matrix NAME (falling back where rows do not fit). */
export function uniformChoice(scheme: string): QuantizeOptions["choose"] {
  return (t) => {
    const why = keptByDefault(t.name, t.dims);
    return why ? { keep: true, why } : { scheme, explicit: false };
  };
}
