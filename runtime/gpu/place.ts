// A compiled GPU model's memory under a device budget, on any Backend: the same residency rule and the
// same allocations, in the same order and under the same labels, as the CPU backend and `moec plan`
// (runtime/memory/device-plan.ts), each region then made as device buffers: a weight larger than the
// adapter's binding limit as several buffers of whole rows, a resident expert stack as one buffer per
// expert, an expert cache slot as one buffer per matrix. Offloaded experts come from the CPU path's
// sources (host copies or the GGUF) through its ExpertCache, uploaded on a miss and only then.
import type { Manifest, MoeEntry, WeightEntry } from "../manifest.ts";
import {
  allocateDevice,
  chooseResidency,
  DeviceBudgetError,
  describeUse,
  deviceWeightBytes,
  expertBytes,
  isResident,
} from "../memory/device-plan.ts";
import { ExpertCache, sumStats } from "../memory/expert-cache.ts";
import {
  type ExpertSource,
  expertLayout,
  FileExpertSource,
  HostExpertSource,
} from "../memory/expert-source.ts";
import { type MemoryStats, memoryStats } from "../memory/memory-stats.ts";
import type { MemoryOptions } from "../memory/place.ts";
import { HostBudgetError } from "../memory/place.ts";
import { getScheme } from "../quant/registry.ts";
import type { WeightSource } from "../weights.ts";
import { type Backend, DeviceMemory, type GpuBuffer } from "./backend.ts";
import type { GpuProgram } from "./program.ts";

/** One layer of a weight on the device: its buffers, each holding `rows` whole rows (the last may hold fewer). */
export interface WeightChunks {
  buffers: GpuBuffer[];
  rowsPerChunk: number;
}

/** An expert's three matrices on the device. */
export interface ExpertBuffers {
  gate: GpuBuffer;
  up: GpuBuffer;
  down: GpuBuffer;
}

export interface GpuPlaced {
  memory: DeviceMemory;
  /** Per weight key, per layer (one entry outside the loop). Offloaded expert stacks are absent. */
  weights: Map<string, WeightChunks[]>;
  /** [cache * 2 + (0 K, 1 V)][layer]. */
  kv: GpuBuffer[][];
  arena: GpuBuffer;
  frame: GpuBuffer;
  staging: GpuBuffer;
  /** MoE op `moe`'s chosen experts in `layer`, into `out` (k entries); loads the ones that missed. */
  experts(moe: number, layer: number, ids: ArrayLike<number>, out: ExpertBuffers[]): void;
  caches: ExpertCache[];
  origin: "resident" | "host" | "file";
  memoryStats(): MemoryStats;
  close(): void;
}

