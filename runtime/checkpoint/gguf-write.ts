// GGUF writer: version 3, alignment 32 (or general.alignment when given), zero padding after the
// tensor infos and after each tensor's data. Everything is checked before a byte is written;
// the file is written to `PATH.tmp-<pid>-<random>` and renamed into place, so a failed write
// never leaves a partial file at PATH.
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { CheckpointError } from "./errors.ts";
import {
  alignUp,
  GGUF_ALIGNMENT_KEY,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_WRITE_VERSION,
  isValidAlignment,
  tensorSize,
} from "./gguf-layout.ts";
// GGUF's type ids through the scheme registry; moec's custom ids (1024+) through `moec.scheme.<id>` metadata.
import { resolveTensorType } from "./gguf-types.ts";
import {
  fixedSize,
  GGUF_VALUE_TYPE_ID,
  type GgufArray,
  type GgufValue,
  type GgufValueType,
} from "./gguf-value.ts";

export interface GgufTensorInput {
  readonly name: string;
  /** ggml order: dims[0] is the row length. */
  readonly dims: readonly number[];
  /**
   * ggml type id; the scheme registry gives its block size. An id from 1024 up is a scheme GGUF lacks,
   * named by the metadata entry `moec.scheme.<id>` (see gguf-types.ts).
   */
  readonly type: number;
  readonly data: Uint8Array;
}

/**
 * A tensor whose bytes are produced when the writer reaches it, so that a whole model never has to be
 * in memory at once. `produce` is called once; what it throws is rethrown as is.
 */
export interface GgufLazyTensorInput {
  readonly name: string;
  readonly dims: readonly number[];
  readonly type: number;
  /** The byte size the dims and type imply (checked before anything is written). */
  readonly nbytes: number;
  produce(): Uint8Array;
}

export interface GgufWriteInput {
  /** Entries in the order to write them; a Map (e.g. GgufFile.metadata) works too. */
  readonly metadata?: Iterable<readonly [string, GgufValue]>;
  readonly tensors?: readonly (GgufTensorInput | GgufLazyTensorInput)[];
}

export interface GgufWriteResult {
  readonly alignment: number;
  /** Absolute offset of the data section. */
  readonly dataOffset: number;
  /** Absolute offset of each tensor's data, in input order. */
  readonly offsets: readonly number[];
  readonly size: number;
}

const utf8 = new TextEncoder();
const ZEROS = new Uint8Array(4096);

