// GGUF reader: parses and validates the header with positioned reads, then reads each tensor's
// bytes on demand. The whole file is never loaded. Every problem is a CheckpointError naming the
// file, the metadata key or tensor, and the byte offset; sizes read from the file are checked
// against the bytes that remain before anything is allocated from them.
//
// Metadata values keep their wire types (see gguf-value.ts); u64 and i64 are always bigint.
// Versions 2 and 3 are read (they differ only in what writers put in them); version 1 is refused.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import type { QuantScheme } from "../quant/scheme.ts";
import { CheckpointError, type CheckpointSubject, printableName } from "./errors.ts";
import { FileCursor } from "./file-cursor.ts";
import {
  alignUp,
  GGUF_ALIGNMENT_KEY,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_MAX_DIMS,
  isValidAlignment,
  tensorSize,
} from "./gguf-layout.ts";
// Resolves GGUF's type ids through the scheme registry (built-ins registered), and moec's custom ids
// (1024 and up) through the file's `moec.scheme.<id>` metadata.
import { resolveTensorType } from "./gguf-types.ts";
import {
  fixedSize,
  type GgufArray,
  type GgufValue,
  type GgufValueType,
  ggufValueTypeFromId,
  minWireSize,
} from "./gguf-value.ts";

export interface GgufTensorInfo {
  readonly name: string;
  /** ggml order: dims[0] is the row length (the fastest-varying dimension). */
  readonly dims: readonly number[];
  /** ggml type id. */
  readonly type: number;
  readonly scheme: QuantScheme;
  /** Absolute byte offset of the tensor's data in the file. */
  readonly offset: number;
  readonly nbytes: number;
  readonly elements: number;
}

export interface OpenGgufOptions {
  /** The header (metadata and tensor infos) must end within this many bytes. Default 256 MiB. */
  maxHeaderBytes?: number;
  /** How deep arrays may nest in metadata. Default 8. */
  maxArrayDepth?: number;
}

const DEFAULT_MAX_HEADER_BYTES = 256 * 1024 * 1024;
const DEFAULT_MAX_ARRAY_DEPTH = 8;
/** u64 name length + u32 n_dims + one u64 dim + u32 type + u64 offset (an empty name is refused later). */
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8;
/** u64 key length + u32 value type + a one-byte value. */
const MIN_KV_BYTES = 8 + 4 + 1;
/** Positioned reads of tensor data go in pieces no larger than this (readSync takes at most 2^31-1). */
const READ_PIECE = 1 << 30;

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export class GgufFile {
  private readonly byName: Map<string, GgufTensorInfo>;
  private fd: number | undefined;

  constructor(
    fd: number,
    /** The path as given to openGguf; errors name it. */
    readonly path: string,
    readonly version: number,
    readonly metadata: ReadonlyMap<string, GgufValue>,
    readonly alignment: number,
    /** In the order of the file's tensor infos. */
    readonly tensors: readonly GgufTensorInfo[],
    /** Absolute offset of the data section. */
    readonly dataOffset: number,
    /** File size when opened. */
    readonly size: number,
  ) {
    this.fd = fd;
    this.byName = new Map(tensors.map((t) => [t.name, t]));
  }

  /** The tensor with this name, or undefined. */
  findTensor(name: string): GgufTensorInfo | undefined {
    return this.byName.get(name);
  }

  /** The tensor with this name; a CheckpointError if the file has none. */
  tensor(name: string): GgufTensorInfo {
    const t = this.byName.get(name);
    if (!t)
      throw new CheckpointError({
        file: this.path,
        what: name,
        whatKind: "tensor",
        problem: "no such tensor",
      });
    return t;
  }

  /** Reads the tensor's bytes from the file. */
  read(info: GgufTensorInfo | string): Uint8Array {
    const t = this.own(info);
    const out = new Uint8Array(t.nbytes);
    this.readInto(t, out);
    return out;
  }

  /** Reads the tensor's bytes into `dst` (at least nbytes long); returns the filled view. */
  readInto(info: GgufTensorInfo | string, dst: Uint8Array): Uint8Array {
    const t = this.own(info);
    const fail = (problem: string, offset?: number): never => {
      throw new CheckpointError({ file: this.path, what: t.name, whatKind: "tensor", offset, problem });
    };
    if (this.fd === undefined) fail("the file is closed");
    if (dst.length < t.nbytes) fail(`destination holds ${dst.length} bytes, the tensor needs ${t.nbytes}`);
    let got = 0;
    while (got < t.nbytes) {
      const want = Math.min(READ_PIECE, t.nbytes - got);
      const r = readSync(this.fd!, dst, got, want, t.offset + got);
      if (r === 0)
        fail("file ended while reading tensor data (did it shrink after it was opened?)", t.offset + got);
      got += r;
    }
    return dst.subarray(0, t.nbytes);
  }

  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    closeSync(fd);
  }

  private own(info: GgufTensorInfo | string): GgufTensorInfo {
    const t = typeof info === "string" ? this.tensor(info) : this.byName.get(info.name);
    if (!t || (typeof info !== "string" && (t.offset !== info.offset || t.nbytes !== info.nbytes))) {
      const name = typeof info === "string" ? info : info.name;
      throw new CheckpointError({
        file: this.path,
        what: name,
        whatKind: "tensor",
        problem: "not a tensor of this file",
      });
    }
    return t;
  }
}