/** Loads a model's weights onto a backend's device under `o.deviceBudget` (default: no limit). */
export function placeGpu(
  backend: Backend,
  m: Manifest,
  program: GpuProgram,
  source: WeightSource,
  o: MemoryOptions = {},
): GpuPlaced {
  const budget = o.deviceBudget ?? Number.MAX_SAFE_INTEGER;
  const residency = chooseResidency(m, budget);
  if (!residency.fits) {
    throw new DeviceBudgetError(m.model, budget, residency.minimum.used, describeUse(m, residency.minimum));
  }
  const arenaBytes = program.arenaFloats * 4 + program.frameBytes + program.readbackBytes;
  if (arenaBytes > m.arenaBytes) {
    throw new Error(
      `the program's arena (${arenaBytes} bytes) is larger than the manifest's (${m.arenaBytes})`,
    );
  }
  const moes = m.moe ?? [];
  const offloaded = moes.map((_, i) => !isResident(m, residency.slots, i));
  let origin: GpuPlaced["origin"] = "resident";
  if (offloaded.some(Boolean)) {
    const hostBytes = moes.reduce(
      (n, e, i) => n + (offloaded[i] ? expertBytes(m, e).each * e.experts * e.layers : 0),
      0,
    );
    origin = o.hostBudget === undefined || hostBytes <= o.hostBudget ? "host" : "file";
    if (origin === "file" && o.expertFile === undefined) throw new HostBudgetError(o.hostBudget!, hostBytes);
  }

  const memory = new DeviceMemory(backend, budget);
  const late: { inner?: ExpertSource }[] = [];
  const caches: (ExpertCache | undefined)[] = moes.map(() => undefined);
  // Slot offset (the accountant's) → the slot's three buffers, made as the cache reserves each slot.
  const slots = new Map<number, ExpertBuffers>();
  let staging8 = new Uint8Array(0);
  const placement = allocateDevice(memory.acct, m, residency.slots, {
    makeCache: (i, e, perLayer) => {
      const src = {} as { inner?: ExpertSource };
      late[i] = src;
      const bytes = expertBytes(m, e);
      staging8 = staging8.length >= bytes.each ? staging8 : new Uint8Array(bytes.each);
      caches[i] = new ExpertCache({
        layers: e.layers,
        experts: e.experts,
        slotsPerLayer: perLayer,
        topK: e.topK,
        bytes,
        alloc: (label, n) => {
          const at = memory.acct.alloc(label, n);
          slots.set(at, {
            gate: memory.materialize(bytes.gate, `${e.gate} slot`),
            up: memory.materialize(bytes.up, `${e.up} slot`),
            down: memory.materialize(bytes.down, `${e.down} slot`),
          });
          return at;
        },
        source: {
          read: (...args) => {
            if (!src.inner) throw new Error("expert cache: its source is not ready yet");
            src.inner.read(...args);
          },
        },
        sink: {
          view: (_at, n) => staging8.subarray(0, n),
          loaded: (at) => {
            const s = slots.get(at)!;
            memory.upload(s.gate, staging8.subarray(0, bytes.gate), 0, "experts");
            memory.upload(s.up, staging8.subarray(bytes.gate, bytes.gate + bytes.up), 0, "experts");
            memory.upload(s.down, staging8.subarray(bytes.gate + bytes.up, bytes.each), 0, "experts");
          },
        },
        policy: o.policy,
      });
    },
  });

  // Resident weights: made as buffers and uploaded once.
  const moeOf = new Map<string, MoeEntry>();
  for (const e of moes) for (const k of [e.gate, e.up, e.down]) moeOf.set(k, e);
  const weights = new Map<string, WeightChunks[]>();
  const placed = m.weights.filter((w) => placement.weights.has(w.key));
  const total = placed.reduce((n, w) => n + deviceWeightBytes(w) * Math.max(1, w.layers), 0);
  let done = 0;
  for (const w of placed) {
    const layers = w.layers === 0 ? [undefined] : [...Array(w.layers).keys()];
    weights.set(
      w.key,
      layers.map((l) => {
        const chunks = placeWeight(memory, w, source, l, moeOf.get(w.key));
        done += deviceWeightBytes(w);
        o.onProgress?.(done, total);
        return chunks;
      }),
    );
  }
  const kv = placement.kv.map((layers, j) => {
    const c = m.kv[j >> 1]!;
    return layers.map((_, l) =>
      memory.materialize(
        m.maxContext * c.kvHeads * c.headDim * 4,
        `kv ${j >> 1}${j & 1 ? "V" : "K"} layer ${l}`,
      ),
    );
  });
  // The arena region holds the activations (with scratch and constant tables), the frame and the readback buffer.
  const arena = memory.materialize(program.arenaFloats * 4, "arena");
  const frame = memory.materialize(program.frameBytes, "frame", "uniform");
  const staging = memory.materialize(program.readbackBytes, "readback", "readback");
  for (const t of program.tables)
    memory.upload(arena, ropeTable(t.theta, t.headDim, m.maxContext), t.offset * 4);

  const files: FileExpertSource[] = [];
  let hostExpertBytes: number | undefined;
  moes.forEach((e, i) => {
    if (!offloaded[i]) return;
    const keys = { gate: e.gate, up: e.up, down: e.down };
    if (origin === "file") {
      const f = FileExpertSource.open(o.expertFile!, m, keys);
      files.push(f);
      late[i]!.inner = f;
    } else {
      const h = new HostExpertSource(source, expertLayout(m, keys));
      hostExpertBytes = (hostExpertBytes ?? 0) + h.hostBytes;
      late[i]!.inner = h;
    }
  });
  memory.loaded = true;

  const ids = moes.map((e) => new Int32Array(e.topK));
  const offs = moes.map((e) => new Float64Array(e.topK));
  const experts = (moe: number, layer: number, picks: ArrayLike<number>, out: ExpertBuffers[]) => {
    const e = moes[moe]!;
    const cache = caches[moe];
    if (!cache) {
      const l = e.layers ? layer : 0;
      const g = weights.get(e.gate)![l]!.buffers;
      const u = weights.get(e.up)![l]!.buffers;
      const d = weights.get(e.down)![l]!.buffers;
      for (let j = 0; j < e.topK; j++) {
        const x = picks[j]!;
        out[j] = { gate: g[x]!, up: u[x]!, down: d[x]! };
      }
      return;
    }
    const id = ids[moe]!;
    for (let j = 0; j < e.topK; j++) id[j] = picks[j]!;
    cache.locateInto(layer, id, offs[moe]!);
    for (let j = 0; j < e.topK; j++) out[j] = slots.get(offs[moe]![j]!)!;
  };
  const active = caches.filter((c): c is ExpertCache => c !== undefined);
  const sum = () => sumStats(active);
  return {
    memory,
    weights,
    kv,
    arena,
    frame,
    staging,
    experts,
    caches: active,
    origin,
    memoryStats: () => memoryStats(memory.acct, active.length ? { stats: sum } : undefined, hostExpertBytes),
    close: () => {
      for (const f of files) f.close();
    },
  };
}

