// The gpujs backend: the Backend interface (backend.ts) over gpu.js, in its `webgpu` mode (WGSL compute
// through dawn.node, the `webgpu` package giving gpu.js its `navigator.gpu`) or its `webasm` mode
// (WebAssembly SIMD on the CPU). Kernels come from compiler/codegen/gpujs/kernels.ts as JSON specs of
// gpu.js kernel functions (gpujs-spec.ts), each made a gpu.js kernel with `pipeline: true` once per
// call site and specialized with its shapes as gpu.js constants.
//
// gpu.js kernels return a fresh result instead of writing a range of a buffer, so the arena is kept as
// regions, each a gpu.js result (a GPU-resident handle in webgpu mode; a typed array in webasm mode), and
// a step's output becomes the region at its offset: activations stay on the device from kernel to
// kernel. A KV cache is one handle per layer; a kernel that writes it returns the row, which is copied
// into the cache at the position (a device-side buffer copy; a typed-array set in webasm mode). Weights are packed bytes, three to an f32 (gpujs-pack.ts), uploaded once into buffers
// gpu.js binds as pipeline handles; an expert cache slot is rewritten in place on a miss.
import {
  type Access,
  type Backend,
  type BackendLimits,
  type BufferUse,
  type GpuBuffer,
  GpuError,
  type Pipeline,
} from "./backend.ts";
import { MAX_PACKED_BYTES, packBytes, packedWords } from "./gpujs-pack.ts";
import type { GjKernelSpec } from "./gpujs-spec.ts";
import { registerBackend } from "./model.ts";

const NAME = "gpujs";
export type GpuJsMode = "webgpu" | "webasm";
export const GPUJS_MODES: readonly GpuJsMode[] = ["webgpu", "webasm"];

let chosen: GpuJsMode | undefined;
/** The gpu.js mode the next gpujs backend uses (`moec run --gpujs-mode`); default MOEC_GPUJS_MODE or webgpu. */
export function setGpuJsMode(mode: GpuJsMode | undefined): void {
  chosen = mode;
}
export function gpuJsMode(): GpuJsMode {
  const m = chosen ?? (process.env.MOEC_GPUJS_MODE as GpuJsMode | undefined) ?? "webgpu";
  if (!GPUJS_MODES.includes(m)) {
    throw new GpuError(NAME, `unknown gpu.js mode \`${m}\` (known: ${GPUJS_MODES.join(", ")})`);
  }
  return m;
}

const suggest = (mode: GpuJsMode) =>
  mode === "webgpu"
    ? "run with --backend cpu instead (or gpu.js's CPU mode: --backend gpujs with MOEC_GPUJS_MODE=webasm)"
    : "run with --backend cpu instead";

// The parts of gpu.js this file uses (its own typings predate the webgpu mode).
interface GjDevice {
  createBuffer(d: { size: number; usage: number; mappedAtCreation?: boolean }): GjGpuBuffer;
  queue: {
    writeBuffer(
      b: GjGpuBuffer,
      offset: number,
      data: ArrayBufferLike,
      dataOffset?: number,
      size?: number,
    ): void;
    submit(c: unknown[]): void;
  };
  createCommandEncoder(): {
    copyBufferToBuffer(a: GjGpuBuffer, ao: number, b: GjGpuBuffer, bo: number, n: number): void;
    finish(): unknown;
  };
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number };
}
interface GjGpuBuffer {
  size: number;
  destroy(): void;
  mapAsync(mode: number, offset: number, size: number): Promise<void>;
  getMappedRange(offset: number, size: number): ArrayBuffer;
  unmap(): void;
  _refs?: number;
}
interface GjContext {
  adapter: { info?: { vendor?: string; device?: string; description?: string } };
  device: GjDevice;
  isLost: boolean;
}
interface GjHandle {
  buffer: GjGpuBuffer;
  output: number[];
  delete(): void;
}
type Handle = GjHandle | Float32Array;
interface GjKernel {
  (...args: unknown[]): unknown;
  kernel?: { outputBuffer?: GjGpuBuffer };
  destroy?(): void;
}
interface GjGpu {
  createKernel(fn: string, settings: Record<string, unknown>): GjKernel;
  destroy(): unknown;
}
interface GpuJsModule {
  GPU: {
    new (s: { mode: string }): GjGpu;
    isWebGPUAvailable(): Promise<boolean>;
    isWebAssemblySupported: boolean;
  };
  WebGPUBufferResult: new (s: Record<string, unknown>) => GjHandle;
  WebGPUContext: { acquire(): Promise<GjContext>; destroy(): Promise<void> };
}

