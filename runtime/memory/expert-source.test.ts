// Both expert sources give, for every (layer, expert, role), exactly the e-th slice of the stacked tensor
// the WeightSource gives; the file source from either GGUF expert layout.
import { truncateSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CheckpointError } from "../checkpoint/errors.ts";
import { GgufWeights } from "../checkpoint/gguf-weights.ts";
import { type RandomMixtralOptions, writeRandomMixtralGguf } from "../checkpoint/random-gguf.ts";
import { scratchDir } from "../checkpoint/test-support.ts";
import type { Manifest, WeightEntry } from "../manifest.ts";
import "../quant/index.ts";
import {
  EXPERT_ROLES,
  type ExpertKeys,
  type ExpertSource,
  expertLayout,
  FileExpertSource,
  HostExpertSource,
} from "./expert-source.ts";

const { dir, cleanup } = scratchDir();
afterAll(() => cleanup());

const sizes: RandomMixtralOptions = {
  hidden: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 96,
  experts: 4,
  topK: 2,
  vocab: 300,
  type: "q8_0",
  seed: 9,
};

const keys: ExpertKeys = { gate: "layer.w_gate", up: "layer.w_up", down: "layer.w_down" };

function expertManifest(o: RandomMixtralOptions, scheme: string): Pick<Manifest, "weights"> {
  const per = (key: string, tensor: string, shape: number[]): WeightEntry => ({
    key: `layer.${key}`,
    tensor: `blk.{i}.${tensor}.weight`,
    index: "i",
    shape,
    layers: o.layers,
    scheme,
  });
  return {
    weights: [
      per("w_gate", "ffn_gate_exps", [o.experts, o.ffn, o.hidden]),
      per("w_up", "ffn_up_exps", [o.experts, o.ffn, o.hidden]),
      per("w_down", "ffn_down_exps", [o.experts, o.hidden, o.ffn]),
    ],
  };
}

const manifest = expertManifest(sizes, "q8_0");
const merged = join(dir, "merged.gguf");
const split = join(dir, "split.gguf");
writeRandomMixtralGguf(merged, sizes);
writeRandomMixtralGguf(split, { ...sizes, layout: "per-expert" });

/** Every expert matrix read through `src` equals the slice of the WeightSource's stacked tensor. */
function expectSameAsWeights(src: ExpertSource, weights: GgufWeights) {
  const layout = expertLayout(manifest, keys);
  const differ: string[] = [];
  for (let l = 0; l < sizes.layers; l++) {
    for (const role of EXPERT_ROLES) {
      const stacked = weights.bytes(keys[role], l);
      const n = layout.bytes[l]![role];
      for (let e = 0; e < sizes.experts; e++) {
        const dst = new Uint8Array(n);
        src.read(l, e, role, dst);
        if (Buffer.compare(dst, stacked.subarray(e * n, (e + 1) * n)) !== 0) differ.push(`${l}/${e}/${role}`);
      }
    }
  }
  expect(differ).toEqual([]);
}

describe("expertLayout", () => {
  it("bytes of one expert matrix per role, from shape and scheme", () => {
    const l = expertLayout(manifest, keys);
    expect(l).toMatchObject({ layers: 2, experts: 4 });
    // q8_0: 32 values in 34 bytes, in each layer
    const one = { gate: (96 * 64 * 34) / 32, up: (96 * 64 * 34) / 32, down: (64 * 96 * 34) / 32 };
    expect(l.bytes).toEqual([one, one]);
  });

  it("names a missing key and a weight that is not a stack", () => {
    expect(() => expertLayout(manifest, { ...keys, up: "layer.nope" })).toThrow(
      "no weight `layer.nope` (the experts' up matrices) in the manifest",
    );
    const flat = {
      weights: [...manifest.weights, { key: "x", tensor: "x", shape: [4, 4], layers: 2, scheme: "f32" }],
    };
    expect(() => expertLayout(flat, { ...keys, down: "x" })).toThrow(/`x` is not a per-layer stack/);
  });
});

