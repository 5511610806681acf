// A compiled model's weights from a Hugging Face safetensors checkpoint (one file or shards).
//
// Names. The manifest names each weight's checkpoint tensor (a spec from `moec import` on a
// config.json names the Hugging Face tensors: `model.layers.{i}.self_attn.q_proj.weight` …). The
// language has no expert index, so a 3-D expert weight names the stacked tensor
// `model.layers.{i}.block_sparse_moe.experts.w1.weight`; Hugging Face stores one tensor per expert,
// `….experts.E.w1.weight`, and they are gathered for E = 0…n-1 (perExpertTensorNames), experts being
// the slowest dimension. Shapes are compared as stored (row-major, [out, in]), not reversed as GGUF's.
//
// Fused tensors. Granite MoE stores each layer's expert gate and up projections as one tensor,
// `….block_sparse_moe.input_linear.weight` of shape [experts, 2·ffn, hidden], gate rows first
// (llama.cpp's convert_hf_to_gguf.py splits it with `split(ffn, dim=-2)`: gate, then up). A name ending
// in `[k/n]` (fusedPartOf) stands for the k-th of n equal blocks of rows of every matrix in the named
// tensor, so `input_linear.weight[0/2]` is the gate and `[1/2]` the up projection. Only those rows are
// read: one byte range per matrix, never the whole fused tensor.
//
// Types. F32, F16 and BF16 tensors are converted to the manifest's scheme through f32 with the
// scheme's own `encode`; a tensor whose dtype already is the scheme is passed through as is.
//
// RoPE. Hugging Face checkpoints are laid out for the half-split rotation (each head's first half
// pairs with its second half). A spec written by `moec import` from a config.json already says
// `rope(…, style: half)`, so nothing is permuted. For a spec with the interleaved rotation (GGUF's,
// pairs (2j, 2j+1)), pass `interleavedRope` (weight key → heads of that projection) and the q/k rows
// are permuted the way llama.cpp's convert_hf_to_gguf.py does: within each head, row 2j + p comes
// from row p·d/2 + j.
//
// Opening checks every tensor the manifest needs (present, shape, dtype) before anything is read.
import { type Manifest, schemeAt, schemesOf, tensorName, type WeightEntry } from "../manifest.ts";
import { getScheme } from "../quant/registry.ts";
import type { WeightSource } from "../weights.ts";
import { CheckpointError } from "./errors.ts";
import { perExpertTensorNames } from "./gguf-weights.ts";
import {
  type OpenSafetensorsOptions,
  SAFETENSORS_FLOAT_DTYPES,
  SafetensorsCheckpoint,
  type SafetensorsFile,
  type SafetensorsTensorInfo,
  toF32,
} from "./safetensors.ts";

export interface SafetensorsWeightsOptions extends OpenSafetensorsOptions {
  /**
   * Weights that feed an interleaved-pair RoPE, with the number of heads of their projection
   * (e.g. `layer.wq` → heads, `layer.wk` → kv_heads): their rows are permuted from Hugging Face's
   * half-split order. Leave empty for specs with `style: half` (what `moec import` writes).
   */
  interleavedRope?: ReadonlyMap<string, number>;
}

interface Part {
  file: SafetensorsFile;
  info: SafetensorsTensorInfo;
  /** Byte ranges within the tensor ([start, length], in order) when only part of it is the weight. */
  ranges?: readonly (readonly [number, number])[];
}

/** `name[k/n]` → the stored tensor's name and which block of rows (k of n), else undefined. */
export function fusedPartOf(name: string): { tensor: string; k: number; n: number } | undefined {
  const m = /^(.+)\[(\d+)\/(\d+)\]$/.exec(name);
  if (!m) return undefined;
  const k = Number(m[2]);
  const n = Number(m[3]);
  return n >= 2 && k < n ? { tensor: m[1]!, k, n } : undefined;
}

const partBytes = (p: Part) => (p.ranges ? p.ranges.reduce((s, [, len]) => s + len, 0) : p.info.nbytes);
const BYTES_PER_ELEMENT: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

/** The part's bytes (its ranges, one after the other) into `dst`. */
function readPart(p: Part, dst: Uint8Array): void {
  if (!p.ranges) {
    p.file.readInto(p.info, dst);
    return;
  }
  let at = 0;
  for (const [start, len] of p.ranges) {
    p.file.readRangeInto(p.info, start, dst.subarray(at, at + len));
    at += len;
  }
}

/** Rows k·r…(k+1)·r−1 of every matrix of `info` (shape [..., n·r, c]) as byte ranges. */
function rowBlockRanges(info: SafetensorsTensorInfo, k: number, n: number): [number, number][] {
  const rows = info.shape.at(-2)!;
  const cols = info.shape.at(-1)!;
  const matrices = info.shape.slice(0, -2).reduce((a, b) => a * b, 1);
  const bpe = BYTES_PER_ELEMENT[info.dtype]!;
  const block = (rows / n) * cols * bpe;
  const matrix = rows * cols * bpe;
  return Array.from({ length: matrices }, (_, m) => [m * matrix + k * block, block] as [number, number]);
}

