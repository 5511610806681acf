// Bad files, made by corrupting a good one: each must fail with a one-line CheckpointError that
// names the right key or tensor and byte offset; never a RangeError, a huge allocation or a hang.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { schemeByGgmlType } from "../quant/index.ts";
import { CheckpointError } from "./errors.ts";
import { tensorSize } from "./gguf-layout.ts";
import { openGguf } from "./gguf-read.ts";
import { gv } from "./gguf-value.ts";
import { type GgufTensorInput, writeGguf } from "./gguf-write.ts";
import { patternBytes, scratchDir } from "./test-support.ts";

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

function tensor(name: string, type: number, dims: number[], seed: number): GgufTensorInput {
  const sz = tensorSize(dims, schemeByGgmlType(type)!);
  if (!sz.ok) throw new Error(sz.problem);
  return { name, type, dims, data: patternBytes(sz.nbytes, seed) };
}

const goodPath = join(dir, "good.gguf");
writeGguf(goodPath, {
  metadata: [
    ["general.architecture", gv.str("llama")],
    ["general.alignment", gv.u32(32)],
    ["general.name", gv.str("good model")],
    ["llama.expert_count", gv.u32(8)],
    ["tokenizer.ggml.tokens", gv.strings(["<unk>", "<s>", "</s>"])],
    ["dup.aaa", gv.bool(true)],
    ["dup.bbb", gv.i32(-3)],
    ["nested", gv.arr("array", [gv.arr("array", [gv.arr("u8", [1, 2])])])],
  ],
  tensors: [
    tensor("blk.0.a", 0, [8, 2], 1), // f32, 64 bytes
    tensor("blk.0.b", 8, [32, 2], 2), // q8_0, 68 bytes
    tensor("blk.0.c", 1, [16], 3), // f16, 32 bytes
  ],
});
const good = readFileSync(goodPath);
const goodFile = openGguf(goodPath);
const dataOffset = goodFile.dataOffset;
const info = Object.fromEntries(goodFile.tensors.map((t) => [t.name, t]));
const lastEnd = Math.max(...goodFile.tensors.map((t) => t.offset + t.nbytes));
goodFile.close();

/** Byte positions of a metadata entry's fields. */
function keyAt(key: string) {
  const at = good.indexOf(Buffer.from(key)) - 8;
  expect(good.readBigUInt64LE(at)).toBe(BigInt(key.length));
  const type = at + 8 + key.length;
  return { at, type, value: type + 4 };
}

/** Byte positions of a tensor info's fields. */
function tensorAt(name: string) {
  const at = good.lastIndexOf(Buffer.from(name)) - 8;
  expect(good.readBigUInt64LE(at)).toBe(BigInt(name.length));
  const nDims = at + 8 + name.length;
  const dims = nDims + 4;
  const type = dims + 8 * good.readUInt32LE(nDims);
  return { at, nDims, dims, type, offset: type + 4 };
}

let n = 0;
function withBytes(bytes: Uint8Array): string {
  const p = join(dir, `bad-${n++}.gguf`);
  writeFileSync(p, bytes);
  return p;
}

function corrupt(edit: (b: Buffer) => void): string {
  const b = Buffer.from(good);
  edit(b);
  return withBytes(b);
}

function openError(path: string, opts?: Parameters<typeof openGguf>[1]): CheckpointError {
  let err: unknown;
  try {
    openGguf(path, opts).close();
  } catch (e) {
    err = e;
  }
  if (!(err instanceof CheckpointError)) {
    throw new Error(`expected a CheckpointError, got ${err === undefined ? "success" : String(err)}`);
  }
  expect(err.message.includes("\n")).toBe(false);
  expect(err.message.startsWith(`${path}: `)).toBe(true);
  expect(err.file).toBe(path);
  return err;
}

function expectError(
  path: string,
  want: { tensor?: string; key?: string; offset?: number; problem: RegExp },
  opts?: Parameters<typeof openGguf>[1],
) {
  const err = openError(path, opts);
  const what = want.tensor ?? want.key;
  expect(err.what).toBe(what);
  if (what !== undefined) expect(err.whatKind).toBe(want.tensor !== undefined ? "tensor" : "key");
  expect(err.offset).toBe(want.offset);
  expect(err.problem).toMatch(want.problem);
  let where = what === undefined ? "" : ` ${want.tensor !== undefined ? "tensor" : "key"} ${what}`;
  if (want.offset !== undefined) where += ` at byte ${want.offset}`;
  expect(err.message.startsWith(`${path}:${where}${where ? ":" : ""} `)).toBe(true);
}

describe("openGguf on the good file", () => {
  it("opens it", () => {
    const f = openGguf(goodPath);
    expect(f.tensors).toHaveLength(3);
    expect(f.metadata.get("nested")).toEqual(gv.arr("array", [gv.arr("array", [gv.arr("u8", [1, 2])])]));
    f.close();
  });
});