/** One layer of a weight as buffers: a norm vector decoded to f32; an expert stack one buffer per expert;
 * a matrix in chunks of whole rows no larger than the binding limit. */
function placeWeight(
  memory: DeviceMemory,
  w: WeightEntry,
  source: WeightSource,
  layer: number | undefined,
  moe: MoeEntry | undefined,
): WeightChunks {
  const scheme = getScheme(w.scheme);
  const name = layer === undefined ? w.key : `${w.key} layer ${layer}`;
  if (w.shape.length === 1) {
    const out = new Float32Array(w.shape[0]!);
    scheme.decode(source.bytes(w.key, layer), out);
    const b = memory.materialize(out.byteLength, name);
    memory.upload(b, out);
    return { buffers: [b], rowsPerChunk: w.shape[0]! };
  }
  const bytes = source.bytes(w.key, layer);
  const want = deviceWeightBytes(w);
  if (bytes.length !== want)
    throw new Error(`${w.key}: ${bytes.length} bytes where its shape and scheme need ${want}`);
  if (moe) {
    const each = want / moe.experts;
    const buffers = Array.from({ length: moe.experts }, (_, e) => {
      const b = memory.materialize(each, `${name} expert ${e}`);
      memory.upload(b, bytes.subarray(e * each, (e + 1) * each));
      return b;
    });
    return { buffers, rowsPerChunk: w.shape[1]! };
  }
  const rows = w.shape[0]!;
  const rowBytes = want / rows;
  const limit = Math.min(memory.backend.limits.maxBindingBytes, memory.backend.limits.maxBufferBytes);
  // Whole rows per chunk (RoPE runs after the product, over the output, so chunks need no other alignment).
  let per = rows;
  if (want > limit) per = Math.max(1, Math.floor(limit / rowBytes));
  const buffers: GpuBuffer[] = [];
  for (let r = 0; r < rows; r += per) {
    const end = Math.min(rows, r + per);
    const b = memory.materialize(
      (end - r) * rowBytes,
      buffers.length || end < rows ? `${name} rows ${r}..${end}` : name,
    );
    memory.upload(b, bytes.subarray(r * rowBytes, end * rowBytes));
    buffers.push(b);
  }
  return { buffers, rowsPerChunk: per };
}

/** cos and sin of pos · θ^(−2j/d) for every position and pair, computed in f64 as the CPU kernels do. */
export function ropeTable(theta: number, headDim: number, context: number): Float32Array {
  const half = headDim / 2;
  const out = new Float32Array(context * half * 2);
  for (let j = 0; j < half; j++) {
    const freq = theta ** ((-2 * j) / headDim);
    for (let p = 0; p < context; p++) {
      out[(p * half + j) * 2] = Math.cos(p * freq);
      out[(p * half + j) * 2 + 1] = Math.sin(p * freq);
    }
  }
  return out;
}