/** Where one (weight, layer) lives: one tensor, or one per expert to stack. */
export interface ResolvedSafetensorsWeight {
  readonly key: string;
  readonly layer: number | undefined;
  readonly tensor: string;
  readonly parts: readonly Part[];
}

const shapeText = (s: readonly number[]) => `[${s.join(", ")}]`;
/** Leading dimensions of 1 do not count: Qwen2-MoE's shared expert gate is a [1, hidden] Linear that a spec
 * (and GGUF) calls a [hidden] vector. */
const squeeze = (s: readonly number[]) => {
  const first = s.findIndex((d) => d !== 1);
  return first < 0 ? s : s.slice(first);
};
const sameShape = (a: readonly number[], b: readonly number[]) => {
  const [x, y] = [squeeze(a), squeeze(b)];
  return x.length === y.length && x.every((d, i) => d === y[i]);
};

/** Finds every manifest weight in the checkpoint and checks its shape and dtype. */
export function resolveSafetensorsWeights(
  ckpt: SafetensorsCheckpoint,
  weights: readonly WeightEntry[],
): ResolvedSafetensorsWeight[] {
  const out: ResolvedSafetensorsWeight[] = [];
  const check = (p: Part, w: WeightEntry, layer: number | undefined, shape: readonly number[]) => {
    const where = `\`${w.key}\`${layer === undefined ? "" : ` (layer ${layer})`}`;
    const fail = (problem: string): never => {
      throw new CheckpointError({
        file: p.file.path,
        what: p.info.name,
        whatKind: "tensor",
        offset: p.info.offset,
        problem,
      });
    };
    if (!sameShape(p.info.shape, shape)) {
      fail(`shape is ${shapeText(p.info.shape)} but ${where} needs ${shapeText(shape)}`);
    }
    if (!(SAFETENSORS_FLOAT_DTYPES as readonly string[]).includes(p.info.dtype)) {
      fail(`dtype ${p.info.dtype} is not supported (moec reads ${SAFETENSORS_FLOAT_DTYPES.join(", ")})`);
    }
  };
  for (const w of weights) {
    const layers = w.layers === 0 ? [undefined] : Array.from({ length: w.layers }, (_, l) => l);
    for (const layer of layers) {
      const name = tensorName(w, layer);
      const whole = ckpt.findTensor(name);
      if (whole) {
        check(whole, w, layer, w.shape);
        out.push({ key: w.key, layer, tensor: name, parts: [whole] });
        continue;
      }
      const fused = fusedPartOf(name);
      if (fused) {
        const found = ckpt.findTensor(fused.tensor);
        if (!found) {
          throw new CheckpointError({
            file: ckpt.path,
            what: fused.tensor,
            whatKind: "tensor",
            problem: `missing: the model needs rows ${fused.k + 1} of ${fused.n} of it for \`${w.key}\`${layer === undefined ? "" : ` (layer ${layer})`}`,
          });
        }
        if (w.shape.length < 2) {
          throw new CheckpointError({
            file: found.file.path,
            what: name,
            whatKind: "tensor",
            problem: `\`${w.key}\` is a vector: only a matrix can be a block of rows of a fused tensor`,
          });
        }
        // The stored tensor has n times the weight's rows; its matrices are the weight's, stacked.
        const stored = [...w.shape];
        stored[stored.length - 2]! *= fused.n;
        check(found, w, layer, stored);
        out.push({
          key: w.key,
          layer,
          tensor: name,
          parts: [{ ...found, ranges: rowBlockRanges(found.info, fused.k, fused.n) }],
        });
        continue;
      }
      const split = w.shape.length === 3 ? perExpertTensorNames(name, w.shape[0]!) : undefined;
      if (!split || !ckpt.findTensor(split[0]!)) {
        throw new CheckpointError({
          file: ckpt.path,
          what: name,
          whatKind: "tensor",
          problem: `missing: the model needs it for \`${w.key}\`${layer === undefined ? "" : ` (layer ${layer})`}${split ? ` (nor is it stored one tensor per expert: no ${split[0]})` : ""}`,
        });
      }
      const parts: Part[] = [];
      for (const p of split) {
        const found = ckpt.findTensor(p);
        if (!found) {
          throw new CheckpointError({
            file: ckpt.path,
            what: p,
            whatKind: "tensor",
            problem: `missing: ${name} is stored one tensor per expert, and this expert is absent`,
          });
        }
        check(found, w, layer, w.shape.slice(1));
        parts.push(found);
      }
      out.push({ key: w.key, layer, tensor: name, parts });
    }
  }
  return out;
}