describe("HostExpertSource", () => {
  it("copies every expert once; reads equal the WeightSource's slices", () => {
    const w = GgufWeights.open(merged, manifest);
    const layout = expertLayout(manifest, keys);
    const src = new HostExpertSource(w, layout);
    const each = layout.bytes[0]!.gate + layout.bytes[0]!.up + layout.bytes[0]!.down;
    expect(src.hostBytes).toBe(sizes.layers * sizes.experts * each);
    expectSameAsWeights(src, w);
    w.close();
  });

  it("holds only the offloaded experts, and refuses the others", () => {
    const w = GgufWeights.open(merged, manifest);
    const layout = expertLayout(manifest, keys);
    const src = new HostExpertSource(w, layout, { offloaded: (_, e) => e >= 2 });
    expect(src.hostBytes).toBe(2 * 2 * (layout.bytes[0]!.gate + layout.bytes[0]!.up + layout.bytes[0]!.down));
    expect(() => src.read(1, 0, "up", new Uint8Array(layout.bytes[0]!.up))).toThrow(
      "layer 1 expert 0 is resident, not offloaded to the host",
    );
    src.read(1, 3, "up", new Uint8Array(layout.bytes[0]!.up));
    w.close();
  });

  it("refuses a host budget too small, with the numbers, before copying", () => {
    const layout = expertLayout(manifest, keys);
    const each = layout.bytes[0]!.gate + layout.bytes[0]!.up + layout.bytes[0]!.down;
    const none = {
      bytes: () => {
        throw new Error("copied anyway");
      },
    };
    expect(() => new HostExpertSource(none, layout, { hostBudgetBytes: 8 * each - 1 })).toThrow(
      `host memory budget exceeded: 8 offloaded experts need ${8 * each} bytes, the budget is ${8 * each - 1} (1 over)`,
    );
  });

  it("checks the destination size and the indices", () => {
    const w = GgufWeights.open(merged, manifest);
    const layout = expertLayout(manifest, keys);
    const src = new HostExpertSource(w, layout);
    expect(() => src.read(0, 0, "gate", new Uint8Array(10))).toThrow(
      `destination for layer 0 expert 0 gate holds 10 bytes; the matrix is ${layout.bytes[0]!.gate}`,
    );
    expect(() => src.read(2, 0, "gate", new Uint8Array(layout.bytes[0]!.gate))).toThrow(
      /layer 2 is out of range/,
    );
    expect(() => src.read(0, 4, "gate", new Uint8Array(layout.bytes[0]!.gate))).toThrow(
      /expert 4 is out of range/,
    );
    w.close();
  });
});

describe("FileExpertSource", () => {
  for (const [name, path] of [
    ["merged 3-D tensors", merged],
    ["one tensor per expert", split],
  ] as const) {
    it(`reads exactly the WeightSource's bytes: ${name}`, () => {
      const w = GgufWeights.open(path, manifest);
      const src = FileExpertSource.open(path, manifest, keys);
      expectSameAsWeights(src, w);
      src.close();
      w.close();
    });
  }

  it("reads into a shared (WebAssembly) memory", () => {
    const layout = expertLayout(manifest, keys);
    const src = FileExpertSource.open(merged, manifest, keys);
    const w = GgufWeights.open(merged, manifest);
    const mem = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    const dst = new Uint8Array(mem.buffer, 128, layout.bytes[0]!.down);
    src.read(1, 2, "down", dst);
    const n = layout.bytes[0]!.down;
    expect(Buffer.compare(dst, w.bytes(keys.down, 1).subarray(2 * n, 3 * n))).toBe(0);
    src.close();
    w.close();
  });

  it("the offsets of the merged layout are slices of the tensor", () => {
    const src = FileExpertSource.open(merged, manifest, keys);
    const w = GgufWeights.open(merged, manifest);
    const t = w.file.tensor("blk.1.ffn_up_exps.weight");
    const n = expertLayout(manifest, keys).bytes[1]!.up;
    expect(src.offsetOf(1, 3, "up")).toBe(t.offset + 3 * n);
    src.close();
    w.close();
  });

  it("a wrong scheme names the tensor", () => {
    const e = (() => {
      try {
        FileExpertSource.open(merged, expertManifest(sizes, "f16"), keys);
      } catch (err) {
        return err as CheckpointError;
      }
      throw new Error("opened");
    })();
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e.message).toContain("expected type f16 for `layer.w_gate` (layer 0), found q8_0");
  });

  it("a file that shrank after opening is a clear error, not zeros", () => {
    const path = join(dir, "shrinks.gguf");
    writeRandomMixtralGguf(path, sizes);
    const layout = expertLayout(manifest, keys);
    const src = FileExpertSource.open(path, manifest, keys);
    const at = src.offsetOf(1, 3, "down");
    truncateSync(path, at + 10);
    expect(() => src.read(1, 3, "down", new Uint8Array(layout.bytes[0]!.down))).toThrow(
      `shrinks.gguf: at byte ${at + 10}: file ended while reading layer 1 expert 3 down (did it shrink after it was opened?)`,
    );
    src.close();
    expect(() => src.read(0, 0, "down", new Uint8Array(layout.bytes[0]!.down))).toThrow(/closed/);
  });
});
