// The webgpu backend: the Backend interface (backend.ts) over WebGPU through dawn.node (the `webgpu`
// package). Buffers are storage buffers of u32 words (weights stay packed), kernels are WGSL compiled once
// per kernel name and specialized per call site with pipeline-overridable constants; every dispatch of a
// token goes into one command encoder, submitted only when the host must read something back (a MoE
// layer's picks, the logits). On a machine without a GPU, Mesa's lavapipe is a real Vulkan device.
/// <reference types="@webgpu/types" />
import {
  type Access,
  type Backend,
  type BackendLimits,
  type BufferUse,
  type GpuBuffer,
  GpuError,
  type Pipeline,
} from "./backend.ts";
import { registerBackend } from "./model.ts";

const NAME = "webgpu";

interface WBuffer extends GpuBuffer {
  gpu: GPUBuffer;
}

interface WPipeline extends Pipeline {
  id: number;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

const SUGGEST = "run with --backend cpu instead";

let instance: Promise<GPU> | undefined;

/** dawn.node's GPU, made once per process (a second instance in one process runs far slower) and held,
 * since dawn.node tears its instance down when the object is collected. */
function gpuApi(): Promise<GPU> {
  instance ??= loadGpu();
  return instance;
}

/** Loads dawn.node and puts WebGPU's constants (GPUBufferUsage, …) on globalThis. */
async function loadGpu(): Promise<GPU> {
  let mod: { create(flags: string[]): GPU; globals: Record<string, unknown> };
  try {
    mod = (await import("webgpu")) as typeof mod;
  } catch (e) {
    throw new GpuError(
      NAME,
      `the \`webgpu\` package (dawn.node) does not load here: ${(e as Error).message}; ${SUGGEST}`,
    );
  }
  Object.assign(globalThis, mod.globals);
  return mod.create([]);
}

export class WebGpuBackend implements Backend {
  readonly name = NAME;
  readonly limits: BackendLimits;
  private nextId = 1;
  private encoder: GPUCommandEncoder | undefined;
  private pass: GPUComputePassEncoder | undefined;
  private readonly modules = new Map<string, Promise<GPUShaderModule>>();
  private readonly pipelines = new Map<string, Promise<WPipeline>>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  private readonly groups = new Map<string, GPUBindGroup>();
  private lost: string | undefined;
  private error: string | undefined;

  private constructor(
    /** Held for the device's lifetime: dawn.node tears the instance down when its GPU object is collected. */
    private readonly gpu: GPU,
    private readonly adapter: GPUAdapter,
    private readonly dev: GPUDevice,
    readonly device: string,
    limits: BackendLimits,
    /** The optional features kernels may use (checked to behave as the preludes assume). */
    readonly features: ReadonlySet<string>,
    /** The adapter's smallest subgroup size, given to kernels that enable subgroups as `sg_min`. */
    private readonly subgroupMin: number,
  ) {
    this.limits = limits;
    dev.lost.then((info) => {
      if (info.reason !== "destroyed") this.lost = `${info.reason}: ${info.message}`;
    });
    dev.onuncapturederror = (ev) => {
      this.error ??= (ev as GPUUncapturedErrorEvent).error.message;
    };
  }

  static async create(): Promise<WebGpuBackend> {
    const gpu = await gpuApi();
    const adapter = await gpu.requestAdapter();
    if (!adapter) {
      throw new GpuError(
        NAME,
        `no adapter: navigator.gpu.requestAdapter() found no GPU (without one, Mesa's lavapipe, mesa-vulkan-drivers ≥ 25 with libvulkan1, is a software Vulkan device); ${SUGGEST}`,
      );
    }
    const a = adapter.limits;
    // The binding limit can be lowered (MOEC_WEBGPU_MAX_BINDING=bytes) to exercise the split of large weights.
    const cap = Number(process.env.MOEC_WEBGPU_MAX_BINDING) || Number.POSITIVE_INFINITY;
    const wanted = wantedFeatures();
    const subgroups = adapter.features.has("subgroups") && wanted.has("subgroups");
    const f16 = adapter.features.has("shader-f16") && wanted.has("f16");
    let dev: GPUDevice;
    try {
      dev = await adapter.requestDevice({
        requiredFeatures: [
          ...(subgroups ? (["subgroups"] as const) : []),
          ...(f16 ? (["shader-f16"] as const) : []),
        ],
        requiredLimits: {
          maxStorageBufferBindingSize: a.maxStorageBufferBindingSize,
          maxBufferSize: a.maxBufferSize,
          maxStorageBuffersPerShaderStage: a.maxStorageBuffersPerShaderStage,
          maxComputeWorkgroupStorageSize: a.maxComputeWorkgroupStorageSize,
        },
      });
    } catch (e) {
      throw new GpuError(NAME, `the adapter refused a device: ${(e as Error).message}; ${SUGGEST}`);
    }
    const info = adapter.info as (GPUAdapterInfo & { subgroupMinSize?: number }) | undefined;
    const sgMin = info?.subgroupMinSize ?? 4;
    const features = new Set<string>();
    if (subgroups && (await subgroupsAreRuns(dev, sgMin))) features.add("subgroups");
    if (f16) features.add("f16");
    const name = [info?.vendor, info?.device, info?.description].filter(Boolean).join(" ") || "an adapter";
    const using = features.size ? ` (${[...features].join(", ")})` : "";
    const limits = {
      maxBindingBytes: Math.min(cap, dev.limits.maxStorageBufferBindingSize),
      maxBufferBytes: dev.limits.maxBufferSize,
      maxWorkgroups: dev.limits.maxComputeWorkgroupsPerDimension,
    };
    return new WebGpuBackend(gpu, adapter, dev, name + using, limits, features, sgMin);
  }