/** Opens a GGUF file and validates its header; the caller must close() it. */
export function openGguf(path: string, opts: OpenGgufOptions = {}): GgufFile {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new CheckpointError({ file: path, problem: `cannot open: ${(e as Error).message}` });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new CheckpointError({ file: path, problem: "not a regular file" });
    return parse(fd, path, st.size, opts);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

interface RawTensor {
  info: Omit<GgufTensorInfo, "offset">;
  rel: bigint;
  offsetFieldPos: number;
}

function parse(fd: number, path: string, size: number, opts: OpenGgufOptions): GgufFile {
  const maxHeader = opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  const maxDepth = opts.maxArrayDepth ?? DEFAULT_MAX_ARRAY_DEPTH;
  let ctxWhat: string | undefined;
  let ctxKind: CheckpointSubject | undefined;
  const about = (what: string | undefined, kind?: CheckpointSubject) => {
    ctxWhat = what;
    ctxKind = kind;
  };
  // Typed on the declaration so that TypeScript knows a call to it does not return.
  const fail: (problem: string, offset: number) => never = (problem, offset) => {
    throw new CheckpointError({ file: path, what: ctxWhat, whatKind: ctxKind, offset, problem });
  };
  const cur = new FileCursor(fd, size, Math.min(size, maxHeader), fail);

  /** `index` (of an array item) is added to `field` only in messages, so the good path builds no text. */
  const readString = (field: string, strict: boolean, index = -1): string => {
    const at = cur.pos;
    const len = cur.u64Size(field);
    if (typeof len === "bigint" || len > cur.remaining) {
      if (index >= 0) field = `${field} ${index}`;
      fail(`${field} length ${len} is more than the ${cur.remaining} bytes left${limitNote(cur)}`, at);
    }
    // Values: bad UTF-8 becomes U+FFFD (a BOM is kept); keys and tensor names must be valid UTF-8.
    if (!strict) return cur.utf8(len, field);
    const bytes = cur.bytes(len, field);
    try {
      return strictUtf8.decode(bytes);
    } catch {
      return fail(`${field} is not valid UTF-8`, at);
    }
  };

  const checkBool = (b: number, field: string, at: number): boolean => {
    if (b > 1) fail(`${field} is ${b} (a bool must be 0 or 1)`, at);
    return b === 1;
  };

  const readArray = (depth: number): GgufArray => {
    const typeAt = cur.pos;
    if (depth >= maxDepth) fail(`arrays nest more than ${maxDepth} deep`, typeAt);
    const ofId = cur.u32("array element type");
    const of = ggufValueTypeFromId(ofId);
    if (of === undefined) return fail(`unknown array element type ${ofId}`, typeAt);
    const lenAt = cur.pos;
    const len = cur.u64("array length");
    const min = minWireSize(of);
    if (len * BigInt(min) > BigInt(cur.remaining)) {
      fail(
        `array of ${len} ${of} values needs at least ${len * BigInt(min)} bytes but only ${cur.remaining} are left${limitNote(cur)}`,
        lenAt,
      );
    }
    const n = Number(len);
    const w = fixedSize(of);
    if (w !== undefined) return { type: "array", of, value: readFixedItems(of, w, n) };
    const items: (number | bigint | boolean | string | GgufArray)[] = [];
    for (let i = 0; i < n; i++) items.push(readItem(of, depth, "array item", i));
    return { type: "array", of, value: items };
  };

  /** n fixed-size items in one read (their total size was checked against the bytes left). */
  const readFixedItems = (of: GgufValueType, w: number, n: number): (number | bigint | boolean)[] => {
    const start = cur.pos;
    const b = cur.bytes(n * w, "array items");
    const items: (number | bigint | boolean)[] = new Array(n);
    for (let i = 0, o = 0; i < n; i++, o += w) items[i] = decodeFixed(b, of, o, start + o, i);
    return items;
  };

  const decodeFixed = (
    b: Buffer,
    of: GgufValueType,
    o: number,
    at: number,
    i: number,
  ): number | bigint | boolean => {
    switch (of) {
      case "u8":
        return b[o]!;
      case "i8":
        return b.readInt8(o);
      case "u16":
        return b.readUInt16LE(o);
      case "i16":
        return b.readInt16LE(o);
      case "u32":
        return b.readUInt32LE(o);
      case "i32":
        return b.readInt32LE(o);
      case "f32":
        return b.readFloatLE(o);
      case "f64":
        return b.readDoubleLE(o);
      case "u64":
        return b.readBigUInt64LE(o);
      case "i64":
        return b.readBigInt64LE(o);
      case "bool":
        return b[o]! > 1 ? checkBool(b[o]!, `array item ${i}`, at) : b[o] === 1;
      default:
        throw new Error(`unreachable: ${of} is not fixed-size`);
    }
  };

  const readItem = (
    t: GgufValueType,
    depth: number,
    field: string,
    index = -1,
  ): number | bigint | boolean | string | GgufArray => {
    switch (t) {
      case "u8":
        return cur.u8(field);
      case "i8":
        return cur.i8(field);
      case "u16":
        return cur.u16(field);
      case "i16":
        return cur.i16(field);
      case "u32":
        return cur.u32(field);
      case "i32":
        return cur.i32(field);
      case "f32":
        return cur.f32(field);
      case "f64":
        return cur.f64(field);
      case "u64":
        return cur.u64(field);
      case "i64":
        return cur.i64(field);
      case "bool": {
        const at = cur.pos;
        return checkBool(cur.u8(field), field, at);
      }
      case "string":
        return readString(field, false, index);
      case "array":
        return readArray(depth + 1);
    }
  };

  const readValue = (t: GgufValueType): GgufValue => {
    if (t === "array") return readArray(0);
    const v = readItem(t, 0, "value");
    return { type: t, value: v } as GgufValue;
  };

  // --- fixed header
  const magicBytes = Buffer.from(cur.bytes(4, "magic"));
  if (magicBytes.readUInt32LE(0) !== GGUF_MAGIC) {
    fail(`not a GGUF file: magic is ${describeMagic(magicBytes)} (expected "GGUF")`, 0);
  }
  const version = cur.u32("version");
  if (version === 1) fail("GGUF version 1 is not supported (only versions 2 and 3 are)", 4);
  if (version === 0x02000000 || version === 0x03000000) fail("big-endian GGUF files are not supported", 4);
  if (version !== 2 && version !== 3) fail(`unknown GGUF version ${version} (supported: 2 and 3)`, 4);

  const tensorCountBig = cur.u64("tensor_count");
  const kvCountBig = cur.u64("metadata_kv_count");
  const tensorMin = tensorCountBig * BigInt(MIN_TENSOR_INFO_BYTES);
  if (tensorMin > BigInt(cur.remaining)) {
    fail(
      `tensor_count ${tensorCountBig} cannot fit: tensor infos need at least ${tensorMin} bytes but only ${cur.remaining} are left${limitNote(cur)}`,
      8,
    );
  }
  const kvMin = kvCountBig * BigInt(MIN_KV_BYTES);
  if (kvMin > BigInt(cur.remaining) - tensorMin) {
    fail(
      `metadata_kv_count ${kvCountBig} cannot fit: entries need at least ${kvMin} bytes but only ${BigInt(cur.remaining) - tensorMin} are left after the tensor infos${limitNote(cur)}`,
      16,
    );
  }
  const tensorCount = Number(tensorCountBig);
  const kvCount = Number(kvCountBig);

  // --- metadata
  const metadata = new Map<string, GgufValue>();
  const keyAt = new Map<string, number>();
  const valueAt = new Map<string, number>();
  for (let i = 0; i < kvCount; i++) {
    about(undefined);
    const at = cur.pos;
    const key = readString(`key of metadata entry ${i}`, true);
    about(key, "key");
    if (key.length === 0) fail("metadata key is empty", at);
    const first = keyAt.get(key);
    if (first !== undefined) fail(`duplicate metadata key (first at byte ${first})`, at);
    keyAt.set(key, at);
    const typeAt = cur.pos;
    const typeId = cur.u32("value type");
    const t = ggufValueTypeFromId(typeId);
    if (t === undefined) return fail(`unknown metadata value type ${typeId}`, typeAt);
    valueAt.set(key, cur.pos);
    metadata.set(key, readValue(t));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get(GGUF_ALIGNMENT_KEY);
  if (al !== undefined) {
    about(GGUF_ALIGNMENT_KEY, "key");
    const at = valueAt.get(GGUF_ALIGNMENT_KEY)!;
    if (al.type !== "u32") fail(`must be a u32, not ${al.type}`, at);
    if (!isValidAlignment(al.value as number)) fail(`alignment ${al.value} is not a power of two`, at);
    alignment = al.value as number;
  }

  // --- tensor infos
  const raws: RawTensor[] = [];
  const nameAt = new Map<string, number>();
  for (let i = 0; i < tensorCount; i++) {
    about(undefined);
    const at = cur.pos;
    const name = readString(`name of tensor info ${i}`, true);
    about(name, "tensor");
    if (name.length === 0) fail("tensor name is empty", at);
    const first = nameAt.get(name);
    if (first !== undefined) fail(`duplicate tensor name (first at byte ${first})`, at);
    nameAt.set(name, at);
    const ndAt = cur.pos;
    const nd = cur.u32("n_dims");
    if (nd === 0 || nd > GGUF_MAX_DIMS) fail(`n_dims is ${nd} (must be 1 to ${GGUF_MAX_DIMS})`, ndAt);
    const dimsAt = cur.pos;
    const dims: bigint[] = [];
    for (let j = 0; j < nd; j++) {
      const dAt = cur.pos;
      const d = cur.u64(`dim ${j}`);
      if (d === 0n) fail(`dim ${j} is 0 (dims must be at least 1)`, dAt);
      dims.push(d);
    }
    const typeAt = cur.pos;
    const type = cur.u32("type");
    const resolved = resolveTensorType(type, (k) => metadata.get(k));
    if ("problem" in resolved) return fail(resolved.problem, typeAt);
    const scheme = resolved.scheme;
    const sz = tensorSize(dims, scheme);
    if (!sz.ok) return fail(sz.problem, dimsAt);
    const offsetFieldPos = cur.pos;
    const rel = cur.u64("data offset");
    raws.push({
      info: { name, dims: dims.map(Number), type, scheme, nbytes: sz.nbytes, elements: sz.elements },
      rel,
      offsetFieldPos,
    });
  }

  // --- data section: every tensor aligned, inside the file, and no two overlapping
  const dataOffset = alignUp(cur.pos, alignment);
  const tensors: GgufTensorInfo[] = [];
  for (const r of raws) {
    about(r.info.name, "tensor");
    const abs = BigInt(dataOffset) + r.rel;
    if (abs > BigInt(size)) {
      fail(
        `data offset ${r.rel} (absolute byte ${abs}) is past the end of the file (${size} bytes)`,
        r.offsetFieldPos,
      );
    }
    const start = Number(abs);
    if (r.rel % BigInt(alignment) !== 0n) {
      fail(`data offset ${r.rel} is not a multiple of the alignment ${alignment}`, start);
    }
    if (start + r.info.nbytes > size) {
      fail(
        `data (${r.info.nbytes} bytes, to byte ${start + r.info.nbytes}) runs past the end of the file (${size} bytes)`,
        start,
      );
    }
    tensors.push({ ...r.info, offset: start });
  }
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const t = sorted[i]!;
    if (t.offset < prev.offset + prev.nbytes) {
      about(t.name, "tensor");
      fail(
        `data [${t.offset}, ${t.offset + t.nbytes}) overlaps tensor ${printableName(prev.name)} [${prev.offset}, ${prev.offset + prev.nbytes})`,
        t.offset,
      );
    }
  }

  return new GgufFile(fd, path, version, metadata, alignment, tensors, dataOffset, size);
}

function limitNote(cur: FileCursor): string {
  return cur.limit < cur.size ? ` before the header limit (maxHeaderBytes ${cur.limit})` : " in the file";
}

function describeMagic(b: Uint8Array): string {
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");
  const text = [...b].every((x) => x >= 0x20 && x < 0x7f) ? ` ("${String.fromCharCode(...b)}")` : "";
  return `${hex}${text}`;
}