/**
 * Rows of a [heads · d, in] matrix from Hugging Face's half-split RoPE order to the interleaved
 * one (llama.cpp's `permute`): within each head, row 2j + p ← row p·d/2 + j.
 */
export function permuteRopeRows(values: Float32Array, rows: number, heads: number): Float32Array {
  const cols = values.length / rows;
  const d = rows / heads;
  if (!Number.isInteger(cols) || !Number.isInteger(d) || d % 2 !== 0) {
    throw new RangeError(`cannot permute ${rows} rows into ${heads} heads of even size`);
  }
  const out = new Float32Array(values.length);
  const half = d / 2;
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < half; j++) {
      for (let p = 0; p < 2; p++) {
        const from = (h * d + p * half + j) * cols;
        const to = (h * d + 2 * j + p) * cols;
        out.set(values.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}

/** Weights read on demand from a safetensors checkpoint, checked against the manifest when constructed. */
export class SafetensorsWeights implements WeightSource {
  private readonly byKey = new Map<string, ResolvedSafetensorsWeight>();
  private readonly entries = new Map<string, WeightEntry>();
  private readonly rope: ReadonlyMap<string, number>;
  private owned = false;

  /** The checkpoint stays the caller's to close unless this was made by `SafetensorsWeights.open`. */
  constructor(
    readonly checkpoint: SafetensorsCheckpoint,
    manifest: Pick<Manifest, "weights">,
    opts: SafetensorsWeightsOptions = {},
  ) {
    this.rope = opts.interleavedRope ?? new Map();
    for (const w of manifest.weights) {
      for (const name of schemesOf(w)) getScheme(name); // an unknown scheme fails here, not at the first read
      this.entries.set(w.key, w);
      const heads = this.rope.get(w.key);
      if (heads !== undefined && (w.shape.length !== 2 || w.shape[0]! % (2 * heads) !== 0)) {
        throw new RangeError(`${w.key} ${shapeText(w.shape)} cannot be split into ${heads} RoPE heads`);
      }
    }
    for (const r of resolveSafetensorsWeights(checkpoint, manifest.weights)) {
      this.byKey.set(r.layer === undefined ? r.key : `${r.key}#${r.layer}`, r);
    }
  }

  /** Opens a `.safetensors` file, an index, or a folder, and checks it against the manifest. */
  static open(
    path: string,
    manifest: Pick<Manifest, "weights">,
    opts: SafetensorsWeightsOptions = {},
  ): SafetensorsWeights {
    const ckpt = SafetensorsCheckpoint.open(path, opts);
    try {
      const w = new SafetensorsWeights(ckpt, manifest, opts);
      w.owned = true;
      return w;
    } catch (e) {
      ckpt.close();
      throw e;
    }
  }

  get resolved(): ResolvedSafetensorsWeight[] {
    return [...this.byKey.values()];
  }

  bytes(key: string, layer?: number): Uint8Array {
    const w = this.entries.get(key);
    if (!w) throw new Error(`no weight ${key} in the manifest`);
    const r = this.byKey.get(w.layers === 0 ? key : `${key}#${layer}`);
    if (!r) throw new Error(`no weight ${key} for layer ${layer} (it has ${w.layers} layers)`);
    const heads = this.rope.get(key);
    const scheme = schemeAt(w, w.layers === 0 ? undefined : layer);
    // Already in the manifest's scheme and nothing to permute: the bytes as stored.
    if (heads === undefined && r.parts.every((p) => p.info.dtype.toLowerCase() === scheme)) {
      const out = new Uint8Array(r.parts.reduce((s, p) => s + partBytes(p), 0));
      let at = 0;
      for (const p of r.parts) {
        readPart(p, out.subarray(at, at + partBytes(p)));
        at += partBytes(p);
      }
      return out;
    }
    const read = (p: Part) => {
      const bytes = new Uint8Array(partBytes(p));
      readPart(p, bytes);
      return toF32(bytes, p.info, p.file.path);
    };
    let values: Float32Array;
    if (r.parts.length === 1) {
      values = read(r.parts[0]!);
    } else {
      const each = r.parts.map(read);
      values = new Float32Array(each.reduce((s, v) => s + v.length, 0));
      let at = 0;
      for (const v of each) {
        values.set(v, at);
        at += v.length;
      }
    }
    if (heads !== undefined) values = permuteRopeRows(values, w.shape[0]!, heads);
    const s = getScheme(scheme);
    if (values.length % s.blockSize !== 0) {
      throw new CheckpointError({
        file: r.parts[0]!.file.path,
        what: r.tensor,
        whatKind: "tensor",
        problem: `${values.length} values are not a whole number of ${s.name} blocks of ${s.blockSize}`,
      });
    }
    const out = new Uint8Array((values.length / s.blockSize) * s.blockBytes);
    s.encode(values, out);
    return out;
  }

  close(): void {
    if (this.owned) this.checkpoint.close();
  }
}
