// A reader for Hugging Face safetensors checkpoints: one `.safetensors` file, or a folder (or its
// `model.safetensors.index.json`) whose `weight_map` spreads the tensors over shards.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON, then the data:
//   { "NAME": {"dtype": "BF16", "shape": [out, in], "data_offsets": [begin, end]}, …,
//     "__metadata__": {"format": "pt"} }
// with offsets relative to the data (byte 8 + N). Opening validates the whole header before anything
// is allocated from it: N fits the file and a limit, the JSON parses to an object, every entry has a
// known dtype, a shape of whole numbers, and 0 ≤ begin ≤ end ≤ data size with end − begin equal to
// product(shape) × dtype size (overflow-checked), no two ranges overlap, and no key is `__proto__`.
// Entries are kept in Maps, so no name from the file ever touches an object's prototype. Tensor
// bytes are read on demand with positioned reads; the file itself is never read whole.
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { f16Table } from "../quant/half.ts";
import { CheckpointError, printableName } from "./errors.ts";

/** Byte size of each dtype safetensors defines (for validation); only F32, F16 and BF16 can be read as numbers. */
const DTYPE_BYTES: ReadonlyMap<string, number> = new Map([
  ["BOOL", 1],
  ["U8", 1],
  ["I8", 1],
  ["F8_E5M2", 1],
  ["F8_E4M3", 1],
  ["I16", 2],
  ["U16", 2],
  ["F16", 2],
  ["BF16", 2],
  ["I32", 4],
  ["U32", 4],
  ["F32", 4],
  ["F64", 8],
  ["I64", 8],
  ["U64", 8],
]);

/** The dtypes moec converts to its schemes. */
export const SAFETENSORS_FLOAT_DTYPES = ["F32", "F16", "BF16"] as const;
export type SafetensorsFloatDtype = (typeof SAFETENSORS_FLOAT_DTYPES)[number];

/** safetensors' own limit on the header (100 MB). */
export const DEFAULT_MAX_SAFETENSORS_HEADER = 100_000_000;
/** An index file is a name → shard map; a real one is a few hundred KiB. */
const MAX_INDEX_BYTES = 64 * 1024 * 1024;
const MAX_RANK = 8;

export interface SafetensorsTensorInfo {
  readonly name: string;
  /** The file that holds it. */
  readonly file: string;
  readonly dtype: string;
  /** Row-major, as PyTorch: [out, in] for a linear weight. */
  readonly shape: readonly number[];
  readonly elements: number;
  /** Absolute offset of the first byte in the file. */
  readonly offset: number;
  readonly nbytes: number;
}

export interface OpenSafetensorsOptions {
  /** Refuse a header longer than this (default 100 MB, safetensors' own limit). */
  maxHeaderBytes?: number;
}

const FORBIDDEN_KEYS = new Set(["__proto__"]);

