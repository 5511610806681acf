// A compiled model's weights from a GGUF file. Opening checks, before anything is read, that every
// tensor the manifest names exists with the manifest's shape and scheme; the bytes of each tensor are
// then read from the file when the runtime asks for them.
//
// Mixtral's experts come in two layouts: one 3-D tensor per layer (`blk.N.ffn_gate_exps.weight`,
// ggml dims [in, out, experts]) and the older one 2-D tensor per expert (`blk.N.ffn_gate.E.weight`).
// The manifest names the merged tensor; when the file lacks it, the per-expert tensors are read one
// after the other, which is exactly the merged tensor's bytes (experts are the slowest dimension).
import { type Manifest, schemeAt, type WeightEntry } from "../manifest.ts";
import type { WeightSource } from "../weights.ts";
import { CheckpointError } from "./errors.ts";
import { type GgufFile, type GgufTensorInfo, openGguf } from "./gguf-read.ts";

/**
 * The per-expert tensors that stand for a merged 3-D expert tensor, in expert order, or undefined
 * when the name has no per-expert form:
 *   GGUF:          `blk.3.ffn_gate_exps.weight` → `blk.3.ffn_gate.E.weight`
 *   Hugging Face:  `model.layers.3.block_sparse_moe.experts.w1.weight` → `….experts.E.w1.weight`
 */
export function perExpertTensorNames(merged: string, experts: number): string[] | undefined {
  const gguf = /^(.+)_exps(\.[A-Za-z0-9_]+)$/.exec(merged);
  if (gguf) return Array.from({ length: experts }, (_, e) => `${gguf[1]}.${e}${gguf[2]}`);
  const hf = /^(.+\.experts)(\.[^.]+\.weight)$/.exec(merged);
  if (hf) return Array.from({ length: experts }, (_, e) => `${hf[1]}.${e}${hf[2]}`);
  return undefined;
}

/** Where one (weight, layer) lives in the file: one tensor, or one per expert to concatenate. */
export interface ResolvedWeight {
  readonly key: string;
  readonly layer: number | undefined;
  /** The tensor name the manifest gives (for this layer). */
  readonly tensor: string;
  readonly parts: readonly GgufTensorInfo[];
  readonly nbytes: number;
}

export interface ResolveOptions {
  /** Check each tensor's type against the manifest's scheme (default true). */
  checkTypes?: boolean;
}

function layersOf(w: WeightEntry): (number | undefined)[] {
  return w.layers === 0 ? [undefined] : Array.from({ length: w.layers }, (_, l) => l);
}

function tensorFor(w: WeightEntry, layer: number | undefined): string {
  return w.index === undefined || layer === undefined
    ? w.tensor
    : w.tensor.replaceAll(`{${w.index}}`, String(layer));
}

const where = (w: WeightEntry, layer: number | undefined) =>
  `\`${w.key}\`${layer === undefined ? "" : ` (layer ${layer})`}`;
const dimsText = (d: readonly number[]) => `[${d.join(", ")}]`;

/**
 * Finds every manifest weight in the file and checks its dims (the manifest shape reversed: ggml
 * order) and, unless told not to, its type. The first problem is thrown as a CheckpointError that
 * names the tensor (and its data offset when the tensor exists).
 */
export function resolveGgufWeights(
  file: GgufFile,
  weights: readonly WeightEntry[],
  opts: ResolveOptions = {},
): ResolvedWeight[] {
  const checkTypes = opts.checkTypes ?? true;
  const fail = (what: string, problem: string, offset?: number): never => {
    throw new CheckpointError({ file: file.path, what, whatKind: "tensor", offset, problem });
  };
  const check = (t: GgufTensorInfo, w: WeightEntry, layer: number | undefined, dims: readonly number[]) => {
    const same = t.dims.length === dims.length && t.dims.every((d, i) => d === dims[i]);
    if (!same) {
      fail(
        t.name,
        `dims are ${dimsText(t.dims)} but ${where(w, layer)} needs ${dimsText(dims)} (ggml order, the spec's shape ${dimsText(w.shape)} reversed)`,
        t.offset,
      );
    }
    const want = schemeAt(w, layer);
    if (checkTypes && t.scheme.name !== want) {
      fail(t.name, `expected type ${want} for ${where(w, layer)}, found ${t.scheme.name}`, t.offset);
    }
  };

  const out: ResolvedWeight[] = [];
  for (const w of weights) {
    const dims = [...w.shape].reverse();
    for (const layer of layersOf(w)) {
      const name = tensorFor(w, layer);
      const t = file.findTensor(name);
      if (t) {
        check(t, w, layer, dims);
        out.push({ key: w.key, layer, tensor: name, parts: [t], nbytes: t.nbytes });
        continue;
      }
      const split = w.shape.length === 3 ? perExpertTensorNames(name, w.shape[0]!) : undefined;
      const first = split && file.findTensor(split[0]!);
      if (!split || !first) {
        fail(
          name,
          `missing: the model needs it for ${where(w, layer)}${split ? ` (nor is it stored one tensor per expert: no ${split[0]})` : ""}`,
        );
      }
      const parts: GgufTensorInfo[] = [];
      for (const p of split!) {
        const pt = file.findTensor(p);
        if (!pt)
          return fail(p, `missing: ${name} is stored one tensor per expert, and this expert is absent`);
        check(pt, w, layer, dims.slice(0, 2));
        parts.push(pt);
      }
      out.push({
        key: w.key,
        layer,
        tensor: name,
        parts,
        nbytes: parts.reduce((s, p) => s + p.nbytes, 0),
      });
    }
  }
  return out;
}

/** Weights read on demand from an open GGUF file, checked against the manifest when constructed. */
export class GgufWeights implements WeightSource {
  private readonly byKey = new Map<string, ResolvedWeight>();
  private readonly entries = new Map<string, WeightEntry>();
  private owned = false;

  /** The file stays the caller's to close unless this was made by `GgufWeights.open`. */
  constructor(
    readonly file: GgufFile,
    manifest: Pick<Manifest, "weights">,
  ) {
    for (const w of manifest.weights) this.entries.set(w.key, w);
    for (const r of resolveGgufWeights(file, manifest.weights)) {
      this.byKey.set(r.layer === undefined ? r.key : `${r.key}#${r.layer}`, r);
    }
  }

  /** Opens the file and checks it against the manifest; close() closes the file. */
  static open(path: string, manifest: Pick<Manifest, "weights">): GgufWeights {
    const file = openGguf(path);
    try {
      const w = new GgufWeights(file, manifest);
      w.owned = true;
      return w;
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** Where each (weight, layer) comes from. */
  get resolved(): ResolvedWeight[] {
    return [...this.byKey.values()];
  }

  bytes(key: string, layer?: number): Uint8Array {
    const w = this.entries.get(key);
    if (!w) throw new Error(`no weight ${key} in the manifest`);
    const r = this.byKey.get(w.layers === 0 ? key : `${key}#${layer}`);
    if (!r) throw new Error(`no weight ${key} for layer ${layer} (it has ${w.layers} layers)`);
    if (r.parts.length === 1) return this.file.read(r.parts[0]!);
    const out = new Uint8Array(r.nbytes);
    let at = 0;
    for (const p of r.parts) {
      this.file.readInto(p, out.subarray(at, at + p.nbytes));
      at += p.nbytes;
    }
    return out;
  }

  close(): void {
    if (this.owned) this.file.close();
  }
}
