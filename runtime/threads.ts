// Worker threads for the WebAssembly kernels. Every worker instantiates the same module over the same
// shared heap, so nothing is copied per call: a matrix-vector product is split by output rows, the main
// thread takes the first share, and the workers take theirs from a small control block. Synchronization
// is Atomics (a generation counter and a pending count), not messages: a kernel call costs a few
// microseconds, and a token makes about ten of them per layer.
import { Worker } from "node:worker_threads";
import type { WasmKernel } from "./model.ts";

// Control block slots (Int32): what the job is, and who still works on it.
export const GENERATION = 0;
export const PENDING = 1;
const KERNEL = 2;
const W = 3;
const X = 4;
const Y = 5;
const ROWS = 6;
const ACCUMULATE = 7;
const ALPHA = 8; // an f32 in the same slot
const FAILED = 9;
const STOP = 10;
const COLS = 11; // matrix-matrix products: the column count, in the place of alpha
const SLOTS = 16;

/** Polls before sleeping in Atomics.wait (about 100–200 µs): long enough to catch the next kernel call
 * across a prefill's serial steps (at 4000 polls a worker slept between them, and on a VM whose cores had
 * been idle a 2-thread prefill ran at 0.6–0.8× its back-to-back speed; at 20000 at 0.95–1×), short enough
 * not to starve the other thread for long when cores are oversubscribed. */
const SPINS = 20000;

/** Rows a kernel's shares come in: 8 for the kernels over interleaved rows (runtime/quant/rows8.ts; `x8` in
 * their names, compiler/codegen/wasm.ts), which take whole groups of 8; 1 for the rest (attention's shares are
 * KV heads, often 2). */
export function rowGranule(name: string): number {
  return name.includes("x8_") ? 8 : 1;
}

/** Where share i of a call's `rows` rows starts: a multiple of `granule`; the last share ends at `rows`. */
export function shareStart(rows: number, i: number, threads: number, granule: number): number {
  return i >= threads ? rows : Math.floor((rows * i) / threads / granule) * granule;
}

/** The worker's whole program: wait for a generation, run its share of the rows, count down. */
const workerSource = `
${shareStart.toString()}
${rowGranule.toString()}
const { workerData } = require("node:worker_threads");
const { memory, module, names, index, threads, control } = workerData;
const c = new Int32Array(control);
const u = new Uint32Array(control);
const f = new Float32Array(control);
const matrix = names.map((n) => n.startsWith("mm"));
const granules = names.map(rowGranule);
let kernels;
try {
  const exports = new WebAssembly.Instance(module, { env: { memory } }).exports;
  kernels = names.map((n) => exports[n]);
} catch (e) {
  Atomics.store(c, ${FAILED}, 1);
  throw e;
}
let seen = 0;
for (;;) {
  // Spin briefly (the next kernel call usually follows within microseconds), then sleep. Only a new
  // generation is work: a wake-up can come late (the caller notifies after bumping the generation, and may
  // be descheduled in between, while this worker already ran that call and went to sleep).
  let spins = 0;
  let g;
  while ((g = Atomics.load(c, ${GENERATION})) === seen) {
    if (spins++ >= ${SPINS}) Atomics.wait(c, ${GENERATION}, seen);
  }
  seen = g;
  if (Atomics.load(c, ${STOP})) break;
  const rows = u[${ROWS}];
  const k = c[${KERNEL}];
  const r0 = shareStart(rows, index, threads, granules[k]);
  const r1 = shareStart(rows, index + 1, threads, granules[k]);
  if (r1 > r0) kernels[k](u[${W}], u[${X}], u[${Y}], r0, r1, matrix[k] ? c[${COLS}] : f[${ALPHA}], c[${ACCUMULATE}]);
  if (Atomics.sub(c, ${PENDING}, 1) === 1) Atomics.notify(c, ${PENDING});
}
`;

/** How long the main thread waits for a share before it calls the pool broken (never a silent hang). */
const STALL_MS = 60_000;

export class ThreadPool {
  private readonly workers: Worker[];
  /** The control block (slots above); tests read it. */
  readonly c: Int32Array;
  private readonly u: Uint32Array;
  private readonly f: Float32Array;
  private readonly names: string[];

  constructor(
    readonly threads: number,
    memory: WebAssembly.Memory,
    module: WebAssembly.Module,
    exportNames: string[],
  ) {
    // Only matrix-vector products (mv_*, and mvq_*, mvqk_* over quantized x) and the prefill's matrix-matrix
    // products (mm_*, mmq_*, mmqk_*) split by rows; the other kernels run on the calling thread (the
    // quantizers qx_*, qxk_* among them). A row's result never depends on the split.
    this.names = exportNames.filter((n) => n.startsWith("mv") || n.startsWith("mm"));
    const names = this.names;
    const control = new SharedArrayBuffer(SLOTS * 4);
    this.c = new Int32Array(control);
    this.u = new Uint32Array(control);
    this.f = new Float32Array(control);
    this.workers = Array.from({ length: threads - 1 }, (_, k) => {
      const w = new Worker(workerSource, {
        eval: true,
        workerData: { memory, module, names, index: k + 1, threads, control },
      });
      // A worker blocked in Atomics.wait must not keep the process alive.
      w.unref();
      return w;
    });
  }

  /** The exported kernels, the matrix-vector and matrix-matrix products (`mv*_*`, `mm*_*`: the same seven
   * arguments, the sixth alpha or the column count) split by rows over the pool. */
  wrap(exports: Record<string, unknown>): Record<string, WasmKernel> {
    const out = { ...exports } as Record<string, WasmKernel>;
    this.names.forEach((name, k) => {
      const kernel = exports[name] as WasmKernel;
      out[name] = (w, x, y, r0, r1, alpha, acc) => this.run(k, kernel, w, x, y, r0, r1, alpha, acc);
    });
    return out;
  }

  private run(
    k: number,
    kernel: WasmKernel,
    w: number,
    x: number,
    y: number,
    r0: number,
    r1: number,
    alpha: number,
    acc: number,
  ): void {
    const c = this.c;
    if (Atomics.load(c, FAILED)) throw new Error("a worker thread failed to start its WebAssembly kernels");
    // Shares are row ranges of the whole call; calls always start at row 0 (the generated code's contract).
    if (r0 !== 0) throw new RangeError(`threaded kernels take whole products (r0 = ${r0})`);
    c[KERNEL] = k;
    this.u[W] = w;
    this.u[X] = x;
    this.u[Y] = y;
    this.u[ROWS] = r1;
    c[ACCUMULATE] = acc;
    this.f[ALPHA] = alpha;
    c[COLS] = alpha;
    Atomics.store(c, PENDING, this.threads - 1);
    Atomics.add(c, GENERATION, 1);
    Atomics.notify(c, GENERATION);
    const mine = shareStart(r1, 1, this.threads, rowGranule(this.names[k]!));
    if (mine > 0) kernel(w, x, y, 0, mine, alpha, acc);
    let spins = 0;
    const start = Date.now();
    for (;;) {
      const pending = Atomics.load(c, PENDING);
      if (pending === 0) return;
      if (spins++ < SPINS) continue;
      Atomics.wait(c, PENDING, pending, 100);
      if (Atomics.load(c, FAILED) || Date.now() - start > STALL_MS) {
        throw new Error(`worker threads did not finish a kernel within ${STALL_MS / 1000} s`);
      }
    }
  }

  close(): void {
    Atomics.store(this.c, STOP, 1);
    Atomics.add(this.c, GENERATION, 1);
    Atomics.notify(this.c, GENERATION);
    for (const w of this.workers) void w.terminate();
  }
}