  private check(what: string, kernel?: string): void {
    if (this.lost) throw new GpuError(NAME, `the device was lost (${this.lost}) ${what}; ${SUGGEST}`, kernel);
    if (this.error) {
      const e = this.error;
      this.error = undefined;
      throw new GpuError(NAME, `${what}: ${e}`, kernel);
    }
  }

  createBuffer(bytes: number, label: string, use: BufferUse): GpuBuffer {
    this.check(`allocating ${label}`);
    const usage =
      use === "storage"
        ? GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC
        : use === "uniform"
          ? GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST
          : GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST;
    let gpu: GPUBuffer;
    try {
      gpu = this.dev.createBuffer({ size: bytes, usage, label });
    } catch (e) {
      throw new GpuError(NAME, `allocating ${bytes} bytes for ${label}: ${(e as Error).message}`);
    }
    const b: WBuffer = { id: this.nextId++, bytes, label, gpu };
    return b;
  }

  write(buffer: GpuBuffer, offset: number, data: ArrayBufferView): void {
    this.dev.queue.writeBuffer(
      (buffer as WBuffer).gpu,
      offset,
      data.buffer,
      data.byteOffset,
      data.byteLength,
    );
  }

  private module(kernel: string, source: string): Promise<GPUShaderModule> {
    let m = this.modules.get(kernel);
    if (!m) {
      m = (async () => {
        this.dev.pushErrorScope("validation");
        const mod = this.dev.createShaderModule({ code: source, label: kernel });
        const info = await mod.getCompilationInfo();
        const scoped = await this.dev.popErrorScope();
        const errors = info.messages.filter((x) => x.type === "error");
        if (errors.length || scoped) {
          const first = errors[0];
          const where = first
            ? ` at line ${first.lineNum}:${first.linePos}: ${first.message}`
            : `: ${scoped!.message}`;
          throw new GpuError(NAME, `kernel ${kernel} does not compile${where}`, kernel);
        }
        return mod;
      })();
      this.modules.set(kernel, m);
    }
    return m;
  }