/** One open .safetensors file: its validated header, and tensors read on demand. */
export class SafetensorsFile {
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
  /** `__metadata__`: string → string. */
  readonly metadata: ReadonlyMap<string, string>;
  /** Where the data starts (8 + header length). */
  readonly dataStart: number;
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    readonly size: number,
    fd: number,
    tensors: Map<string, SafetensorsTensorInfo>,
    metadata: Map<string, string>,
    dataStart: number,
  ) {
    this.fd = fd;
    this.tensors = tensors;
    this.metadata = metadata;
    this.dataStart = dataStart;
  }

  /** Opens and validates; throws CheckpointError naming the file, the tensor or key, and the byte. */
  static open(path: string, opts: OpenSafetensorsOptions = {}): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      throw new CheckpointError({ file: path, problem: `cannot open: ${(e as Error).message}` });
    }
    try {
      const size = fstatSync(fd).size;
      const { tensors, metadata, dataStart } = readHeader(path, fd, size, opts);
      return new SafetensorsFile(path, size, fd, tensors, metadata, dataStart);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  findTensor(name: string): SafetensorsTensorInfo | undefined {
    return this.tensors.get(name);
  }

  /** The tensor's raw little-endian bytes, in a fresh buffer. */
  read(t: SafetensorsTensorInfo): Uint8Array {
    const out = new Uint8Array(t.nbytes);
    this.readInto(t, out);
    return out;
  }

  /** Reads the tensor's bytes into `dst` (exactly `t.nbytes` long). */
  readInto(t: SafetensorsTensorInfo, dst: Uint8Array): void {
    if (dst.length !== t.nbytes) throw new RangeError(`${t.name} is ${t.nbytes} bytes, not ${dst.length}`);
    this.readSpan(t, t.offset, dst);
  }

  private readSpan(t: SafetensorsTensorInfo, at: number, dst: Uint8Array): void {
    if (this.fd === undefined) throw new Error(`${this.path} is closed`);
    if (this.tensors.get(t.name) !== t) throw new Error(`tensor ${t.name} is not from ${this.path}`);
    let got = 0;
    while (got < dst.length) {
      const n = readSync(this.fd, dst, got, dst.length - got, at + got);
      if (n === 0) {
        throw new CheckpointError({
          file: this.path,
          what: t.name,
          whatKind: "tensor",
          offset: at + got,
          problem: "file ended while reading the tensor (did it shrink?)",
        });
      }
      got += n;
    }
  }

  /** Bytes `start`…`start + dst.length` of the tensor into `dst` (a part of a fused tensor). */
  readRangeInto(t: SafetensorsTensorInfo, start: number, dst: Uint8Array): void {
    if (start < 0 || start + dst.length > t.nbytes) {
      throw new RangeError(`bytes ${start}…${start + dst.length} are outside ${t.name} (${t.nbytes} bytes)`);
    }
    this.readSpan(t, t.offset + start, dst);
  }

  /** The tensor as f32 values (F32, F16 or BF16). */
  readF32(t: SafetensorsTensorInfo): Float32Array {
    return toF32(this.read(t), t, this.path);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Raw little-endian bytes of an F32/F16/BF16 tensor → f32 values. */
export function toF32(
  bytes: Uint8Array,
  t: Pick<SafetensorsTensorInfo, "name" | "dtype" | "offset">,
  file: string,
): Float32Array {
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  switch (t.dtype) {
    case "F32":
      return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.length >>> 2).slice();
    case "F16": {
      const h = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.length >>> 1);
      const out = new Float32Array(h.length);
      for (let i = 0; i < h.length; i++) out[i] = f16Table[h[i]!]!;
      return out;
    }
    case "BF16": {
      const h = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.length >>> 1);
      const out = new Float32Array(h.length);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < h.length; i++) bits[i] = h[i]! << 16;
      return out;
    }
    default:
      throw new CheckpointError({
        file,
        what: t.name,
        whatKind: "tensor",
        offset: t.offset,
        problem: `dtype ${t.dtype} is not supported (moec reads ${SAFETENSORS_FLOAT_DTYPES.join(", ")})`,
      });
  }
}

function readExactly(path: string, fd: number, len: number, at: number): Buffer {
  const buf = Buffer.alloc(len);
  let got = 0;
  while (got < len) {
    const n = readSync(fd, buf, got, len - got, at + got);
    if (n === 0) {
      throw new CheckpointError({
        file: path,
        offset: at + got,
        problem: "file ended while reading the header",
      });
    }
    got += n;
  }
  return buf;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v);