/** Writes a GGUF v3 file atomically. Throws CheckpointError for bad input (nothing is written then). */
export function writeGguf(path: string, input: GgufWriteInput): GgufWriteResult {
  const header = new ByteSink();
  const fail = (problem: string, what?: string, whatKind?: "key" | "tensor"): never => {
    throw new CheckpointError({ file: path, what, whatKind, problem });
  };

  const metadata = [...(input.metadata ?? [])];
  const tensors = input.tensors ?? [];

  header.u32(GGUF_MAGIC);
  header.u32(GGUF_WRITE_VERSION);
  header.u64(BigInt(tensors.length));
  header.u64(BigInt(metadata.length));

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const seenKeys = new Set<string>();
  for (const [key, value] of metadata) {
    if (typeof key !== "string" || key.length === 0)
      fail("metadata key must be a non-empty string", String(key));
    if (seenKeys.has(key)) fail("duplicate metadata key", key);
    seenKeys.add(key);
    const bad = checkValue(value, 0);
    if (bad) fail(bad, key);
    if (key === GGUF_ALIGNMENT_KEY) {
      if (value.type !== "u32") fail(`must be a u32, not ${value.type}`, key);
      if (!isValidAlignment(value.value as number))
        fail(`alignment ${value.value} is not a power of two`, key);
      alignment = value.value as number;
    }
    header.string(key);
    header.u32(GGUF_VALUE_TYPE_ID[value.type]);
    writeValue(header, value);
  }

  const metaByKey = new Map(metadata.map(([k, v]) => [k, v] as const));
  const seenNames = new Set<string>();
  const offsets: number[] = [];
  let rel = 0;
  for (const t of tensors) {
    if (typeof t.name !== "string" || t.name.length === 0) fail("tensor name must be a non-empty string");
    if (seenNames.has(t.name)) fail("duplicate tensor name", t.name, "tensor");
    seenNames.add(t.name);
    const resolved = resolveTensorType(t.type, (k) => metaByKey.get(k));
    if ("problem" in resolved) return fail(resolved.problem, t.name, "tensor");
    const scheme = resolved.scheme;
    const sz = tensorSize(t.dims, scheme);
    if (!sz.ok) return fail(sz.problem, t.name, "tensor");
    const given = "produce" in t ? t.nbytes : t.data.length;
    if (given !== sz.nbytes) {
      fail(
        `data is ${given} bytes but dims [${t.dims.join(", ")}] of ${scheme.name} take ${sz.nbytes}`,
        t.name,
        "tensor",
      );
    }
    header.string(t.name);
    header.u32(t.dims.length);
    for (const d of t.dims) header.u64(BigInt(d));
    header.u32(t.type);
    header.u64(BigInt(rel));
    offsets.push(rel);
    rel = alignUp(rel + sz.nbytes, alignment);
  }

  const dataOffset = alignUp(header.length, alignment);
  header.zeros(dataOffset - header.length);
  const size = dataOffset + rel;

  /** A producer's data, checked for size; its own errors pass through untouched. */
  let producerError: unknown;
  const produce = (t: GgufTensorInput | GgufLazyTensorInput): Uint8Array => {
    if (!("produce" in t)) return t.data;
    let data: Uint8Array;
    try {
      data = t.produce();
    } catch (e) {
      producerError = e;
      throw e;
    }
    if (data.length !== t.nbytes) {
      producerError = new CheckpointError({
        file: path,
        what: t.name,
        whatKind: "tensor",
        problem: `produce() gave ${data.length} bytes, ${t.nbytes} were declared`,
      });
      throw producerError;
    }
    return data;
  };

  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "wx");
    writeAll(fd, header.bytes());
    let pos = dataOffset;
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i]!;
      const data = produce(t);
      writeAll(fd, data);
      pos += data.length;
      const end = i + 1 < tensors.length ? dataOffset + offsets[i + 1]! : size;
      for (let pad = end - pos; pad > 0; pad -= Math.min(pad, ZEROS.length)) {
        writeAll(fd, ZEROS.subarray(0, Math.min(pad, ZEROS.length)));
      }
      pos = end;
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {}
    }
    try {
      unlinkSync(tmp);
    } catch {}
    if (e instanceof CheckpointError || (producerError !== undefined && e === producerError)) throw e;
    throw new CheckpointError({ file: path, problem: `cannot write: ${(e as Error).message}` });
  }
  return { alignment, dataOffset, offsets: offsets.map((o) => dataOffset + o), size };
}

function writeAll(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, Math.min(data.length - done, 1 << 30));
}

const INT_RANGE: Partial<Record<GgufValueType, readonly [number, number]>> = {
  u8: [0, 0xff],
  i8: [-0x80, 0x7f],
  u16: [0, 0xffff],
  i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff],
  i32: [-0x80000000, 0x7fffffff],
};
const BIG_RANGE: Partial<Record<GgufValueType, readonly [bigint, bigint]>> = {
  u64: [0n, (1n << 64n) - 1n],
  i64: [-(1n << 63n), (1n << 63n) - 1n],
};

const MAX_DEPTH = 8;

/** Why this value cannot be written as its declared type, or undefined when it can. */
function checkValue(v: GgufValue, depth: number): string | undefined {
  if (v === null || typeof v !== "object" || !(v.type in GGUF_VALUE_TYPE_ID)) {
    return `value must be a typed GGUF value like gv.u32(1), got ${describe(v)}`;
  }
  if (v.type === "array") {
    if (depth >= MAX_DEPTH) return `arrays nest more than ${MAX_DEPTH} deep`;
    if (!(v.of in GGUF_VALUE_TYPE_ID)) return `unknown array element type ${String(v.of)}`;
    if (!Array.isArray(v.value)) return "array value must be an array";
    for (let i = 0; i < v.value.length; i++) {
      const item = v.value[i];
      const bad =
        v.of === "array"
          ? checkValue(item as GgufArray, depth + 1)
          : checkItem(v.of, item as number | bigint | boolean | string);
      if (bad) return `array item ${i}: ${bad}`;
    }
    return undefined;
  }
  return checkItem(v.type, v.value);
}

