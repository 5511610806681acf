// Peak resident memory of moec running the bench model, against what the model needs (the heap: weights,
// KV cache, arena and scratch, laid out once). Measured in a child process that loads a compiled
// directory with the runtime alone, so neither the compiler nor llama.cpp is in the figure.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { table as newTable } from "../cli/color.ts";
import { compileForGguf } from "../cli/model-source.ts";
import { writeDirAtomic } from "../runtime/atomic.ts";
import { openGguf } from "../runtime/checkpoint/gguf-read.ts";

const MiB = 2 ** 20;

export function benchMemory(files: { type: string; path: string }[], context: number): void {
  const table = newTable({
    head: ["type", "heap MiB", "peak RSS MiB", "(RSS − baseline) / heap"],
    style: { head: [] },
  });
  const child = (...args: string[]) => {
    const out = execFileSync(process.execPath, ["--import", "tsx", "bench/rss-child.ts", ...args], {
      encoding: "utf8",
    });
    return JSON.parse(out.trim().split("\n").at(-1)!) as { heap_bytes: number; max_rss_bytes: number };
  };
  const baseline = child("--baseline").max_rss_bytes;
  const dir = mkdtempSync(join(tmpdir(), "moec-rss-"));
  try {
    for (const { type, path } of files) {
      const file = openGguf(path);
      try {
        writeDirAtomic(dir, compileForGguf(undefined, file, path, context).compiled.files);
      } finally {
        file.close();
      }
      const r = child(dir, path, "2");
      table.push([
        type,
        (r.heap_bytes / MiB).toFixed(1),
        (r.max_rss_bytes / MiB).toFixed(1),
        `${((r.max_rss_bytes - baseline) / r.heap_bytes).toFixed(2)}×`,
      ]);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(
    `peak resident memory of a process running the bench model (context ${context}, 2 threads, 16 tokens), ` +
      "against its heap (weights + KV cache + arena + kernel scratch); baseline: the same process with " +
      `the runtime imported and no model, ${(baseline / MiB).toFixed(1)} MiB`,
  );
  console.log(table.toString());
}