function readHeader(
  path: string,
  fd: number,
  size: number,
  opts: OpenSafetensorsOptions,
): { tensors: Map<string, SafetensorsTensorInfo>; metadata: Map<string, string>; dataStart: number } {
  const fail = (
    problem: string,
    offset?: number,
    what?: string,
    whatKind: "tensor" | "key" = "tensor",
  ): never => {
    throw new CheckpointError({ file: path, problem, offset, what, whatKind });
  };
  if (size < 8) fail(`file is truncated: ${size} bytes, too short for the 8-byte header length`, 0);
  const lenBytes = readExactly(path, fd, 8, 0);
  const headerLen = lenBytes.readBigUInt64LE(0);
  const max = opts.maxHeaderBytes ?? DEFAULT_MAX_SAFETENSORS_HEADER;
  if (headerLen > BigInt(size - 8)) {
    fail(
      `header length ${headerLen} runs past the end of the file (${size} bytes): not a safetensors file, or truncated`,
      0,
    );
  }
  if (headerLen > BigInt(max)) fail(`header length ${headerLen} is over the limit of ${max} bytes`, 0);
  const n = Number(headerLen);
  if (n < 2) fail(`header length ${n} is too short for a JSON object`, 0);
  const dataStart = 8 + n;
  const dataSize = size - dataStart;

  const raw = readExactly(path, fd, n, 8);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    return fail("header is not valid UTF-8", 8);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    const msg = (e as Error).message;
    const at = /position (\d+)/.exec(msg);
    return fail(`header is not valid JSON: ${msg}`, at ? 8 + Number(at[1]) : 8);
  }
  if (!isPlainObject(parsed)) return fail("header must be a JSON object of tensors", 8);

  const tensors = new Map<string, SafetensorsTensorInfo>();
  const metadata = new Map<string, string>();
  // JSON.parse makes `__proto__` an own property (it never sets the prototype), so Object.keys sees it.
  for (const name of Object.keys(parsed)) {
    const entry: unknown = parsed[name];
    if (FORBIDDEN_KEYS.has(name)) {
      fail(`key ${JSON.stringify(name)} is not allowed in a safetensors header`, 8, name, "key");
    }
    if (name === "__metadata__") {
      if (!isPlainObject(entry)) fail("must be an object of strings", 8, name, "key");
      for (const k of Object.keys(entry as Record<string, unknown>)) {
        const v = (entry as Record<string, unknown>)[k];
        if (FORBIDDEN_KEYS.has(k))
          fail(`key ${JSON.stringify(k)} is not allowed`, 8, `__metadata__.${k}`, "key");
        if (typeof v !== "string") fail("metadata values must be strings", 8, `__metadata__.${k}`, "key");
        metadata.set(k, v as string);
      }
      continue;
    }
    const bad = (problem: string, offset = 8): never => fail(problem, offset, name);
    if (!isPlainObject(entry)) bad("entry must be an object with dtype, shape and data_offsets");
    const e = entry as Record<string, unknown>;
    for (const k of Object.keys(e)) if (FORBIDDEN_KEYS.has(k)) bad(`key ${JSON.stringify(k)} is not allowed`);
    const dtype = e.dtype;
    if (typeof dtype !== "string") bad("dtype is missing or not a string");
    const width = DTYPE_BYTES.get(dtype as string);
    if (width === undefined) bad(`unknown dtype ${JSON.stringify(printableName(dtype as string, 20))}`);
    const shape = e.shape;
    if (!Array.isArray(shape)) bad("shape is missing or not an array");
    const dims = shape as unknown[];
    if (dims.length > MAX_RANK) bad(`shape has ${dims.length} dimensions; at most ${MAX_RANK}`);
    let elements = 1;
    for (const d of dims) {
      if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
        bad(`shape [${dims.map((x) => JSON.stringify(x)).join(", ")}] must hold whole numbers ≥ 0`);
      }
      elements *= d as number;
      if (!Number.isSafeInteger(elements)) bad(`shape [${dims.join(", ")}] has too many elements (overflow)`);
    }
    const nbytes = elements * width!;
    if (!Number.isSafeInteger(nbytes)) bad(`shape [${dims.join(", ")}] is too many bytes (overflow)`);
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2) bad("data_offsets must be [begin, end]");
    const [begin, end] = offs as unknown[];
    for (const o of [begin, end]) {
      if (typeof o !== "number" || !Number.isSafeInteger(o) || o < 0) {
        bad(`data_offsets [${JSON.stringify(begin)}, ${JSON.stringify(end)}] must be whole numbers ≥ 0`);
      }
    }
    const b = begin as number;
    const en = end as number;
    if (b > en) bad(`data_offsets [${b}, ${en}]: begin is after end`, dataStart + Math.min(b, dataSize));
    if (en > dataSize) {
      bad(
        `data_offsets [${b}, ${en}] run past the end of the data (${dataSize} bytes after the header)`,
        dataStart + Math.min(b, dataSize),
      );
    }
    if (en - b !== nbytes) {
      bad(
        `holds ${en - b} bytes but ${dtype} [${dims.join(", ")}] needs ${elements} × ${width} = ${nbytes}`,
        dataStart + b,
      );
    }
    tensors.set(name, {
      name,
      file: path,
      dtype: dtype as string,
      shape: dims as number[],
      elements,
      offset: dataStart + b,
      nbytes,
    });
  }

  // No two non-empty ranges may overlap.
  const sorted = [...tensors.values()].filter((t) => t.nbytes > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.offset < prev.offset + prev.nbytes) {
      fail(
        `data overlaps tensor ${printableName(prev.name, 80)} (bytes ${prev.offset}..${prev.offset + prev.nbytes})`,
        cur.offset,
        cur.name,
      );
    }
  }
  return { tensors, metadata, dataStart };
}

export function openSafetensors(path: string, opts: OpenSafetensorsOptions = {}): SafetensorsFile {
  return SafetensorsFile.open(path, opts);
}

export const SAFETENSORS_INDEX = "model.safetensors.index.json";

