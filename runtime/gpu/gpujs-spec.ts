// What the gpujs code generator (compiler/codegen/gpujs/kernels.ts) puts in a GpuProgram's kernel source:
// a JSON kernel spec of one or more gpu.js kernel functions ("parts") run in order, the last one's output
// being the step's result. gpu.js kernels write a fresh output per call rather than a range of an existing
// buffer, so the gpujs backend (runtime/gpu/gpujs.ts) keeps the arena as regions, each a gpu.js result
// (a GPU-resident pipeline handle in webgpu mode, a typed array in webasm mode): a step reads the regions
// holding its inputs and its output becomes the region at its `yo`. A kernel that writes a KV cache returns
// only the row, which the backend copies into the cache at the position.

/** One argument of a part's kernel function, in order. */
export type GjArg =
  /** The arena region holding `len` floats from step param `at`: passes the region's array, then the
   * offset of param `at` inside it (a number). */
  | { arena: string; len: number }
  /** The step's binding `bind` (0 = the first after the arena and the frame): a weight, a KV cache, an expert. */
  | { bind: number }
  /** The output of an earlier part of the same kernel. */
  | { part: number }
  /** The token or the position, from the frame. */
  | { frame: "token" | "pos" }
  /** A step param as a number (a weight chunk's first row r0, or r1 past its last). */
  | { param: string }
  /** What the previous chunk of a weight split by rows wrote at the output (`len` floats): its array, then
   * the offset in it; zeros for the first chunk. Rows outside a chunk's r0..r1 come from there. */
  | { prev: number };

export interface GjPart {
  /** A gpu.js kernel function's source: `function (a, b, …) { … return v; }`. */
  fn: string;
  /** Threads (outputs). */
  output: number;
  args: GjArg[];
  /** gpu.js constants: the shapes the function reads as `this.constants.*`. */
  constants: Record<string, number>;
}

export interface GjKernelSpec {
  parts: GjPart[];
  /** Whether the kernel takes a weight split by rows (one dispatch per chunk with params r0, r1). */
  chunked?: boolean;
  /** Where the last part's output goes: the arena region at step param `arena`, or row `pos` (the frame's
   * position) of binding `row`, a KV cache, which the backend copies it into: O(row) per token. */
  out: { arena: string; len: number } | { row: number };
}
