// Shared by the checkpoint tests: the quantization schemes they need, and scratch files.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { findScheme, registerScheme, schemeByGgmlType } from "../quant/registry.ts";
import type { QuantScheme } from "../quant/scheme.ts";

/**
 * Loads the built-in schemes (runtime/quant/index.ts) when they exist. Until then, registers
 * stand-ins that carry only the layout of the few GGUF types these tests use; they cannot encode.
 */
export async function ensureSchemes(): Promise<void> {
  const index = fileURLToPath(new URL("../quant/index.ts", import.meta.url));
  if (existsSync(index)) await import(/* @vite-ignore */ index);
  const standIns: [string, number, number, number][] = [
    // name, ggml type, blockSize, blockBytes: ggml's own layouts, only used while builtins are missing
    ["f32", 0, 1, 4],
    ["f16", 1, 1, 2],
    ["q4_0", 2, 32, 18],
    ["q8_0", 8, 32, 34],
    ["q4_k", 12, 256, 144],
  ];
  for (const [name, ggmlType, blockSize, blockBytes] of standIns) {
    if (findScheme(name) || schemeByGgmlType(ggmlType)) continue;
    const s: QuantScheme = {
      name,
      ggmlType,
      blockSize,
      blockBytes,
      description: `${name} (layout-only stand-in for tests)`,
      encode() {
        throw new Error("stand-in scheme cannot encode");
      },
      decode() {
        throw new Error("stand-in scheme cannot decode");
      },
      cpu: { dot: "" },
    };
    registerScheme(s);
  }
}

/** A fresh scratch directory; call the returned function to remove it. */
export function scratchDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "moec-ckpt-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Deterministic bytes for tensor data. */
export function patternBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
