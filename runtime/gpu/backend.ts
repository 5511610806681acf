// The one interface a GPU backend implements (webgpu here, gpujs beside it), and the device memory layer
// over it that the placement (runtime/gpu/place.ts) and the forward pass (runtime/gpu/forward.ts) use:
// every device allocation goes through the memory accountant (runtime/memory/accountant.ts), and every
// byte uploaded after load is counted, so tests can check that a decoded token uploads at most its
// activations plus the experts that missed the cache. The planner and the forward pass never know which
// backend they drive.
import { Accountant } from "../memory/accountant.ts";

/** A device buffer; what lies behind it is the backend's. */
export interface GpuBuffer {
  readonly id: number;
  readonly bytes: number;
  readonly label: string;
}

/** How a kernel sees a buffer: the arena and KV caches are written, weights only read, the frame is uniform. */
export type Access = "read" | "write" | "uniform";

/** What `createBuffer` makes: storage (kernels bind it), uniform (the frame), readback (mapped by the host). */
export type BufferUse = "storage" | "uniform" | "readback";

/** A kernel specialized with its constants, ready to dispatch; opaque to everything but its backend. */
export interface Pipeline {
  readonly kernel: string;
}

export interface BackendLimits {
  /** The most bytes one binding may cover (WebGPU's maxStorageBufferBindingSize): larger weights are split. */
  maxBindingBytes: number;
  /** The most bytes one buffer may hold. */
  maxBufferBytes: number;
  /** Workgroups per grid dimension. */
  maxWorkgroups: number;
}

export interface Backend {
  /** "webgpu", "gpujs": named in every error. */
  readonly name: string;
  /** The adapter, in words ("llvmpipe: Mesa 25…"). */
  readonly device: string;
  readonly limits: BackendLimits;
  /** Optional adapter features its kernels may use ("subgroups"), picking a program prelude (program.ts). */
  readonly features?: ReadonlySet<string>;
  /** A raw buffer; callers go through DeviceMemory, which accounts for it. Zero-filled. */
  createBuffer(bytes: number, label: string, use: BufferUse): GpuBuffer;
  /** Copies host bytes into a buffer at a byte offset (a multiple of 4). */
  write(buffer: GpuBuffer, offset: number, data: ArrayBufferView): void;
  /** Compiles `source` (cached by kernel name) and specializes it with `params`; throws GpuError naming the
   * kernel when it does not compile. `access` gives each binding's use, in binding order. */
  pipeline(
    kernel: string,
    source: string,
    params: Record<string, number>,
    access: Access[],
  ): Promise<Pipeline>;
  /** Records one dispatch (run in order with everything recorded before it). */
  dispatch(p: Pipeline, buffers: GpuBuffer[], grid: readonly [number, number, number]): void;
  /** Runs everything recorded so far, then copies `bytes` from `src` at `offset` into `into` (through the
   * readback buffer `staging`). */
  read(src: GpuBuffer, offset: number, bytes: number, staging: GpuBuffer, into: Uint8Array): Promise<void>;
  free(buffer: GpuBuffer): void;
  /** Frees the device. After this, nothing else may be called. */
  destroy(): void;
}

/**
 * A GPU backend that cannot run: no adapter, a lost device, a kernel that does not compile, a buffer over
 * the adapter's limits. Its message names the backend, the kernel and the limit; `moec run` prints it and
 * suggests `--backend cpu` (never falling back by itself).
 */
export class GpuError extends Error {
  override readonly name = "GpuError";
  readonly exitCode = 3;
  constructor(
    readonly backend: string,
    what: string,
    readonly kernel?: string,
  ) {
    super(`${backend} backend: ${what}`);
  }
}

/** Device memory through the accountant, and the upload counter. */
export class DeviceMemory {
  readonly acct: Accountant;
  /** Bytes copied host → device after load (activations, expert cache misses), and per category. */
  uploaded = 0;
  readonly uploadedBy: Record<string, number> = {};
  /** Whether loading is over: uploads before it are the weights, counted apart. */
  loaded = false;
  loadBytes = 0;
  private readonly buffers = new Set<GpuBuffer>();

  constructor(
    readonly backend: Backend,
    budget: number,
  ) {
    this.acct = new Accountant(budget);
  }

  /** A buffer of `bytes` for `label`, accounted under `category` ("weights", "kv", "arena", …). */
  allocate(bytes: number, label: string, category: string, use: BufferUse = "storage"): GpuBuffer {
    this.acct.alloc(category, bytes);
    return this.materialize(bytes, label, use);
  }

  /**
   * A buffer for (a part of) a region the accountant already holds: the device plan (allocateDevice)
   * reserves regions in its fixed order, and the backend makes them as buffers, split where its binding
   * limit says. Checks the adapter's limits.
   */
  materialize(bytes: number, label: string, use: BufferUse = "storage"): GpuBuffer {
    const { maxBindingBytes, maxBufferBytes } = this.backend.limits;
    const limit = use === "storage" ? Math.min(maxBindingBytes, maxBufferBytes) : maxBufferBytes;
    if (bytes > limit) {
      throw new GpuError(
        this.backend.name,
        `${label} needs a buffer of ${bytes} bytes, over the adapter's ${use === "storage" ? "storage binding limit (maxStorageBufferBindingSize)" : "buffer limit (maxBufferSize)"} of ${limit} bytes`,
      );
    }
    const b = this.backend.createBuffer(Math.max(4, Math.ceil(bytes / 4) * 4), label, use);
    this.buffers.add(b);
    return b;
  }

  /** Copies host bytes to the device; after load, counted under `category`. */
  upload(buffer: GpuBuffer, data: ArrayBufferView, offset = 0, category = "activations"): void {
    let view = data;
    if (data.byteLength % 4 !== 0) {
      // WebGPU writes whole words: pad a copy (weights whose packed size is not a multiple of 4).
      const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      view = padded;
    }
    this.backend.write(buffer, offset, view);
    if (!this.loaded) {
      this.loadBytes += data.byteLength;
      return;
    }
    this.uploaded += data.byteLength;
    this.uploadedBy[category] = (this.uploadedBy[category] ?? 0) + data.byteLength;
  }

  free(buffer: GpuBuffer): void {
    if (this.buffers.delete(buffer)) this.backend.free(buffer);
  }

  /** Frees every buffer and the device. */
  destroy(): void {
    for (const b of this.buffers) this.backend.free(b);
    this.buffers.clear();
    this.backend.destroy();
  }
}