/** Gives gpu.js `navigator.gpu` from the `webgpu` package (dawn.node) and WebGPU's constants. */
async function provideNavigatorGpu(): Promise<void> {
  let mod: { create(flags: string[]): unknown; globals: Record<string, unknown> };
  try {
    mod = (await import("webgpu")) as typeof mod;
  } catch (e) {
    throw new GpuError(
      NAME,
      `gpu.js's webgpu mode needs the \`webgpu\` package (dawn.node), which does not load here: ${(e as Error).message}; ${suggest("webgpu")}`,
    );
  }
  Object.assign(globalThis, mod.globals);
  const nav = (globalThis as { navigator?: { gpu?: unknown } }).navigator;
  if (nav?.gpu) return;
  // Node 21+ has a `navigator` getter on globalThis: replace it rather than assign through it.
  Object.defineProperty(globalThis, "navigator", {
    value: { ...(nav ?? {}), gpu: mod.create([]) },
    configurable: true,
    writable: true,
  });
}

async function loadGpuJs(): Promise<GpuJsModule> {
  const m = (await import("gpu.js")) as unknown as GpuJsModule & { default?: GpuJsModule };
  return m.GPU ? m : m.default!;
}

const STORAGE = 0x80;
const COPY_SRC = 0x04;
const COPY_DST = 0x08;
const MAP_READ = 0x01;

interface Region {
  start: number;
  len: number;
  h: Handle;
}

interface GjBuffer extends GpuBuffer {
  kind: "packed" | "f32" | "arena" | "frame" | "readback";
  h?: Handle;
  floats: number;
  regions?: Region[];
  frame?: Uint32Array;
}

interface GjPipeline extends Pipeline {
  spec: GjKernelSpec;
  params: Record<string, number>;
  /** gpu.js kernels per part, made at load in webgpu mode, on first use in webasm mode. */
  parts: (GjKernel | undefined)[];
}

export class GpuJsBackend implements Backend {
  readonly name = NAME;
  readonly limits: BackendLimits;
  private nextId = 1;
  private chain: Promise<void> = Promise.resolve();
  private readonly specs = new Map<string, GjKernelSpec>();
  private readonly pipes = new Map<string, GjPipeline>();
  private readonly clones = new Map<number, GjKernel>();
  /** Bytes gpu.js itself writes per dispatch (its parameter block: argument sizes and scalars). */
  paramBytes = 0;
  dispatches = 0;
  /** Floats copied into KV caches (a row per write). */
  kvFloats = 0;
  private staging: GjGpuBuffer | undefined;

  private constructor(
    readonly mode: GpuJsMode,
    private readonly lib: GpuJsModule,
    private readonly gpu: GjGpu,
    private readonly ctx: GjContext | undefined,
    readonly device: string,
  ) {
    const dev = ctx?.device.limits;
    // Packed byte offsets are computed in f32 inside the kernels: exact up to 2^24.
    const words = dev
      ? Math.floor(Math.min(dev.maxStorageBufferBindingSize, dev.maxBufferSize) / 4)
      : 2 ** 30;
    // MOEC_GPUJS_MAX_BINDING=bytes lowers it, to exercise the split of large weights by rows.
    const cap = Number(process.env.MOEC_GPUJS_MAX_BINDING) || Number.POSITIVE_INFINITY;
    const packed = Math.min(MAX_PACKED_BYTES, words * 3, cap);
    this.limits = { maxBindingBytes: packed, maxBufferBytes: packed, maxWorkgroups: 65535 };
  }

