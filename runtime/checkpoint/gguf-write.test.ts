import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { schemeByGgmlType } from "../quant/index.ts";
import { CheckpointError } from "./errors.ts";
import { tensorSize } from "./gguf-layout.ts";
import { openGguf } from "./gguf-read.ts";
import { type GgufValue, gv, plainValue } from "./gguf-value.ts";
import { type GgufTensorInput, writeGguf } from "./gguf-write.ts";
import { patternBytes, scratchDir } from "./test-support.ts";

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

function tensor(name: string, type: number, dims: number[], seed: number): GgufTensorInput {
  const sz = tensorSize(dims, schemeByGgmlType(type)!);
  if (!sz.ok) throw new Error(sz.problem);
  return { name, type, dims, data: patternBytes(sz.nbytes, seed) };
}

const everyType: [string, GgufValue][] = [
  ["general.architecture", gv.str("llama")],
  ["general.name", gv.str("tëst ✓ 模型")],
  ["empty.string", gv.str("")],
  ["t.u8", gv.u8(255)],
  ["t.i8", gv.i8(-128)],
  ["t.u16", gv.u16(65535)],
  ["t.i16", gv.i16(-32768)],
  ["llama.expert_count", gv.u32(8)],
  ["t.u32max", gv.u32(0xffffffff)],
  ["t.i32", gv.i32(-2147483648)],
  ["t.f32", gv.f32(Math.fround(1e-5))],
  ["t.f32inf", gv.f32(Number.NEGATIVE_INFINITY)],
  ["t.bool.true", gv.bool(true)],
  ["t.bool.false", gv.bool(false)],
  ["t.u64", gv.u64(0xffffffffffffffffn)],
  ["t.u64small", gv.u64(42)],
  ["t.i64", gv.i64(-(1n << 63n))],
  ["t.f64", gv.f64(Math.PI)],
  ["tokenizer.ggml.tokens", gv.strings(["<unk>", "<s>", "</s>", "▁the", ""])],
  ["tokenizer.ggml.scores", gv.f32s([0, -1.5, -2.25, 3.5, 0])],
  ["tokenizer.ggml.token_type", gv.i32s([2, 3, 3, 1, -1])],
  ["t.arr.u8", gv.arr("u8", [0, 1, 255])],
  ["t.arr.i8", gv.arr("i8", [-128, 127])],
  ["t.arr.u16", gv.arr("u16", [1, 65535])],
  ["t.arr.i16", gv.arr("i16", [-1, 2])],
  ["t.arr.u32", gv.u32s([7, 0xffffffff])],
  ["t.arr.bool", gv.arr("bool", [true, false, true])],
  ["t.arr.u64", gv.arr("u64", [0n, 1n << 63n])],
  ["t.arr.i64", gv.arr("i64", [-1n, 5n])],
  ["t.arr.f64", gv.arr("f64", [0.1, -0])],
  ["t.arr.empty", gv.arr("string", [])],
  [
    "t.arr.nested",
    gv.arr("array", [
      gv.strings(["a", "bc"]),
      gv.arr("i32", [1, -2, 3]),
      gv.arr("array", [gv.arr("u8", [9])]),
    ]),
  ],
  ["__proto__", gv.str("not a prototype")],
  ["constructor", gv.u32(1)],
];

/** What the reader gives back for a written value: 64-bit integers come back as bigint. */
function asRead(v: GgufValue): GgufValue {
  if (v.type === "u64" || v.type === "i64") return { type: v.type, value: BigInt(v.value) };
  if (v.type === "array") {
    return {
      type: "array",
      of: v.of,
      value: v.value.map((x) =>
        typeof x === "object"
          ? asRead(x)
          : typeof x === "number" && (v.of === "u64" || v.of === "i64")
            ? BigInt(x)
            : x,
      ),
    } as GgufValue;
  }
  return v;
}