describe("openGguf refuses bad files", () => {
  it("a file that cannot be opened", () => {
    expectError(join(dir, "missing.gguf"), { problem: /cannot open/ });
    expectError(dir, { problem: /not a regular file|cannot open/ });
  });

  it("empty and tiny files", () => {
    expectError(withBytes(new Uint8Array(0)), { offset: 0, problem: /truncated: magic needs 4 bytes/ });
    expectError(withBytes(Buffer.from("GGU")), { offset: 0, problem: /truncated/ });
    expectError(withBytes(Buffer.from("GGUF")), { offset: 4, problem: /truncated: version/ });
  });

  it("wrong magic", () => {
    expectError(
      corrupt((b) => b.write("GGML", 0)),
      { offset: 0, problem: /not a GGUF file: magic is 47 47 4d 4c \("GGML"\)/ },
    );
    expectError(
      corrupt((b) => (b[0] = 0)),
      { offset: 0, problem: /not a GGUF file/ },
    );
  });

  it("version 1, 99 and big-endian", () => {
    expectError(
      corrupt((b) => b.writeUInt32LE(1, 4)),
      { offset: 4, problem: /GGUF version 1 is not supported/ },
    );
    expectError(
      corrupt((b) => b.writeUInt32LE(99, 4)),
      { offset: 4, problem: /unknown GGUF version 99/ },
    );
    expectError(
      corrupt((b) => b.writeUInt32BE(3, 4)),
      { offset: 4, problem: /big-endian/ },
    );
  });

  it("huge tensor_count and metadata_kv_count", () => {
    for (const v of [1n << 62n, (1n << 64n) - 1n, 1000n]) {
      expectError(
        corrupt((b) => b.writeBigUInt64LE(v, 8)),
        { offset: 8, problem: new RegExp(`tensor_count ${v} cannot fit`) },
      );
      expectError(
        corrupt((b) => b.writeBigUInt64LE(v, 16)),
        { offset: 16, problem: new RegExp(`metadata_kv_count ${v} cannot fit`) },
      );
    }
  });

  it("huge string lengths", () => {
    const name = keyAt("general.name");
    expectError(
      corrupt((b) => b.writeBigUInt64LE(1n << 40n, name.value)),
      {
        key: "general.name",
        offset: name.value,
        problem: /value length 1099511627776 is more than the \d+ bytes left/,
      },
    );
    expectError(
      corrupt((b) => b.writeBigUInt64LE(1n << 63n, 24)),
      { offset: 24, problem: /key of metadata entry 0 length/ },
    );
    const t = tensorAt("blk.0.b");
    expectError(
      corrupt((b) => b.writeBigUInt64LE(BigInt(good.length), t.at)),
      { offset: t.at, problem: /name of tensor info 1 length/ },
    );
    const tok = keyAt("tokenizer.ggml.tokens");
    const item1 = tok.value + 4 + 8 + 8 + "<unk>".length;
    expectError(
      corrupt((b) => b.writeBigUInt64LE(99999n, item1)),
      { key: "tokenizer.ggml.tokens", offset: item1, problem: /array item 1 length 99999/ },
    );
  });

  it("huge array length", () => {
    const tok = keyAt("tokenizer.ggml.tokens");
    expectError(
      corrupt((b) => b.writeBigUInt64LE(1n << 50n, tok.value + 4)),
      {
        key: "tokenizer.ggml.tokens",
        offset: tok.value + 4,
        problem: /array of 1125899906842624 string values needs at least/,
      },
    );
  });

  it("unknown metadata value types", () => {
    const k = keyAt("llama.expert_count");
    expectError(
      corrupt((b) => b.writeUInt32LE(13, k.type)),
      { key: "llama.expert_count", offset: k.type, problem: /unknown metadata value type 13/ },
    );
    const tok = keyAt("tokenizer.ggml.tokens");
    expectError(
      corrupt((b) => b.writeUInt32LE(0xffffffff, tok.value)),
      { key: "tokenizer.ggml.tokens", offset: tok.value, problem: /unknown array element type 4294967295/ },
    );
  });

  it("a bool that is neither 0 nor 1", () => {
    const k = keyAt("dup.aaa");
    expectError(
      corrupt((b) => (b[k.value] = 2)),
      { key: "dup.aaa", offset: k.value, problem: /value is 2 \(a bool must be 0 or 1\)/ },
    );
  });

  it("duplicate keys, and keys like __proto__ are plain keys", () => {
    const k = keyAt("dup.bbb");
    expectError(
      corrupt((b) => b.write("dup.aaa", k.at + 8)),
      {
        key: "dup.aaa",
        offset: k.at,
        problem: new RegExp(`duplicate metadata key \\(first at byte ${keyAt("dup.aaa").at}\\)`),
      },
    );
    const p = corrupt((b) => b.write("__proto__", keyAt("general.name").at + 8 + 3));
    // "gen__proto__" is a harmless key; now make one that is exactly __proto__
    const proto = join(dir, "proto.gguf");
    writeGguf(proto, {
      metadata: [
        ["__proto__", gv.u32(1)],
        ["toString", gv.str("x")],
      ],
    });
    const f = openGguf(proto);
    expect(f.metadata.get("__proto__")).toEqual(gv.u32(1));
    expect(({} as Record<string, unknown>).toString).toBe(Object.prototype.toString);
    f.close();
    openGguf(p).close();
  });

  it("alignment that is not a power of two, or not a u32", () => {
    const k = keyAt("general.alignment");
    expectError(
      corrupt((b) => b.writeUInt32LE(24, k.value)),
      { key: "general.alignment", offset: k.value, problem: /alignment 24 is not a power of two/ },
    );
    expectError(
      corrupt((b) => b.writeUInt32LE(5, k.type)),
      { key: "general.alignment", offset: k.value, problem: /must be a u32, not i32/ },
    );
  });

  it("arrays nested too deep", () => {
    const k = keyAt("nested");
    expectError(
      goodPath,
      { key: "nested", offset: k.value + 12 + 12, problem: /arrays nest more than 2 deep/ },
      {
        maxArrayDepth: 2,
      },
    );
  });

  it("a header longer than maxHeaderBytes", () => {
    expectError(
      goodPath,
      { offset: 8, problem: /tensor_count 3 cannot fit.*header limit/ },
      { maxHeaderBytes: 64 },
    );
  });

  it("unknown tensor type", () => {
    const t = tensorAt("blk.0.b");
    expectError(
      corrupt((b) => b.writeUInt32LE(99, t.type)),
      { tensor: "blk.0.b", offset: t.type, problem: /unknown tensor type 99/ },
    );
  });

  it("a ggml type moec has no scheme for is named as llama.cpp names it (the i-quants, TQ1_0, MXFP4, …)", () => {
    const t = tensorAt("blk.0.b");
    for (const [id, name] of [
      [16, "IQ2_XXS"],
      [21, "IQ3_S"],
      [23, "IQ4_XS"],
      [20, "IQ4_NL"],
      [34, "TQ1_0"],
      [39, "MXFP4"],
    ] as const) {
      expectError(
        corrupt((b) => b.writeUInt32LE(id, t.type)),
        {
          tensor: "blk.0.b",
          offset: t.type,
          problem: new RegExp(
            `^type ${name} \\(ggml type ${id}, \`${name.toLowerCase()}\` in llama\\.cpp\\) has no quantization scheme in moec, which reads F32, F16, Q4_0, .*, BF16: re-quantize`,
          ),
        },
      );
    }
  });

  it("n_dims 0 or more than 4, and a 0-sized dim", () => {
    const t = tensorAt("blk.0.a");
    expectError(
      corrupt((b) => b.writeUInt32LE(5, t.nDims)),
      { tensor: "blk.0.a", offset: t.nDims, problem: /n_dims is 5 \(must be 1 to 4\)/ },
    );
    expectError(
      corrupt((b) => b.writeUInt32LE(0, t.nDims)),
      { tensor: "blk.0.a", offset: t.nDims, problem: /n_dims is 0/ },
    );
    expectError(
      corrupt((b) => b.writeBigUInt64LE(0n, t.dims + 8)),
      { tensor: "blk.0.a", offset: t.dims + 8, problem: /dim 1 is 0/ },
    );
  });

  it("dims whose product overflows 2^53", () => {
    const t = tensorAt("blk.0.a");
    expectError(
      corrupt((b) => {
        b.writeBigUInt64LE(1n << 40n, t.dims);
        b.writeBigUInt64LE(1n << 40n, t.dims + 8);
      }),
      { tensor: "blk.0.a", offset: t.dims, problem: /more than 2\^53 elements/ },
    );
    expectError(
      corrupt((b) => b.writeBigUInt64LE((1n << 64n) - 1n, t.dims)),
      { tensor: "blk.0.a", offset: t.dims, problem: /more than 2\^53 elements/ },
    );
  });

  it("a row that is not whole blocks", () => {
    const t = tensorAt("blk.0.b");
    expectError(
      corrupt((b) => b.writeBigUInt64LE(33n, t.dims)),
      {
        tensor: "blk.0.b",
        offset: t.dims,
        problem: /row length 33 is not a multiple of the q8_0 block size 32/,
      },
    );
  });

  it("tensor data past the end of the file", () => {
    const t = tensorAt("blk.0.b");
    expectError(
      corrupt((b) => b.writeBigUInt64LE(1n << 20n, t.offset)),
      { tensor: "blk.0.b", offset: t.offset, problem: /data offset 1048576 .* past the end of the file/ },
    );
    expectError(
      corrupt((b) => b.writeBigUInt64LE((1n << 64n) - 32n, t.offset)),
      { tensor: "blk.0.b", offset: t.offset, problem: /past the end of the file/ },
    );
    const rel = Math.floor((good.length - dataOffset) / 32) * 32;
    expectError(
      corrupt((b) => b.writeBigUInt64LE(BigInt(rel), t.offset)),
      {
        tensor: "blk.0.b",
        offset: dataOffset + rel,
        problem: /data \(68 bytes, to byte \d+\) runs past the end of the file/,
      },
    );
  });

  it("a misaligned tensor offset", () => {
    const t = tensorAt("blk.0.c");
    const rel = info["blk.0.c"]!.offset - dataOffset;
    expectError(
      corrupt((b) => b.writeBigUInt64LE(BigInt(rel + 4), t.offset)),
      {
        tensor: "blk.0.c",
        offset: dataOffset + rel + 4,
        problem: /data offset \d+ is not a multiple of the alignment 32/,
      },
    );
  });

  it("overlapping tensor ranges", () => {
    const c = tensorAt("blk.0.c");
    const bStart = info["blk.0.b"]!.offset;
    expectError(
      corrupt((b) => b.writeBigUInt64LE(BigInt(bStart - dataOffset), c.offset)),
      { tensor: "blk.0.c", offset: bStart, problem: /overlaps tensor blk\.0\.b/ },
    );
    // b's 68 bytes run into the slot 32 bytes after it
    expectError(
      corrupt((b) => b.writeBigUInt64LE(BigInt(bStart + 32 - dataOffset), c.offset)),
      { tensor: "blk.0.c", offset: bStart + 32, problem: /overlaps tensor blk\.0\.b/ },
    );
  });

  it("duplicate tensor names, an empty name, a name that is not UTF-8", () => {
    const c = tensorAt("blk.0.c");
    expectError(
      corrupt((b) => b.write("blk.0.a", c.at + 8)),
      { tensor: "blk.0.a", offset: c.at, problem: /duplicate tensor name \(first at byte \d+\)/ },
    );
    expectError(
      corrupt((b) => (b[c.at + 8 + 2] = 0xff)),
      { offset: c.at, problem: /name of tensor info 2 is not valid UTF-8/ },
    );
    const p = join(dir, "nl.gguf");
    writeGguf(p, { tensors: [tensor("evil\nname", 0, [1], 1)] });
    const bytes = readFileSync(p);
    const at = bytes.indexOf(Buffer.from("evil\nname")) + 9;
    bytes.writeUInt32LE(77, at + 4 + 8);
    writeFileSync(p, bytes);
    expect(openError(p).message).toContain("tensor evil\\nname at byte");
  });

  it("a tensor read after the file shrank", () => {
    const p = join(dir, "shrink.gguf");
    writeFileSync(p, good);
    const f = openGguf(p);
    writeFileSync(p, good.subarray(0, lastEnd - 10));
    expect(() => f.read("blk.0.c")).toThrow(
      /tensor blk\.0\.c at byte \d+: file ended while reading tensor data/,
    );
    f.close();
  });
});