  static async create(mode: GpuJsMode = gpuJsMode()): Promise<GpuJsBackend> {
    if (mode === "webgpu") await provideNavigatorGpu();
    let lib: GpuJsModule;
    try {
      lib = await loadGpuJs();
    } catch (e) {
      throw new GpuError(NAME, `the gpu.js package does not load: ${(e as Error).message}; ${suggest(mode)}`);
    }
    if (mode === "webasm") {
      if (!lib.GPU.isWebAssemblySupported)
        throw new GpuError(NAME, `gpu.js's webasm mode: WebAssembly is not supported here; ${suggest(mode)}`);
      return new GpuJsBackend(
        mode,
        lib,
        new lib.GPU({ mode: "webasm" }),
        undefined,
        "gpu.js webasm (WebAssembly SIMD on the CPU)",
      );
    }
    if (!(await lib.GPU.isWebGPUAvailable().catch(() => false))) {
      throw new GpuError(
        NAME,
        `gpu.js's webgpu mode: no WebGPU adapter (navigator.gpu.requestAdapter() found no GPU; without one, Mesa's lavapipe, mesa-vulkan-drivers ≥ 25 with libvulkan1, is a software Vulkan device); ${suggest(mode)}`,
      );
    }
    let ctx: GjContext;
    try {
      ctx = await lib.WebGPUContext.acquire();
    } catch (e) {
      throw new GpuError(
        NAME,
        `gpu.js's webgpu mode: the adapter gave no device: ${(e as Error).message}; ${suggest(mode)}`,
      );
    }
    const info = ctx.adapter.info;
    const name = [info?.vendor, info?.device, info?.description].filter(Boolean).join(" ") || "an adapter";
    return new GpuJsBackend(mode, lib, new lib.GPU({ mode: "webgpu" }), ctx, `gpu.js webgpu on ${name}`);
  }

  private fail(what: string, kernel?: string): never {
    throw new GpuError(NAME, `${what} (gpu.js ${this.mode} mode); ${suggest(this.mode)}`, kernel);
  }

  /** A zero-filled handle of `floats` floats, or one holding `data`. */
  private handle(floats: number, data?: Float32Array): Handle {
    if (!this.ctx) {
      const a = new Float32Array(floats);
      if (data) a.set(data);
      return a;
    }
    if (this.ctx.isLost) this.fail("the device was lost");
    const buffer = this.ctx.device.createBuffer({
      size: Math.max(16, floats * 4),
      usage: STORAGE | COPY_SRC | COPY_DST,
    });
    if (data) this.ctx.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    return new this.lib.WebGPUBufferResult({
      buffer,
      output: [floats],
      componentCount: 1,
      context: this.ctx,
      kernel: null,
    });
  }

  createBuffer(bytes: number, label: string, use: BufferUse): GpuBuffer {
    const base = { id: this.nextId++, bytes, label };
    if (use === "uniform")
      return { ...base, kind: "frame", floats: 0, frame: new Uint32Array(Math.ceil(bytes / 4)) } as GjBuffer;
    if (use === "readback") return { ...base, kind: "readback", floats: 0 } as GjBuffer;
    if (label === "arena") return { ...base, kind: "arena", floats: bytes / 4, regions: [] } as GjBuffer;
    if (label.startsWith("kv ")) {
      const floats = bytes / 4;
      return { ...base, kind: "f32", floats, h: this.handle(floats) } as GjBuffer;
    }
    if (bytes > MAX_PACKED_BYTES)
      this.fail(
        `${label} needs ${bytes} bytes in one buffer, over the backend's limit of ${MAX_PACKED_BYTES} bytes (byte offsets are f32 in gpu.js kernels)`,
      );
    const floats = packedWords(bytes);
    return { ...base, kind: "packed", floats, h: this.handle(floats) } as GjBuffer;
  }