describe("writeGguf then openGguf", () => {
  it("round-trips metadata of every type and tensor bytes of several types", () => {
    const path = join(dir, "every.gguf");
    const tensors = [
      tensor("token_embd.weight", 0, [4, 3], 1),
      tensor("blk.0.attn_norm.weight", 1, [7], 2),
      tensor("blk.0.ffn_gate_exps.weight", 8, [64, 3, 2], 3),
      tensor("blk.0.attn_q.weight", 2, [32, 3], 4),
      tensor("output.weight", 12, [256, 1, 1, 2], 5),
    ];
    const res = writeGguf(path, { metadata: everyType, tensors });
    const f = openGguf(path);
    try {
      expect(f.version).toBe(3);
      expect(f.alignment).toBe(32);
      expect([...f.metadata.keys()]).toEqual(everyType.map(([k]) => k));
      for (const [k, v] of everyType) expect(f.metadata.get(k), k).toEqual(asRead(v));
      expect(Object.prototype).not.toHaveProperty("not a prototype");
      expect(plainValue(f.metadata.get("t.u64small")!)).toBe(42);
      expect(plainValue(f.metadata.get("t.u64")!)).toBe(0xffffffffffffffffn);
      expect(f.tensors.map((t) => t.name)).toEqual(tensors.map((t) => t.name));
      expect(f.dataOffset % 32).toBe(0);
      expect(f.dataOffset).toBe(res.dataOffset);
      expect(f.size).toBe(res.size);
      for (const [i, t] of tensors.entries()) {
        const info = f.tensor(t.name);
        expect(info.dims).toEqual(t.dims);
        expect(info.type).toBe(t.type);
        expect(info.scheme).toBe(schemeByGgmlType(t.type));
        expect(info.nbytes).toBe(t.data.length);
        expect(info.offset % 32).toBe(0);
        expect(info.offset).toBe(res.offsets[i]);
        expect(Buffer.from(f.read(info)).equals(Buffer.from(t.data))).toBe(true);
        expect(Buffer.from(f.read(t.name)).equals(Buffer.from(t.data))).toBe(true);
      }
      expect(f.tensors[0]!.offset).toBe(f.dataOffset);
      expect(f.findTensor("nope")).toBeUndefined();
      expect(() => f.tensor("nope")).toThrow(CheckpointError);
    } finally {
      f.close();
    }
    expect(() => f.read(tensors[0]!.name)).toThrow(/closed/);
    // the padding is zeros
    const bytes = readFileSync(path);
    const last = openGguf(path);
    const q4 = last.tensor("blk.0.attn_q.weight");
    last.close();
    expect(
      bytes.subarray(q4.offset + q4.nbytes, last.tensor("output.weight").offset).every((b) => b === 0),
    ).toBe(true);
  });

  it("writes what it reads: a second write is byte-identical", () => {
    const a = join(dir, "a.gguf");
    const b = join(dir, "b.gguf");
    writeGguf(a, { metadata: everyType, tensors: [tensor("x", 8, [32, 2], 9)] });
    const f = openGguf(a);
    writeGguf(b, { metadata: f.metadata, tensors: f.tensors.map((t) => ({ ...t, data: f.read(t) })) });
    f.close();
    expect(readFileSync(b).equals(readFileSync(a))).toBe(true);
  });

  it("uses general.alignment when given", () => {
    const path = join(dir, "align64.gguf");
    writeGguf(path, {
      metadata: [["general.alignment", gv.u32(64)]],
      tensors: [tensor("a", 0, [3], 1), tensor("b", 1, [5], 2), tensor("c", 0, [1], 3)],
    });
    const f = openGguf(path);
    expect(f.alignment).toBe(64);
    expect(f.dataOffset % 64).toBe(0);
    for (const t of f.tensors) expect(t.offset % 64).toBe(0);
    f.close();
  });

  it("writes and reads a file with no tensors and no metadata", () => {
    const path = join(dir, "empty.gguf");
    writeGguf(path, {});
    const f = openGguf(path);
    expect(f.tensors).toEqual([]);
    expect(f.metadata.size).toBe(0);
    f.close();
  });

  it("reads a version 2 file", () => {
    const path = join(dir, "v2.gguf");
    writeGguf(path, { metadata: [["k", gv.u32(1)]], tensors: [tensor("t", 0, [2], 1)] });
    const b = readFileSync(path);
    b.writeUInt32LE(2, 4);
    writeFileSync(path, b);
    const f = openGguf(path);
    expect(f.version).toBe(2);
    f.close();
  });
});

