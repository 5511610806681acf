// The CPU backend's device memory: one shared WebAssembly memory holding every weight, KV cache,
// activation and scratch buffer, so the WebAssembly kernels, the TypeScript kernels and (with threads)
// every worker read the same bytes without copies. Regions are laid out once, before anything is
// written, by the device accountant (runtime/memory/): the heap is exactly what it handed out, with the
// half-float table the kernels expect at address 0.
import { f16Table } from "./quant/half.ts";

const PAGE = 65536;
/** wasm32 addresses 4 GiB. */
export const HEAP_LIMIT = 65536 * PAGE;

export class Heap {
  readonly memory: WebAssembly.Memory;
  readonly u8: Uint8Array;
  readonly i8: Int8Array;
  readonly f32: Float32Array;
  /** The heap as one packed weight whose bytes start at 0: what kernels reading absolute addresses take. */
  readonly base = 0;

  constructor(readonly bytes: number) {
    if (bytes > HEAP_LIMIT) {
      throw new RangeError(
        `the model needs ${bytes} bytes of device memory; the CPU backend's heap holds at most ${HEAP_LIMIT} (4 GiB)`,
      );
    }
    const pages = Math.max(1, Math.ceil(bytes / PAGE));
    this.memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    const buf = this.memory.buffer;
    this.u8 = new Uint8Array(buf);
    this.i8 = new Int8Array(buf);
    this.f32 = new Float32Array(buf);
    this.f32.set(f16Table, 0);
  }

  floats(offset: number, count: number): Float32Array {
    return new Float32Array(this.memory.buffer, offset, count);
  }
}
