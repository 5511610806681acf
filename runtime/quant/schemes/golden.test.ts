// Byte-exactness against llama.cpp: the SHA-256 (first 16 hex digits) of what ggml's reference quantizers
// (quantize_row_*_ref, GGML_FP32_TO_FP16/BF16) write for the inputs of goldenInputs(), taken from
// ggml-quants.c built with strict IEEE f32 arithmetic (gcc -O2 -ffp-contract=off, x86-64).
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { getScheme } from "../index.ts";
import { goldenInputs } from "../test-support.ts";

const golden: Record<string, Record<string, string>> = {
  f16: {
    gauss: "0f1f28b048278314",
    outliers: "c5f971d4a0150247",
    sparse: "9dd2125618813ac4",
    positive: "1bd911bec8d84386",
  },
  bf16: {
    gauss: "f976d1bda1f29f2e",
    outliers: "6b687eafae008266",
    sparse: "f662aa324fbf6bf2",
    positive: "8f7549f87f129e3c",
  },
  q8_0: {
    gauss: "92d99a876d9676e0",
    outliers: "382ec0ef491745e7",
    sparse: "4b2785ff134809d7",
    positive: "1a27653bfc6fbc35",
  },
  q4_0: {
    gauss: "7dc70751668bfa40",
    outliers: "b8a0a8382eb16d55",
    sparse: "73a1162288034ba3",
    positive: "fc9e130360e084d8",
  },
  q4_1: {
    gauss: "eb57e0aef09bc539",
    outliers: "9271ee03ddf78cbc",
    sparse: "36af3ab5b663a013",
    positive: "38fe5bbcf8a21e7f",
  },
  q5_0: {
    gauss: "a2e22f6985257227",
    outliers: "1eda4b7dfe4755f4",
    sparse: "bef2b46c6af39f98",
    positive: "00da061baebb79ee",
  },
  q5_1: {
    gauss: "e148a5514b63fb24",
    outliers: "163ccc0e56708709",
    sparse: "677a831847b6e39b",
    positive: "e33e3feb88f1c22c",
  },
  q2_k: {
    gauss: "4a874df959c3678f",
    outliers: "6685019de2200b7d",
    sparse: "ef25e057d4e90dd2",
    positive: "9501cca3e4c30ab4",
  },
  q3_k: {
    gauss: "b9f09a1f262d2734",
    outliers: "7be7d082adfd1010",
    sparse: "b511676da46d08dc",
    positive: "274b01eab5581ad0",
  },
  q4_k: {
    gauss: "37ffd86a7ef19d4e",
    outliers: "b3db1ef1c1438996",
    sparse: "1c554c13fb0acfb6",
    positive: "7eb92c874c72491a",
  },
  q5_k: {
    gauss: "4ee60668b9fa835d",
    outliers: "d103b2f392fc076c",
    sparse: "2b2af3758e02d545",
    positive: "2b37ff7dc6eb17c8",
  },
  q6_k: {
    gauss: "17c45fb5a921595b",
    outliers: "48e79e3f582e2d93",
    sparse: "3574fca83d0f874c",
    positive: "500375c6bf39f598",
  },
};

describe("encode matches llama.cpp's reference quantizers byte for byte", () => {
  const inputs = goldenInputs();
  for (const [name, hashes] of Object.entries(golden)) {
    it(name, () => {
      const s = getScheme(name);
      for (const [input, hash] of Object.entries(hashes)) {
        const x = inputs[input]!;
        const q = new Uint8Array((x.length / s.blockSize) * s.blockBytes);
        s.encode(x, q);
        expect(`${input}:${createHash("sha256").update(q).digest("hex").slice(0, 16)}`).toBe(
          `${input}:${hash}`,
        );
      }
    });
  }
});