describe("writeGguf refuses bad input", () => {
  const bad = (name: string, input: Parameters<typeof writeGguf>[1], re: RegExp) =>
    it(name, () => {
      const path = join(dir, `bad-${name.replace(/\W+/g, "_")}.gguf`);
      const err = catchError(() => writeGguf(path, input));
      expect(err).toBeInstanceOf(CheckpointError);
      expect(err.message).toMatch(re);
      expect(err.message.split("\n")).toHaveLength(1);
      expect(existsSync(path)).toBe(false);
      expect(readdirSync(dir).filter((n) => n.includes(".tmp-"))).toEqual([]);
    });

  bad(
    "data length",
    { tensors: [{ name: "w", dims: [4, 2], type: 0, data: new Uint8Array(31) }] },
    /tensor w: data is 31 bytes .* take 32/,
  );
  bad(
    "row not whole blocks",
    { tensors: [{ name: "w", dims: [33], type: 8, data: new Uint8Array(34) }] },
    /tensor w: row length 33 .*q8_0 block size 32/,
  );
  bad(
    "unknown type",
    { tensors: [{ name: "w", dims: [1], type: 9999, data: new Uint8Array(1) }] },
    /tensor w: unknown tensor type 9999/,
  );
  bad(
    "zero dim",
    { tensors: [{ name: "w", dims: [4, 0], type: 0, data: new Uint8Array(0) }] },
    /tensor w: dim 1 is 0/,
  );
  bad(
    "five dims",
    { tensors: [{ name: "w", dims: [1, 1, 1, 1, 1], type: 0, data: new Uint8Array(4) }] },
    /tensor w: has 5 dims/,
  );
  bad(
    "duplicate tensor",
    { tensors: [tensor("w", 0, [1], 1), tensor("w", 0, [1], 2)] },
    /tensor w: duplicate tensor name/,
  );
  bad(
    "u32 negative",
    { metadata: [["llama.expert_count", gv.u32(-1)]] },
    /key llama\.expert_count: -1 is not a u32/,
  );
  bad("i32 too big", { metadata: [["k", gv.i32(2 ** 31)]] }, /key k: 2147483648 is not a i32/);
  bad("u8 fraction", { metadata: [["k", gv.arr("u8", [1, 2.5])]] }, /key k: array item 1: 2.5 is not a u8/);
  bad("u64 unsafe number", { metadata: [["k", gv.u64(2 ** 60)]] }, /key k: .* pass a bigint/);
  bad("u64 negative", { metadata: [["k", gv.u64(-1n)]] }, /key k: -1 is out of range for u64/);
  bad(
    "string array holding a number",
    { metadata: [["k", gv.arr("string", ["a", 1])]] },
    /key k: array item 1: 1 is not a string/,
  );
  bad(
    "untyped value",
    { metadata: [["k", 5 as unknown as GgufValue]] },
    /key k: value must be a typed GGUF value/,
  );
  bad(
    "duplicate key",
    {
      metadata: [
        ["k", gv.u8(1)],
        ["k", gv.u8(2)],
      ],
    },
    /key k: duplicate metadata key/,
  );
  bad(
    "alignment type",
    { metadata: [["general.alignment", gv.u64(32)]] },
    /key general\.alignment: must be a u32/,
  );
  bad("alignment value", { metadata: [["general.alignment", gv.u32(24)]] }, /not a power of two/);

  it("leaves an existing file alone when a write fails, and replaces it when one succeeds", () => {
    const path = join(dir, "keep.gguf");
    writeFileSync(path, "old");
    expect(() =>
      writeGguf(path, { tensors: [{ name: "w", dims: [2], type: 0, data: new Uint8Array(1) }] }),
    ).toThrow(CheckpointError);
    expect(readFileSync(path, "utf8")).toBe("old");
    writeGguf(path, { tensors: [tensor("w", 0, [2], 1)] });
    expect(readFileSync(path).subarray(0, 4).toString()).toBe("GGUF");
    expect(readdirSync(dir).filter((n) => n.includes(".tmp-"))).toEqual([]);
  });

  it("reports an unwritable destination as a CheckpointError and leaves no temp file", () => {
    const path = join(dir, "no-such-dir", "x.gguf");
    expect(() => writeGguf(path, {})).toThrow(/cannot write/);
  });
});

function catchError(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected an error");
}