/** A whole checkpoint: one file, or shards joined by an index's weight_map. */
export class SafetensorsCheckpoint {
  /** What errors about the checkpoint as a whole name: the file, or the index. */
  readonly path: string;
  readonly files: readonly SafetensorsFile[];
  private readonly where: Map<string, SafetensorsFile>;

  private constructor(path: string, files: SafetensorsFile[], where: Map<string, SafetensorsFile>) {
    this.path = path;
    this.files = files;
    this.where = where;
  }

  /**
   * Opens `path`: a `.safetensors` file, an index `*.safetensors.index.json`, or a folder holding
   * `model.safetensors.index.json`, else `model.safetensors`.
   */
  static open(path: string, opts: OpenSafetensorsOptions = {}): SafetensorsCheckpoint {
    let target = path;
    let isDir = false;
    try {
      isDir = statSync(path).isDirectory();
    } catch (e) {
      throw new CheckpointError({ file: path, problem: `cannot open: ${(e as Error).message}` });
    }
    if (isDir) target = findInFolder(path);
    if (/\.json$/i.test(target)) return SafetensorsCheckpoint.openIndex(target, opts);
    const file = SafetensorsFile.open(target, opts);
    return new SafetensorsCheckpoint(target, [file], new Map([...file.tensors.keys()].map((k) => [k, file])));
  }

  private static openIndex(indexPath: string, opts: OpenSafetensorsOptions): SafetensorsCheckpoint {
    const fail = (problem: string, what?: string): never => {
      throw new CheckpointError({ file: indexPath, what, whatKind: "key", problem });
    };
    let size: number;
    try {
      size = statSync(indexPath).size;
    } catch (e) {
      return fail(`cannot open: ${(e as Error).message}`);
    }
    if (size > MAX_INDEX_BYTES) fail(`is ${size} bytes; an index is at most ${MAX_INDEX_BYTES}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(indexPath, "utf8"));
    } catch (e) {
      return fail(`not valid JSON: ${(e as Error).message}`);
    }
    if (!isPlainObject(parsed)) return fail("an index must be one JSON object");
    const map = parsed.weight_map;
    if (!isPlainObject(map)) return fail("missing or not an object", "weight_map");
    const dir = dirname(indexPath);
    const shards = new Map<string, SafetensorsFile>();
    const where = new Map<string, SafetensorsFile>();
    try {
      for (const name of Object.keys(map)) {
        const shard = map[name];
        const key = `weight_map.${name}`;
        if (FORBIDDEN_KEYS.has(name)) fail(`key ${JSON.stringify(name)} is not allowed`, key);
        if (typeof shard !== "string") return fail("the shard must be a file name", key);
        if (
          shard === "" ||
          shard !== basename(shard) ||
          shard === "." ||
          shard === ".." ||
          shard.includes("\\")
        ) {
          fail(`shard ${JSON.stringify(printableName(shard, 80))} must be a file name beside the index`, key);
        }
        let file = shards.get(shard);
        if (!file) {
          file = SafetensorsFile.open(join(dir, shard), opts);
          shards.set(shard, file);
        }
        if (!file.findTensor(name)) {
          throw new CheckpointError({
            file: file.path,
            what: name,
            whatKind: "tensor",
            problem: `missing: ${basename(indexPath)} puts it in this shard`,
          });
        }
        where.set(name, file);
      }
    } catch (e) {
      for (const f of shards.values()) f.close();
      throw e;
    }
    return new SafetensorsCheckpoint(indexPath, [...shards.values()], where);
  }

  get tensorNames(): string[] {
    return [...this.where.keys()];
  }

  /** The tensor and the shard that holds it. */
  findTensor(name: string): { file: SafetensorsFile; info: SafetensorsTensorInfo } | undefined {
    const file = this.where.get(name);
    if (!file) return undefined;
    return { file, info: file.findTensor(name)! };
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

function findInFolder(dir: string): string {
  const index = join(dir, SAFETENSORS_INDEX);
  const single = join(dir, "model.safetensors");
  const exists = (p: string) => {
    try {
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (exists(index)) return index;
  if (exists(single)) return single;
  throw new CheckpointError({
    file: dir,
    problem: `no ${SAFETENSORS_INDEX} or model.safetensors in this folder`,
  });
}

export function openSafetensorsCheckpoint(
  path: string,
  opts: OpenSafetensorsOptions = {},
): SafetensorsCheckpoint {
  return SafetensorsCheckpoint.open(path, opts);
}
