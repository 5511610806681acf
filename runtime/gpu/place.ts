// A compiled GPU model's memory under a device budget, on any Backend: the same residency rule and the
// same allocations, in the same order and under the same labels, as the CPU backend and `moec plan`
// (runtime/memory/device-plan.ts), each region then made as device buffers: a weight larger than the
// adapter's binding limit as several buffers of whole rows, a resident expert stack as buffers per
// expert, an expert cache slot as buffers per matrix (an expert matrix over the limit in whole rows too,
// gate and up split alike since gate_up reads them together). Offloaded experts come from the CPU path's
// sources (host copies or the GGUF) through its ExpertCache, uploaded on a miss and only then.
import { type Manifest, type MoeEntry, schemeAt, type WeightEntry } from "../manifest.ts";
import {
  allExpertBytes,
  allocateDevice,
  chooseResidency,
  DeviceBudgetError,
  describeUse,
  deviceWeightBytes,
  deviceWeightTotal,
  type ExpertBytes,
  expertBytesByLayer,
  isResident,
  kvRegionBytes,
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
import { type Backend, DeviceMemory, type GpuBuffer, GpuError } from "./backend.ts";
import { arenaBuffers, batchCopies, type GpuProgram, kernelSteps } from "./program.ts";

/** One layer of a weight on the device: its buffers, each holding `rowsPerChunk` whole rows (the last may
 * hold fewer). A resident expert stack: `experts` holds each expert's matrix so, and `buffers` all of them. */
export interface WeightChunks {
  buffers: GpuBuffer[];
  rowsPerChunk: number;
  /** Packed bytes per row (a buffer's size is rounded up to whole words). */
  rowBytes: number;
  experts?: WeightChunks[];
}

/** An expert's three matrices on the device, each in chunks of whole rows (gate and up alike). */
export interface ExpertBuffers {
  gate: WeightChunks;
  up: WeightChunks;
  down: WeightChunks;
}

/** Rows per buffer of an expert matrix, per MoE op: gate and up share theirs. */
export interface ExpertRows {
  gate: number;
  up: number;
  down: number;
}

export interface GpuPlaced {
  memory: DeviceMemory;
  /** Per weight key, per layer (one entry outside the loop). Offloaded expert stacks are absent. */
  weights: Map<string, WeightChunks[]>;
  /** [cache * 2 + (0 K, 1 V)][layer]. */
  kv: GpuBuffer[][];
  arena: GpuBuffer;
  frame: GpuBuffer;
  /** The quantized activations, when a kernel reads them (program.q8Words). */
  q8?: GpuBuffer;
  staging: GpuBuffer;
  /** Per MoE op: rows per buffer of its expert matrices (resident or cache slots alike). */
  expertRows: ExpertRows[];
  /** Copies of the arena (and q8 activations) on the device: the prefill's tokens per batch (1: none). */
  copies?: number;
  /** Per MoE op: how many distinct experts `expertsFor` takes at once (the cache's slots per layer). */
  expertGroup?: number[];
  /** `ids` (distinct, at most expertGroup[moe]) of MoE op `moe` in `layer`, into `out`; loads the misses. */
  expertsFor?(moe: number, layer: number, ids: readonly number[], out: ExpertBuffers[]): void;
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
  const q8Bytes = (program.q8Words ?? 0) * 4;
  const arenaBytes = program.arenaFloats * 4 + q8Bytes + program.frameBytes + program.readbackBytes;
  if (arenaBytes > m.arenaBytes) {
    throw new Error(
      `the program's arena (${arenaBytes} bytes) is larger than the manifest's (${m.arenaBytes})`,
    );
  }
  const moes = m.moe ?? [];
  const offloaded = moes.map((_, i) => !isResident(m, residency.slots, i));
  let origin: GpuPlaced["origin"] = "resident";
  if (offloaded.some(Boolean)) {
    const hostBytes = moes.reduce((n, e, i) => n + (offloaded[i] ? allExpertBytes(m, e) : 0), 0);
    origin = o.hostBudget === undefined || hostBytes <= o.hostBudget ? "host" : "file";
    if (origin === "file" && o.expertFile === undefined) throw new HostBudgetError(o.hostBudget!, hostBytes);
  }

  const memory = new DeviceMemory(backend, budget);
  const limit = Math.min(backend.limits.maxBindingBytes, backend.limits.maxBufferBytes);
  const entry = (key: string) => m.weights.find((w) => w.key === key)!;
  const expertRows = moes.map((e): ExpertRows => {
    const gate = rowsPerChunk(backend.name, entry(e.gate), limit);
    const up = rowsPerChunk(backend.name, entry(e.up), limit);
    return {
      gate: Math.min(gate, up),
      up: Math.min(gate, up),
      down: rowsPerChunk(backend.name, entry(e.down), limit),
    };
  });
  // Weights a row-parallel kernel reads together (a dense gate_up's gate and up) are split alike: the fewest
  // rows per buffer any of them allows.
  const together = new Map<string, number>();
  for (const s of kernelSteps(program.steps)) {
    const keys = (s.rows?.weights ?? []).flatMap((i) => {
      const b = s.bind[i];
      return b?.kind === "weight" ? [b.key] : [];
    });
    if (keys.length < 2) continue;
    const per = Math.min(...keys.map((k) => rowsPerChunk(backend.name, entry(k), limit)));
    for (const k of keys) together.set(k, Math.min(per, together.get(k) ?? per));
  }
  const late: { inner?: ExpertSource }[] = [];
  const caches: (ExpertCache | undefined)[] = moes.map(() => undefined);
  // Slot offset (the accountant's) → the slot's three buffers, made as the cache reserves each slot.
  const slots = new Map<number, ExpertBuffers & { bytes: ExpertBytes }>();
  let staging8 = new Uint8Array(0);
  const placement = allocateDevice(memory.acct, m, residency.slots, {
    makeCache: (i, e, perLayer) => {
      const src = {} as { inner?: ExpertSource };
      late[i] = src;
      const byLayer = expertBytesByLayer(m, e);
      const most = Math.max(...byLayer.map((b) => b.each));
      staging8 = staging8.length >= most ? staging8 : new Uint8Array(most);
      // The cache reserves its slots layer by layer, perLayer each: the k-th is layer ⌊k / perLayer⌋'s.
      let made = 0;
      caches[i] = new ExpertCache({
        layers: e.layers,
        experts: e.experts,
        slotsPerLayer: perLayer,
        topK: e.topK,
        bytes: byLayer,
        alloc: (label, n) => {
          const at = memory.acct.alloc(label, n);
          const bytes = byLayer[Math.floor(made++ / perLayer)]!;
          const rows = expertRows[i]!;
          const slot = (key: string, b: number, per: number) => {
            const w = entry(key);
            return chunked(memory, `${key} slot`, w.shape[1]!, b / w.shape[1]!, per);
          };
          slots.set(at, {
            gate: slot(e.gate, bytes.gate, rows.gate),
            up: slot(e.up, bytes.up, rows.up),
            down: slot(e.down, bytes.down, rows.down),
            bytes,
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
            const bytes = s.bytes;
            uploadChunks(memory, s.gate, staging8.subarray(0, bytes.gate), "experts");
            uploadChunks(memory, s.up, staging8.subarray(bytes.gate, bytes.gate + bytes.up), "experts");
            uploadChunks(memory, s.down, staging8.subarray(bytes.gate + bytes.up, bytes.each), "experts");
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
  const total = placed.reduce((n, w) => n + deviceWeightTotal(w), 0);
  let done = 0;
  for (const w of placed) {
    const layers = w.layers === 0 ? [undefined] : [...Array(w.layers).keys()];
    weights.set(
      w.key,
      layers.map((l) => {
        const moe = moeOf.get(w.key);
        const per =
          w.shape.length === 1
            ? w.shape[0]!
            : moe
              ? expertRows[moes.indexOf(moe)]![w.key === moe.gate ? "gate" : w.key === moe.up ? "up" : "down"]
              : (together.get(w.key) ?? rowsPerChunk(backend.name, w, limit));
        const chunks = placeWeight(memory, w, source, l, moe, per);
        done += deviceWeightBytes(w, l);
        o.onProgress?.(done, total);
        return chunks;
      }),
    );
  }
  const kv = placement.kv.map((layers, j) => {
    const c = m.kv[j >> 1]!;
    return layers.map((_, l) =>
      memory.materialize(
        kvRegionBytes(c, m.maxContext, m.kvType),
        `kv ${j >> 1}${j & 1 ? "V" : "K"} layer ${l}`,
      ),
    );
  });
  // The arena region holds the activations (with scratch and constant tables), the quantized activations,
  // the frame and the readback buffer.
  // With a batch program, one copy of the arena and of the q8 activations per token of a batch.
  const copies = batchCopies(program, limit);
  const sizes = arenaBuffers(program, copies);
  const arena = memory.materialize(sizes.arena, "arena");
  const q8 = sizes.q8 ? memory.materialize(sizes.q8, "q8 activations") : undefined;
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
  const offs = moes.map((e) => new Float64Array(e.experts));
  /** MoE op `moe`'s experts `picked` of `layer` (distinct, at most its slots per layer), loading misses. */
  const expertsFor = (moe: number, layer: number, picked: ArrayLike<number>, out: ExpertBuffers[]) => {
    const e = moes[moe]!;
    const cache = caches[moe];
    if (!cache) {
      const l = e.layers ? layer : 0;
      const g = weights.get(e.gate)![l]!.experts!;
      const u = weights.get(e.up)![l]!.experts!;
      const d = weights.get(e.down)![l]!.experts!;
      for (let j = 0; j < picked.length; j++) {
        const x = picked[j]!;
        out[j] = { gate: g[x]!, up: u[x]!, down: d[x]! };
      }
      return;
    }
    const at = cache.locateInto(layer, picked, offs[moe]!);
    for (let j = 0; j < picked.length; j++) out[j] = slots.get(at[j]!)!;
  };
  /** A token's top-k picks (the first k of `picks`): no allocation per token. */
  const experts = (moe: number, layer: number, picks: ArrayLike<number>, out: ExpertBuffers[]) => {
    const id = ids[moe]!;
    for (let j = 0; j < id.length; j++) id[j] = picks[j]!;
    expertsFor(moe, layer, id, out);
  };
  const active = caches.filter((c): c is ExpertCache => c !== undefined);
  const sum = () => sumStats(active);
  return {
    memory,
    weights,
    kv,
    arena,
    frame,
    ...(q8 ? { q8 } : {}),
    staging,
    copies,
    expertGroup: moes.map((_, i) => caches[i]?.slotsPerLayer ?? Number.POSITIVE_INFINITY),
    expertsFor,
    expertRows,
    experts,
    caches: active,
    origin,
    memoryStats: () => memoryStats(memory.acct, active.length ? { stats: sum } : undefined, hostExpertBytes),
    close: () => {
      for (const f of files) f.close();
    },
  };
}

/** One layer of a weight as buffers: a norm vector decoded to f32; a matrix in chunks of whole rows no
 * larger than the binding limit; an expert stack each expert's matrix so, `per` rows a chunk. */
function placeWeight(
  memory: DeviceMemory,
  w: WeightEntry,
  source: WeightSource,
  layer: number | undefined,
  moe: MoeEntry | undefined,
  per: number,
): WeightChunks {
  const scheme = getScheme(schemeAt(w, layer));
  const name = layer === undefined ? w.key : `${w.key} layer ${layer}`;
  if (w.shape.length === 1) {
    const out = new Float32Array(w.shape[0]!);
    scheme.decode(source.bytes(w.key, layer), out);
    const b = memory.materialize(out.byteLength, name);
    memory.upload(b, out);
    return { buffers: [b], rowsPerChunk: w.shape[0]!, rowBytes: out.byteLength };
  }
  const bytes = source.bytes(w.key, layer);
  const want = deviceWeightBytes(w, layer);
  if (bytes.length !== want)
    throw new Error(`${w.key}: ${bytes.length} bytes where its shape and scheme need ${want}`);
  if (moe) {
    const each = want / moe.experts;
    const rows = w.shape[1]!;
    const experts = Array.from({ length: moe.experts }, (_, e) => {
      const c = chunked(memory, `${name} expert ${e}`, rows, each / rows, per);
      uploadChunks(memory, c, bytes.subarray(e * each, (e + 1) * each));
      return c;
    });
    return { buffers: experts.flatMap((c) => c.buffers), rowsPerChunk: per, rowBytes: each / rows, experts };
  }
  const rows = w.shape[0]!;
  const c = chunked(memory, name, rows, want / rows, per);
  uploadChunks(memory, c, bytes);
  return c;
}

/** Whole rows of a matrix (its last two dimensions; an expert stack's one expert) per buffer under `limit`:
 * the same in every layer, so for the layer with the largest rows where the scheme differs by layer. */
function rowsPerChunk(backend: string, w: WeightEntry, limit: number): number {
  const rows = w.shape[w.shape.length - 2]!;
  const layers = w.layers && w.schemes ? [...Array(w.layers).keys()] : [undefined];
  const most = Math.max(...layers.map((l) => deviceWeightBytes(w, l)));
  const rowBytes = most / (w.shape.length > 2 ? w.shape[0]! : 1) / rows;
  if (rowBytes > limit) {
    throw new GpuError(
      backend,
      `${w.key}: one row is ${rowBytes} bytes, over the adapter's storage binding limit of ${limit} bytes, so it cannot be split into buffers under it`,
    );
  }
  return Math.min(rows, Math.floor(limit / rowBytes));
}

/** Buffers for a matrix of `rows` rows of `rowBytes`, `per` rows each (RoPE runs after the product, over
 * the output, so chunks need no other alignment); one unnamed by rows when it is whole. */
function chunked(
  memory: DeviceMemory,
  name: string,
  rows: number,
  rowBytes: number,
  per: number,
): WeightChunks {
  const buffers: GpuBuffer[] = [];
  for (let r = 0; r < rows; r += per) {
    const end = Math.min(rows, r + per);
    buffers.push(
      memory.materialize(
        (end - r) * rowBytes,
        buffers.length || end < rows ? `${name} rows ${r}..${end}` : name,
      ),
    );
  }
  return { buffers, rowsPerChunk: per, rowBytes };
}

/** Copies a matrix's bytes into its chunks, in order. */
function uploadChunks(memory: DeviceMemory, c: WeightChunks, bytes: Uint8Array, category?: string): void {
  const n = c.rowsPerChunk * c.rowBytes;
  c.buffers.forEach((b, i) => memory.upload(b, bytes.subarray(i * n, (i + 1) * n), 0, category));
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
