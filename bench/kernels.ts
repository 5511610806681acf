// One matrix-matrix integer kernel alone: GMAC/s of a scheme's prefill product over 1792 rows and 16 columns
// of activations, row-major or 8 rows interleaved (runtime/quant/rows8.ts), in the relaxed-SIMD and the plain
// build, best of 30 rounds. For A/B comparisons of a kernel's code in one process (`npx tsx bench/kernels.ts
// q5_0 q5_0:x8 q4_k:1792 q4_0:x8:512:c2`: scheme, `x8` for the interleaved layout, the row's width, 640 by
// default, `cN` for N columns, as a batched decoding step gives an expert). A benchmark: it reports.
import { pathToFileURL } from "node:url";
import { WasmKernels } from "../compiler/codegen/wasm.ts";
import { instantiate, q8Region } from "../compiler/codegen/wasm-instance.ts";
import { f16Table, getScheme } from "../runtime/quant/index.ts";
import { interleaveRows8 } from "../runtime/quant/rows8.ts";
import { gaussian } from "../runtime/quant/test-support.ts";

const ROWS = 1792;

/** GMAC/s of `spec`'s matrix-matrix kernel (`scheme[:x8][:cols][:cN]`) in each build. */
export function benchKernel(spec: string): { relaxed: number; plain: number } {
  const parts = spec.split(":");
  const s = getScheme(parts[0]!);
  const x8 = parts.includes("x8");
  const cols = Number(parts.find((p) => /^\d+$/.test(p)) ?? 640);
  const COLUMNS = Number(parts.find((p) => /^c\d+$/.test(p))?.slice(1) ?? 16);
  const kernels = new WasmKernels();
  const q = kernels.matmulQ8(s.name, cols, x8);
  if (!q) throw new Error(`${spec}: no integer matrix-matrix kernel`);
  const rowBytes = (cols / s.blockSize) * s.blockBytes;
  const w = new Uint8Array(ROWS * rowBytes);
  s.encode(gaussian(ROWS * cols, 3, 0.05), w);
  // Memory: the f16 table, the weights, the f32 activations, their q8 blocks, the outputs, the lists.
  const wAt = f16Table.byteLength + 4;
  const xAt = Math.ceil((wAt + w.length) / 64) * 64;
  const xqAt = xAt + COLUMNS * cols * 4;
  const yAt = xqAt + COLUMNS * q.qBytes;
  const lAt = yAt + COLUMNS * ROWS * 4;
  const qAt = Math.ceil((lAt + 8 * COLUMNS) / 64) * 64;
  const pages = Math.ceil((qAt + q8Region(kernels)) / 65536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const u8 = new Uint8Array(memory.buffer);
  new Float32Array(memory.buffer).set(f16Table, 0);
  u8.set(w, wAt);
  if (x8) interleaveRows8(s.wasm!.rows8!, u8, wAt, ROWS, rowBytes, s.blockBytes);
  new Float32Array(memory.buffer, xAt, COLUMNS * cols).set(gaussian(COLUMNS * cols, 6));
  const rate = (relaxed: boolean) => {
    const ex = instantiate(kernels, memory, relaxed, qAt);
    const lists = new Int32Array(memory.buffer, lAt, 2 * COLUMNS);
    for (let j = 0; j < COLUMNS; j++)
      [lists[j], lists[COLUMNS + j]] = [xAt + 4 * cols * j, xqAt + q.qBytes * j];
    ex[q.qx]!(lAt, lAt + 4 * COLUMNS, COLUMNS, 0, 0, 0, 0);
    for (let j = 0; j < COLUMNS; j++)
      [lists[j], lists[COLUMNS + j]] = [xqAt + q.qBytes * j, yAt + 4 * ROWS * j];
    // Warm-up: V8 tiers a kernel up only once it is hot (the first spec timed ran at half speed without).
    for (let k = 0; k < 20; k++) ex[q.mm]!(wAt, lAt, lAt + 4 * COLUMNS, 0, ROWS, COLUMNS, 0);
    let best = 0;
    for (let r = 0; r < 30; r++) {
      const t = performance.now();
      for (let k = 0; k < 5; k++) ex[q.mm]!(wAt, lAt, lAt + 4 * COLUMNS, 0, ROWS, COLUMNS, 0);
      best = Math.max(best, (5 * ROWS * cols * COLUMNS) / ((performance.now() - t) / 1000) / 1e9);
    }
    return best;
  };
  return { relaxed: rate(true), plain: rate(false) };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  for (const spec of process.argv.slice(2)) {
    const { relaxed, plain } = benchKernel(spec);
    console.log(`${spec}: ${relaxed.toFixed(1)} GMAC/s relaxed, ${plain.toFixed(1)} plain`);
  }
}
