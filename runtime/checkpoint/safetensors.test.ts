// The safetensors reader: values of each dtype, shards, and every malformed header refused with a
// CheckpointError naming the file, the tensor or key, and the byte.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CheckpointError } from "./errors.ts";
import { openSafetensors, SafetensorsCheckpoint } from "./safetensors.ts";
import { encodeSafetensorsData, safetensorsBytes, writeSafetensors } from "./safetensors-write.ts";

const dir = () => mkdtempSync(join(tmpdir(), "moec-st-"));

/** A file from a raw header (any JSON text) and `data` bytes after it. */
function rawFile(header: string, data = 0, lengthOverride?: bigint): string {
  const path = join(dir(), "x.safetensors");
  const head = Buffer.from(header, "utf8");
  const out = Buffer.alloc(8 + head.length + data);
  out.writeBigUInt64LE(lengthOverride ?? BigInt(head.length), 0);
  head.copy(out, 8);
  writeFileSync(path, out);
  return path;
}

function error(f: () => unknown): CheckpointError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CheckpointError);
    expect((e as Error).message).not.toContain("\n");
    return e as CheckpointError;
  }
  throw new Error("expected a CheckpointError");
}

describe("safetensors reader", () => {
  it("reads F32, F16 and BF16 tensors as f32, on demand", () => {
    const values = Float32Array.from([1, -2.5, 0.125, 3e-3, 65504, -0]);
    const path = join(dir(), "m.safetensors");
    writeSafetensors(
      path,
      (["F32", "F16", "BF16"] as const).map((dtype) => ({
        name: `t.${dtype}`,
        dtype,
        shape: [2, 3],
        data: encodeSafetensorsData(values, dtype),
      })),
      { format: "pt" },
    );
    const f = openSafetensors(path);
    try {
      expect(f.metadata.get("format")).toBe("pt");
      expect([...f.tensors.keys()]).toEqual(["t.F32", "t.F16", "t.BF16"]);
      expect([...f.readF32(f.findTensor("t.F32")!)]).toEqual([...values]);
      const h = f.readF32(f.findTensor("t.F16")!);
      const b = f.readF32(f.findTensor("t.BF16")!);
      for (let i = 0; i < values.length; i++) {
        expect(Math.abs(h[i]! - values[i]!)).toBeLessThanOrEqual(Math.abs(values[i]!) * 2 ** -11);
        expect(Math.abs(b[i]! - values[i]!)).toBeLessThanOrEqual(Math.abs(values[i]!) * 2 ** -8);
      }
      expect(f.findTensor("t.F32")!.shape).toEqual([2, 3]);
    } finally {
      f.close();
    }
  });

  it("joins shards through model.safetensors.index.json", () => {
    const d = dir();
    const t = (name: string, v: number) => ({
      name,
      dtype: "F32" as const,
      shape: [2],
      data: encodeSafetensorsData(Float32Array.from([v, v + 1]), "F32"),
    });
    writeSafetensors(join(d, "a.safetensors"), [t("x", 1), t("y", 3)]);
    writeSafetensors(join(d, "b.safetensors"), [t("z", 5)]);
    writeFileSync(
      join(d, "model.safetensors.index.json"),
      JSON.stringify({ weight_map: { x: "a.safetensors", y: "a.safetensors", z: "b.safetensors" } }),
    );
    const c = SafetensorsCheckpoint.open(d);
    try {
      expect(c.tensorNames.sort()).toEqual(["x", "y", "z"]);
      const z = c.findTensor("z")!;
      expect([...z.file.readF32(z.info)]).toEqual([5, 6]);
      expect(c.files.length).toBe(2);
    } finally {
      c.close();
    }
    // An index that points a tensor at a shard lacking it, or outside the folder.
    writeFileSync(
      join(d, "model.safetensors.index.json"),
      JSON.stringify({ weight_map: { z: "a.safetensors" } }),
    );
    expect(error(() => SafetensorsCheckpoint.open(d)).message).toMatch(/a\.safetensors: tensor z: missing/);
    writeFileSync(
      join(d, "model.safetensors.index.json"),
      JSON.stringify({ weight_map: { z: "../b.safetensors" } }),
    );
    expect(error(() => SafetensorsCheckpoint.open(d)).message).toMatch(
      /key weight_map\.z: .*file name beside the index/,
    );
  });

  const ok = (o: number[]) => `{"a":{"dtype":"F32","shape":[2],"data_offsets":[${o.join(",")}]}}`;
  const cases: [string, () => string, RegExp][] = [
    ["bad JSON", () => rawFile('{"a": {"dtype": "F32",', 8), /at byte \d+: header is not valid JSON/],
    [
      "a header length past the end of the file",
      () => rawFile(ok([0, 8]), 8, 1n << 40n),
      /at byte 0: header length 1099511627776 runs past the end/,
    ],
    [
      "a file shorter than 8 bytes",
      () => {
        const p = join(dir(), "short.safetensors");
        writeFileSync(p, Buffer.from([1, 2, 3]));
        return p;
      },
      /at byte 0: file is truncated/,
    ],
    [
      "overlapping ranges",
      () =>
        rawFile(
          '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
          12,
        ),
      /tensor b at byte \d+: data overlaps tensor a/,
    ],
    [
      "a __proto__ key",
      () => rawFile(`{"__proto__":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8),
      /key __proto__ at byte 8: key "__proto__" is not allowed/,
    ],
    [
      "a __proto__ key inside an entry",
      () => rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"__proto__":{"x":1}}}`, 8),
      /tensor a at byte 8: key "__proto__" is not allowed/,
    ],
    [
      "a size that disagrees with the shape",
      () => rawFile(ok([0, 12]), 12),
      /tensor a at byte \d+: holds 12 bytes but F32 \[2\] needs 2 × 4 = 8/,
    ],
    [
      "an offset past the end of the data",
      () => rawFile(ok([8, 16]), 8),
      /tensor a at byte \d+: data_offsets \[8, 16\] run past the end of the data \(8 bytes/,
    ],
    [
      "begin after end",
      () => rawFile(ok([8, 0]), 8),
      /tensor a at byte \d+: data_offsets \[8, 0\]: begin is after end/,
    ],
    [
      "a shape whose product overflows",
      () => rawFile('{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}', 8),
      /tensor a at byte 8: shape .*too many elements \(overflow\)/,
    ],
    [
      "an unknown dtype",
      () => rawFile('{"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}', 8),
      /tensor a at byte 8: unknown dtype "Q9"/,
    ],
    [
      "a header that is not an object",
      () => rawFile("[1,2,3]", 0),
      /at byte 8: header must be a JSON object/,
    ],
    [
      "metadata that is not strings",
      () => rawFile('{"__metadata__":{"n":1}}', 0),
      /key __metadata__\.n at byte 8: metadata values must be strings/,
    ],
  ];
  for (const [what, make, message] of cases) {
    it(`refuses ${what}`, () => {
      const path = make();
      const e = error(() => openSafetensors(path));
      expect(e.message.startsWith(`${path}:`)).toBe(true);
      expect(e.message).toMatch(message);
      expect(e.exitCode).toBe(2);
    });
  }

  it("keeps `constructor` and other prototype names as plain tensor names", () => {
    const path = join(dir(), "c.safetensors");
    const data = encodeSafetensorsData(Float32Array.from([7]), "F32");
    writeFileSync(
      path,
      safetensorsBytes([
        { name: "constructor", dtype: "F32", shape: [1], data },
        { name: "toString", dtype: "F32", shape: [1], data },
      ]),
    );
    const f = openSafetensors(path);
    try {
      expect([...f.readF32(f.findTensor("constructor")!)]).toEqual([7]);
      expect(f.findTensor("hasOwnProperty")).toBeUndefined();
    } finally {
      f.close();
    }
  });

  it("refuses a header over the limit before reading it", () => {
    const path = rawFile(ok([0, 8]), 8);
    expect(error(() => openSafetensors(path, { maxHeaderBytes: 10 })).message).toMatch(
      /over the limit of 10 bytes/,
    );
  });
});