  write(buffer: GpuBuffer, offset: number, data: ArrayBufferView): void {
    const b = buffer as GjBuffer;
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    switch (b.kind) {
      case "frame":
        new Uint8Array(b.frame!.buffer).set(bytes, offset);
        return;
      case "packed": {
        if (offset % 3 !== 0)
          throw new Error(`gpujs: a packed write at byte ${offset} of ${b.label}, not a multiple of 3`);
        const words = packBytes(bytes);
        this.writeFloats(b.h!, offset / 3, words);
        return;
      }
      case "f32":
        this.writeFloats(b.h!, offset / 4, new Float32Array(bytes.slice().buffer));
        return;
      case "arena": {
        const floats = new Float32Array(bytes.slice().buffer);
        this.setRegion(b, offset / 4, floats.length, this.handle(floats.length, floats));
        return;
      }
      default:
        throw new Error(`gpujs: cannot write to ${b.label}`);
    }
  }

  private writeFloats(h: Handle, at: number, data: Float32Array): void {
    if (h instanceof Float32Array) h.set(data, at);
    else this.ctx!.device.queue.writeBuffer(h.buffer, at * 4, data.buffer, data.byteOffset, data.byteLength);
  }

  private setRegion(arena: GjBuffer, start: number, len: number, h: Handle): void {
    const rs = arena.regions!;
    for (let i = rs.length - 1; i >= 0; i--) {
      const r = rs[i]!;
      if (r.start < start + len && start < r.start + r.len) rs.splice(i, 1);
    }
    rs.push({ start, len, h });
  }

  private readonly zeroHandles = new Map<number, Handle>();
  private zeros(floats: number): Handle {
    let h = this.zeroHandles.get(floats);
    if (!h) this.zeroHandles.set(floats, (h = this.handle(floats)));
    return h;
  }

  private regionOrUndefined(
    arena: GjBuffer,
    at: number,
    len: number,
  ): { h: Handle; rel: number } | undefined {
    for (const r of arena.regions!) {
      if (r.start <= at && at + len <= r.start + r.len) return { h: r.h, rel: at - r.start };
    }
    return undefined;
  }

  private region(arena: GjBuffer, at: number, len: number, kernel: string): { h: Handle; rel: number } {
    const r = this.regionOrUndefined(arena, at, len);
    if (r) return r;
    throw new GpuError(
      NAME,
      `kernel ${kernel} reads arena floats ${at}..${at + len}, which no earlier kernel wrote whole`,
      kernel,
    );
  }

  async pipeline(
    kernel: string,
    source: string,
    params: Record<string, number>,
    _access: Access[],
  ): Promise<Pipeline> {
    const spec0 = this.specs.get(kernel);
    // Every row-parallel kernel (embed, linear, gate_up) takes a weight split by rows; another one cannot.
    if ((params.r0 ?? 0) !== 0 && spec0 && !spec0.chunked) {
      this.fail(
        `kernel ${kernel} reads a weight split into several buffers under the backend's limit of ${this.limits.maxBindingBytes} bytes per buffer, but it is not one that runs per chunk of rows`,
        kernel,
      );
    }
    const key = `${kernel} ${JSON.stringify(params)}`;
    let p = this.pipes.get(key);
    if (!p) {
      let spec = this.specs.get(kernel);
      if (!spec) {
        try {
          spec = JSON.parse(source) as GjKernelSpec;
        } catch {
          this.fail(
            `kernel ${kernel} is not a gpujs kernel (was the model compiled with --backend gpujs?)`,
            kernel,
          );
        }
        this.specs.set(kernel, spec);
        if ((params.r0 ?? 0) !== 0 && !spec.chunked) return this.pipeline(kernel, source, params, _access);
      }
      p = { kernel, spec, params, parts: spec.parts.map(() => undefined) };
      this.pipes.set(key, p);
      if (this.ctx) await this.warm(p);
    }
    return p;
  }