function checkItem(t: GgufValueType, x: unknown): string | undefined {
  const ir = INT_RANGE[t];
  if (ir) {
    if (typeof x !== "number" || !Number.isInteger(x) || x < ir[0] || x > ir[1]) {
      return `${describe(x)} is not a ${t} (an integer from ${ir[0]} to ${ir[1]})`;
    }
    return undefined;
  }
  const br = BIG_RANGE[t];
  if (br) {
    if (typeof x === "number" && !Number.isSafeInteger(x))
      return `${x} is not a safe integer; pass a bigint for ${t}`;
    if (typeof x !== "number" && typeof x !== "bigint") return `${describe(x)} is not a ${t}`;
    const b = BigInt(x);
    if (b < br[0] || b > br[1]) return `${b} is out of range for ${t}`;
    return undefined;
  }
  switch (t) {
    case "f32":
    case "f64":
      return typeof x === "number" ? undefined : `${describe(x)} is not a number`;
    case "bool":
      return typeof x === "boolean" ? undefined : `${describe(x)} is not a bool`;
    case "string":
      return typeof x === "string" ? undefined : `${describe(x)} is not a string`;
    default:
      return `a ${t} cannot be an array item here`;
  }
}

function describe(x: unknown): string {
  if (typeof x === "string") return JSON.stringify(x.length > 40 ? `${x.slice(0, 40)}…` : x);
  if (typeof x === "bigint") return `${x}n`;
  if (x !== null && typeof x === "object") return Array.isArray(x) ? "an array" : "an object";
  return String(x);
}

function writeValue(out: ByteSink, v: GgufValue): void {
  if (v.type === "array") {
    writeArray(out, v);
    return;
  }
  writeItem(out, v.type, v.value);
}

function writeArray(out: ByteSink, a: GgufArray): void {
  out.u32(GGUF_VALUE_TYPE_ID[a.of]);
  out.u64(BigInt(a.value.length));
  for (const item of a.value) {
    if (a.of === "array") writeArray(out, item as GgufArray);
    else writeItem(out, a.of, item as number | bigint | boolean | string);
  }
}

function writeItem(out: ByteSink, t: GgufValueType, x: number | bigint | boolean | string | GgufArray): void {
  if (t === "string") {
    out.string(x as string);
    return;
  }
  if (t === "array") {
    writeArray(out, x as GgufArray);
    return;
  }
  // Reserve first: reserve() may replace the buffer and its DataView.
  const p = out.reserve(fixedSize(t)!);
  const dv = out.dv;
  switch (t) {
    case "u8":
      dv.setUint8(p, x as number);
      return;
    case "i8":
      dv.setInt8(p, x as number);
      return;
    case "u16":
      dv.setUint16(p, x as number, true);
      return;
    case "i16":
      dv.setInt16(p, x as number, true);
      return;
    case "u32":
      dv.setUint32(p, x as number, true);
      return;
    case "i32":
      dv.setInt32(p, x as number, true);
      return;
    case "f32":
      dv.setFloat32(p, x as number, true);
      return;
    case "f64":
      dv.setFloat64(p, x as number, true);
      return;
    case "u64":
      dv.setBigUint64(p, BigInt(x as number | bigint), true);
      return;
    case "i64":
      dv.setBigInt64(p, BigInt(x as number | bigint), true);
      return;
    case "bool":
      dv.setUint8(p, x ? 1 : 0);
      return;
  }
}

/** A growable little-endian byte buffer for the header. */
class ByteSink {
  private buf = new Uint8Array(4096);
  /** A view of the whole buffer; valid until the next reserve(). */
  dv = new DataView(this.buf.buffer);
  length = 0;

  /** Makes room for n more bytes (zeroed) and returns where they start. */
  reserve(n: number): number {
    if (this.length + n > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < this.length + n) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.dv = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  u32(x: number): void {
    const p = this.reserve(4);
    this.dv.setUint32(p, x, true);
  }
  u64(x: bigint): void {
    const p = this.reserve(8);
    this.dv.setBigUint64(p, x, true);
  }
  string(s: string): void {
    const b = utf8.encode(s);
    this.u64(BigInt(b.length));
    const p = this.reserve(b.length);
    this.buf.set(b, p);
  }
  zeros(n: number): void {
    this.reserve(n);
  }
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}
