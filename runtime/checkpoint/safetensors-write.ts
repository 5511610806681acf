// Writes safetensors files (atomically): the tests' tiny Hugging Face checkpoints, and a shard index.
// Tensors are laid out in the order given, back to back; the header is padded with spaces to a
// multiple of 8 bytes, as the reference implementation does.
import { writeFileAtomic } from "../atomic.ts";
import { f32ToBf16, f32ToF16 } from "../quant/half.ts";

export interface SafetensorsTensorInput {
  name: string;
  dtype: "F32" | "F16" | "BF16";
  shape: number[];
  /** Little-endian bytes, exactly product(shape) × dtype size. */
  data: Uint8Array;
}

const WIDTH = { F32: 4, F16: 2, BF16: 2 } as const;

/** f32 values → the bytes of one dtype. */
export function encodeSafetensorsData(values: Float32Array, dtype: "F32" | "F16" | "BF16"): Uint8Array {
  if (dtype === "F32") return new Uint8Array(values.slice().buffer);
  const h = new Uint16Array(values.length);
  const conv = dtype === "F16" ? f32ToF16 : f32ToBf16;
  for (let i = 0; i < values.length; i++) h[i] = conv(values[i]!);
  return new Uint8Array(h.buffer);
}

/** The bytes of a safetensors file. */
export function safetensorsBytes(
  tensors: readonly SafetensorsTensorInput[],
  metadata?: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = Object.create(null);
  if (metadata) header.__metadata__ = metadata;
  let at = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1) * WIDTH[t.dtype];
    if (n !== t.data.length) throw new RangeError(`${t.name}: ${t.data.length} bytes for ${n}`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + n] };
    at += n;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const head = Buffer.from(json, "utf8");
  const out = new Uint8Array(8 + head.length + at);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let o = 8 + head.length;
  for (const t of tensors) {
    out.set(t.data, o);
    o += t.data.length;
  }
  return out;
}

export function writeSafetensors(
  path: string,
  tensors: readonly SafetensorsTensorInput[],
  metadata?: Record<string, string>,
): void {
  writeFileAtomic(path, safetensorsBytes(tensors, metadata));
}