  /**
   * Builds a call site's kernels now (webgpu mode), so a kernel that does not compile fails at load: one run
   * over small zero buffers, whose output nothing reads. In webasm mode they are built on first use, where
   * a run needs arrays of the real sizes.
   */
  private async warm(p: GjPipeline): Promise<void> {
    const z = this.zeros(4);
    for (let i = 0; i < p.spec.parts.length; i++) {
      const part = p.spec.parts[i]!;
      const k = this.make(p, i, part.output);
      const args = part.args.flatMap((a) =>
        "arena" in a || "prev" in a ? [z, 0] : "frame" in a || "param" in a ? [0] : [z],
      );
      try {
        await k(...args);
      } catch (e) {
        this.fail(`kernel ${p.kernel} (part ${i}) does not compile: ${firstLine(e)}`, p.kernel);
      }
    }
  }

  private make(p: GjPipeline, i: number, output: number): GjKernel {
    let k = p.parts[i];
    if (k) return k;
    const part = p.spec.parts[i]!;
    try {
      k = this.gpu.createKernel(part.fn, {
        output: [output],
        constants: part.constants,
        pipeline: true,
        dynamicArguments: true,
        loopMaxIterations: 1 << 20,
        tactic: "precision",
        precision: "single",
      });
    } catch (e) {
      this.fail(`kernel ${p.kernel} (part ${i}) does not compile: ${firstLine(e)}`, p.kernel);
    }
    p.parts[i] = k;
    return k;
  }

  /** A copy of a handle (a kernel may not read its own output buffer). */
  private async clone(h: GjHandle): Promise<Handle> {
    const n = h.output[0]!;
    let k = this.clones.get(n);
    if (!k) {
      k = this.gpu.createKernel("function (a) {\nreturn a[this.thread.x];\n}", {
        output: [n],
        pipeline: true,
        immutable: true,
      });
      this.clones.set(n, k);
    }
    return (await k(h)) as Handle;
  }

  dispatch(p: Pipeline, buffers: GpuBuffer[], _grid: readonly [number, number, number]): void {
    const bufs = buffers.slice() as GjBuffer[];
    this.chain = this.chain.then(() => this.exec(p as GjPipeline, bufs));
  }

  private async exec(p: GjPipeline, bufs: GjBuffer[]): Promise<void> {
    const arena = bufs[0]!;
    const frame = bufs[1]!.frame!;
    const binds = bufs.slice(2);
    const outs: Handle[] = [];
    const { spec, params, kernel } = p;
    for (let i = 0; i < spec.parts.length; i++) {
      const part = spec.parts[i]!;
      const k = this.make(p, i, part.output);
      const args: unknown[] = [];
      for (const a of part.args) {
        if ("arena" in a) {
          const at = params[a.arena];
          if (at === undefined) throw new Error(`kernel ${kernel}: no param ${a.arena}`);
          const r = this.region(arena, at, a.len, kernel);
          args.push(r.h, r.rel);
        } else if ("bind" in a) args.push(binds[a.bind]!.h);
        else if ("part" in a) args.push(outs[a.part]);
        else if ("param" in a) args.push(params[a.param] ?? 0);
        else if ("prev" in a) {
          // The first chunk (or an unsplit weight) reads none of it: zeros, never the kernel's own output.
          const at = "arena" in spec.out ? params[spec.out.arena]! : 0;
          const r = (params.r0 ?? 0) === 0 ? undefined : this.regionOrUndefined(arena, at, a.prev);
          args.push(r ? r.h : this.zeros(a.prev), r ? r.rel : 0);
        } else args.push(frame[a.frame === "token" ? 0 : 1]);
      }
      if (this.ctx) {
        const own = k.kernel?.outputBuffer;
        for (let j = 0; j < args.length; j++) {
          const h = args[j] as GjHandle;
          if (own && h && typeof h === "object" && "buffer" in h && h.buffer === own)
            args[j] = await this.clone(h);
        }
      }
      let r: Handle;
      try {
        r = (await k(...args)) as Handle;
      } catch (e) {
        this.fail(`kernel ${kernel} (part ${i}) failed: ${firstLine(e)}`, kernel);
      }
      this.dispatches++;
      const layout = (k.kernel as { paramsLayout?: { byteLength: number } } | undefined)?.paramsLayout;
      if (layout) this.paramBytes += layout.byteLength;
      outs.push(r);
    }
    const result = outs[outs.length - 1]!;
    if ("arena" in spec.out) {
      this.setRegion(arena, params[spec.out.arena]!, spec.out.len, result);
    } else {
      this.writeRow(binds[spec.out.row]!, frame[1]!, result, spec.parts[spec.parts.length - 1]!.output);
    }
  }