describe("openGguf on damaged files (property tests)", () => {
  it("every truncation before the end of the last tensor is a CheckpointError", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: lastEnd - 1 }), (cut) => {
        const err = openError(withBytes(good.subarray(0, cut)));
        if (cut >= dataOffset) expect(err.whatKind).toBe("tensor");
      }),
      { numRuns: 300 },
    );
    // and exhaustively, since the file is small
    for (let cut = 0; cut < lastEnd; cut++) openError(withBytes(good.subarray(0, cut)));
  });

  it("random overwrites either open cleanly or fail with a CheckpointError", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            at: fc.integer({ min: 0, max: dataOffset - 1 }),
            bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
          }),
          { minLength: 1, maxLength: 4 },
        ),
        (edits) => {
          const b = Buffer.from(good);
          for (const e of edits) b.set(e.bytes.subarray(0, b.length - e.at), e.at);
          const p = withBytes(b);
          let f: ReturnType<typeof openGguf> | undefined;
          try {
            f = openGguf(p);
          } catch (e) {
            if (!(e instanceof CheckpointError)) throw e;
            expect(e.message.includes("\n")).toBe(false);
            return;
          }
          for (const t of f.tensors) {
            expect(t.offset + t.nbytes).toBeLessThanOrEqual(b.length);
            expect(f.read(t)).toHaveLength(t.nbytes);
          }
          f.close();
        },
      ),
      { numRuns: 500 },
    );
  });
});