  private layout(access: Access[]): GPUBindGroupLayout {
    const key = access.join(",");
    let l = this.layouts.get(key);
    if (!l) {
      l = this.dev.createBindGroupLayout({
        entries: access.map((a, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: a === "uniform" ? "uniform" : a === "write" ? "storage" : "read-only-storage" },
        })),
      });
      this.layouts.set(key, l);
    }
    return l;
  }

  pipeline(
    kernel: string,
    source: string,
    params: Record<string, number>,
    access: Access[],
  ): Promise<Pipeline> {
    const key = `${kernel} ${JSON.stringify(params)}`;
    let p = this.pipelines.get(key);
    if (!p) {
      p = (async () => {
        const module = await this.module(kernel, source);
        const layout = this.layout(access);
        this.dev.pushErrorScope("validation");
        const pipeline = await this.dev
          .createComputePipelineAsync({
            label: kernel,
            layout: this.dev.createPipelineLayout({ bindGroupLayouts: [layout] }),
            compute: { module, entryPoint: "main", constants: this.constants(source, params) },
          })
          .catch((e: Error) => e);
        const scoped = await this.dev.popErrorScope();
        if (pipeline instanceof Error || scoped) {
          const why = pipeline instanceof Error ? pipeline.message : scoped!.message;
          throw new GpuError(NAME, `kernel ${kernel} cannot be made into a pipeline: ${why}`, kernel);
        }
        return { kernel, id: this.nextId++, pipeline, layout };
      })();
      this.pipelines.set(key, p);
    }
    return p;
  }

  /** A kernel's constants, with `sg_min` for one that enables subgroups (the prelude declares it). */
  private constants(source: string, params: Record<string, number>): Record<string, number> {
    return /^enable subgroups;/m.test(source) ? { ...params, sg_min: this.subgroupMin } : params;
  }

  dispatch(p: Pipeline, buffers: GpuBuffer[], grid: readonly [number, number, number]): void {
    const wp = p as WPipeline;
    let key = String(wp.id);
    for (const b of buffers) key += `,${b.id}`;
    let group = this.groups.get(key);
    if (!group) {
      group = this.dev.createBindGroup({
        layout: wp.layout,
        entries: buffers.map((b, binding) => ({ binding, resource: { buffer: (b as WBuffer).gpu } })),
      });
      this.groups.set(key, group);
    }
    if (!this.pass) {
      this.encoder = this.dev.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    this.pass.setPipeline(wp.pipeline);
    this.pass.setBindGroup(0, group);
    this.pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
  }

  async read(
    src: GpuBuffer,
    offset: number,
    bytes: number,
    staging: GpuBuffer,
    into: Uint8Array,
  ): Promise<void> {
    this.pass?.end();
    this.pass = undefined;
    const enc = this.encoder ?? this.dev.createCommandEncoder();
    this.encoder = undefined;
    const st = (staging as WBuffer).gpu;
    enc.copyBufferToBuffer((src as WBuffer).gpu, offset, st, 0, bytes);
    this.dev.queue.submit([enc.finish()]);
    try {
      await st.mapAsync(GPUMapMode.READ, 0, bytes);
    } catch (e) {
      this.check("while reading results back");
      throw new GpuError(NAME, `reading ${bytes} bytes of ${src.label} back failed: ${(e as Error).message}`);
    }
    into.set(new Uint8Array(st.getMappedRange(0, bytes)));
    st.unmap();
    this.check("while running the kernels");
  }

  free(buffer: GpuBuffer): void {
    (buffer as WBuffer).gpu.destroy();
  }

  destroy(): void {
    this.pass?.end();
    this.pass = undefined;
    this.encoder = undefined;
    this.groups.clear();
    this.dev.destroy();
  }
}

/**
 * The optional features to use where the adapter offers them: MOEC_WEBGPU_FEATURES (comma-separated, or
 * "none"), by default `subgroups` (shuffles in the reductions: the same sums, in another order) and `f16`
 * (shader-f16, which a module compiled with an f16 KV cache, the default, needs; an f32 one never uses it).
 */
function wantedFeatures(): Set<string> {
  const v = process.env.MOEC_WEBGPU_FEATURES;
  return new Set(v === undefined ? ["subgroups", "f16"] : v.split(",").filter((f) => f && f !== "none"));
}

/**
 * Whether every subgroup of a 64-invocation workgroup is a run of consecutive invocations, at least
 * `min` long and starting at a multiple of its size, as the subgroup prelude's shuffles assume. WGSL
 * does not promise this layout (drivers lay subgroups out so), so it is checked once on the device.
 */
async function subgroupsAreRuns(dev: GPUDevice, min: number): Promise<boolean> {
  const code = `enable subgroups;
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) sid: u32, @builtin(subgroup_size) size: u32) {
  out[lid] = sid | (size << 16u);
}`;
  const bytes = 64 * 4;
  const out = dev.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const back = dev.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    dev.pushErrorScope("validation");
    const pipeline = dev.createComputePipeline({
      layout: "auto",
      compute: { module: dev.createShaderModule({ code }), entryPoint: "main" },
    });
    const group = dev.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: out } }],
    });
    const enc = dev.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(1);
    pass.end();
    enc.copyBufferToBuffer(out, 0, back, 0, bytes);
    dev.queue.submit([enc.finish()]);
    if (await dev.popErrorScope()) return false;
    await back.mapAsync(GPUMapMode.READ);
    const v = new Uint32Array(back.getMappedRange().slice(0));
    back.unmap();
    return v.every((x, lid) => {
      const size = x >>> 16;
      return size >= min && (size & (size - 1)) === 0 && (x & 0xffff) === lid % size;
    });
  } catch {
    return false;
  } finally {
    out.destroy();
    back.destroy();
  }
}

registerBackend(NAME, () => WebGpuBackend.create());