  /** Copies a kernel's result (one row of `n` floats) into row `pos` of a KV cache: O(row) per write. The
   * copy is queued after the kernel's dispatch, so it reads the finished row, and before any later kernel. */
  private writeRow(b: GjBuffer, pos: number, row: Handle, n: number): void {
    const at = pos * n;
    if (at + n > b.floats) throw new Error(`gpujs: row ${pos} is outside ${b.label}`);
    this.kvFloats += n;
    const h = b.h!;
    if (h instanceof Float32Array) {
      h.set((row as Float32Array).subarray(0, n), at);
      return;
    }
    const ctx = this.ctx!;
    if (ctx.isLost) this.fail("the device was lost");
    const enc = ctx.device.createCommandEncoder();
    enc.copyBufferToBuffer((row as GjHandle).buffer, 0, h.buffer, at * 4, n * 4);
    ctx.device.queue.submit([enc.finish()]);
  }

  async read(
    src: GpuBuffer,
    offset: number,
    bytes: number,
    _staging: GpuBuffer,
    into: Uint8Array,
  ): Promise<void> {
    await this.chain;
    const b = src as GjBuffer;
    if (b.kind !== "arena") throw new Error(`gpujs: reads come from the arena, not ${b.label}`);
    const { h, rel } = this.region(b, offset / 4, bytes / 4, "readback");
    if (h instanceof Float32Array) {
      into.set(new Uint8Array(h.buffer, h.byteOffset + rel * 4, bytes));
      return;
    }
    const ctx = this.ctx!;
    if (ctx.isLost) this.fail("the device was lost while reading results back");
    const size = Math.ceil(bytes / 4) * 4;
    if (!this.staging || this.staging.size < size) {
      this.staging?.destroy();
      this.staging = ctx.device.createBuffer({ size: Math.max(256, size), usage: MAP_READ | COPY_DST });
    }
    const enc = ctx.device.createCommandEncoder();
    enc.copyBufferToBuffer(h.buffer, rel * 4, this.staging, 0, size);
    ctx.device.queue.submit([enc.finish()]);
    try {
      await this.staging.mapAsync(MAP_READ, 0, size);
    } catch (e) {
      this.fail(`reading ${bytes} bytes back failed: ${firstLine(e)}`);
    }
    into.set(new Uint8Array(this.staging.getMappedRange(0, size), 0, bytes));
    this.staging.unmap();
  }

  free(buffer: GpuBuffer): void {
    const b = buffer as GjBuffer;
    const all = [b.h, ...(b.regions ?? []).map((r) => r.h)];
    for (const h of all) if (h && !(h instanceof Float32Array)) h.delete();
    b.h = undefined;
    if (b.regions) b.regions.length = 0;
  }

  destroy(): void {
    this.staging?.destroy();
    this.gpu.destroy();
    // gpu.js shares one device per process: let it go, so the process can exit.
    if (this.ctx) void this.lib.WebGPUContext.destroy();
  }
}

/** The start of a gpu.js error: its message without the generated source it appends. */
function firstLine(e: unknown): string {
  const lines = String((e as Error)?.message ?? e)
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  const end = lines.findIndex((l) => l.startsWith("---"));
  return (end < 0 ? lines : lines.slice(0, end)).slice(0, 3).join(" ");
}

registerBackend(NAME, () => GpuJsBackend.create());
