// Where an offloaded expert's bytes come from when the expert cache loads it into a device slot:
//   HostExpertSource: a copy in host memory, made once, one Uint8Array per expert matrix, so the host
//     bytes are exact and can be held to `--host-memory`;
//   FileExpertSource: straight from the GGUF file, one positioned read per matrix into the slot, for
//     when the host cannot hold the experts either. It holds no expert bytes of its own.
// A model's experts are three stacked weights per layer, [experts, rows, cols] in the manifest; expert e
// is the e-th equal slice of the packed bytes (experts are the slowest dimension), in the weight's scheme.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { CheckpointError } from "../checkpoint/errors.ts";
import { openGguf } from "../checkpoint/gguf-read.ts";
import { resolveGgufWeights } from "../checkpoint/gguf-weights.ts";
import { type Manifest, schemeAt, type WeightEntry } from "../manifest.ts";
import { getScheme } from "../quant/registry.ts";
import type { WeightSource } from "../weights.ts";

export type ExpertRole = "gate" | "up" | "down";
export const EXPERT_ROLES: readonly ExpertRole[] = ["gate", "up", "down"];

/** The manifest keys of a layer's stacked expert matrices, e.g. `{gate: "layer.w_gate", …}`. */
export type ExpertKeys = Record<ExpertRole, string>;

export interface ExpertSource {
  /** Copies one expert matrix's packed bytes into `dst`, which is exactly that many bytes long. */
  read(layer: number, expert: number, role: ExpertRole, dst: Uint8Array): void;
}

/** What the expert weights look like: layers, experts per layer, and one expert matrix's bytes per role. */
export interface ExpertLayout {
  layers: number;
  experts: number;
  /** One expert matrix's bytes per role, by layer (a weight's scheme may differ by layer). */
  bytes: Record<ExpertRole, number>[];
  entries: Record<ExpertRole, WeightEntry>;
}

/** The expert layout from the manifest; throws when a key is missing or the three disagree. */
export function expertLayout(manifest: Pick<Manifest, "weights">, keys: ExpertKeys): ExpertLayout {
  const entries = {} as Record<ExpertRole, WeightEntry>;
  for (const role of EXPERT_ROLES) {
    const w = manifest.weights.find((x) => x.key === keys[role]);
    if (!w) throw new Error(`no weight \`${keys[role]}\` (the experts' ${role} matrices) in the manifest`);
    if (w.shape.length !== 3 || w.layers < 1) {
      throw new Error(
        `\`${w.key}\` is not a per-layer stack of expert matrices: shape [${w.shape.join(", ")}], ${w.layers} layers`,
      );
    }
    entries[role] = w;
  }
  const { gate, up, down } = entries;
  if (gate.shape[0] !== up.shape[0] || gate.shape[0] !== down.shape[0] || gate.layers !== up.layers) {
    throw new Error(
      `expert weights disagree: ${EXPERT_ROLES.map((r) => `${entries[r].key} [${entries[r].shape.join(", ")}] × ${entries[r].layers} layers`).join(", ")}`,
    );
  }
  if (gate.layers !== down.layers) throw new Error(`expert weights disagree on the layer count`);
  const bytes = Array.from({ length: gate.layers }, (_, l) => {
    const of = (w: WeightEntry) => {
      const s = getScheme(schemeAt(w, l));
      return ((w.shape[1]! * w.shape[2]!) / s.blockSize) * s.blockBytes;
    };
    return { gate: of(gate), up: of(up), down: of(down) };
  });
  return { layers: gate.layers, experts: gate.shape[0]!, bytes, entries };
}

function checkIndex(layout: ExpertLayout, layer: number, expert: number, role: ExpertRole, dst: Uint8Array) {
  if (!Number.isInteger(layer) || layer < 0 || layer >= layout.layers) {
    throw new RangeError(`layer ${layer} is out of range (the model has ${layout.layers})`);
  }
  if (!Number.isInteger(expert) || expert < 0 || expert >= layout.experts) {
    throw new RangeError(`expert ${expert} is out of range (a layer has ${layout.experts})`);
  }
  const want = layout.bytes[layer]![role];
  if (want === undefined) throw new RangeError(`unknown expert role \`${role}\` (gate, up or down)`);
  if (dst.length !== want) {
    throw new RangeError(
      `destination for layer ${layer} expert ${expert} ${role} holds ${dst.length} bytes; the matrix is ${want}`,
    );
  }
}

export interface HostSourceOptions {
  /** Which experts live on the host (the rest are resident and never read from here); default all. */
  offloaded?: (layer: number, expert: number) => boolean;
  /** Host bytes the copies may take (`--host-memory`); checked before anything is copied. */
  hostBudgetBytes?: number;
  /** Called on each expert matrix's host copy as it is made (the CPU repacks interleaved rows there). */
  prepare?: (layer: number, role: ExpertRole, copy: Uint8Array) => void;
}

/** Offloaded experts copied once into host memory, one Uint8Array per expert matrix. */
export class HostExpertSource implements ExpertSource {
  /** Bytes of expert data held on the host: exactly the sum of the copies. */
  readonly hostBytes: number;
  /** [layer][expert] → gate, up, down copies, or undefined for an expert not offloaded. */
  private readonly copies: (Record<ExpertRole, Uint8Array> | undefined)[][];

  constructor(
    weights: WeightSource,
    readonly layout: ExpertLayout,
    opts: HostSourceOptions = {},
  ) {
    const { layers, experts, bytes, entries } = layout;
    const offloaded = opts.offloaded ?? (() => true);
    let count = 0;
    let total = 0;
    for (let l = 0; l < layers; l++) {
      const each = bytes[l]!.gate + bytes[l]!.up + bytes[l]!.down;
      for (let e = 0; e < experts; e++) {
        if (!offloaded(l, e)) continue;
        count++;
        total += each;
      }
    }
    this.hostBytes = total;
    const budget = opts.hostBudgetBytes;
    if (budget !== undefined && this.hostBytes > budget) {
      throw new RangeError(
        `host memory budget exceeded: ${count} offloaded experts need ${this.hostBytes} bytes, the budget is ${budget} (${this.hostBytes - budget} over); read experts from the file instead`,
      );
    }
    this.copies = Array.from({ length: layers }, () => new Array(experts).fill(undefined));
    for (let l = 0; l < layers; l++) {
      const wanted = [...Array(experts).keys()].filter((e) => offloaded(l, e));
      if (!wanted.length) continue;
      const parts = {} as Record<ExpertRole, Uint8Array[]>;
      // One stacked tensor at a time: the whole layer's tensor is transient, the copies are what stays.
      for (const role of EXPERT_ROLES) {
        const stacked = weights.bytes(entries[role].key, l);
        const one = bytes[l]![role];
        if (stacked.length !== experts * one) {
          throw new Error(
            `\`${entries[role].key}\` layer ${l} has ${stacked.length} bytes; ${experts} experts of ${one} need ${experts * one}`,
          );
        }
        parts[role] = wanted.map((e) => {
          const copy = stacked.slice(e * one, (e + 1) * one);
          opts.prepare?.(l, role, copy);
          return copy;
        });
      }
      wanted.forEach((e, i) => {
        this.copies[l]![e] = { gate: parts.gate[i]!, up: parts.up[i]!, down: parts.down[i]! };
      });
    }
  }

  read(layer: number, expert: number, role: ExpertRole, dst: Uint8Array): void {
    checkIndex(this.layout, layer, expert, role, dst);
    const c = this.copies[layer]![expert];
    if (!c) throw new Error(`layer ${layer} expert ${expert} is resident, not offloaded to the host`);
    dst.set(c[role]);
  }
}

/**
 * Experts read from a GGUF file on demand: the merged layout (`blk.N.ffn_gate_exps.weight`, expert e a
 * slice) or one tensor per expert (`blk.N.ffn_gate.E.weight`). The header is read and checked against
 * the manifest once; after that, each read is one positioned read of exactly the matrix's bytes.
 */
export class FileExpertSource implements ExpertSource {
  /** Absolute file offset of each matrix: [(layer * 3 + role) * experts + expert]. */
  private readonly offsets: Float64Array;
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    readonly layout: ExpertLayout,
    offsets: Float64Array,
    fd: number,
  ) {
    this.offsets = offsets;
    this.fd = fd;
  }

  /** Opens the file, finds the expert tensors the manifest names, and checks every range fits the file. */
  static open(path: string, manifest: Pick<Manifest, "weights">, keys: ExpertKeys): FileExpertSource {
    const layout = expertLayout(manifest, keys);
    const { layers, experts, bytes, entries } = layout;
    const file = openGguf(path);
    const offsets = new Float64Array(layers * EXPERT_ROLES.length * experts);
    let size: number;
    try {
      size = file.size;
      const resolved = resolveGgufWeights(
        file,
        EXPERT_ROLES.map((r) => entries[r]),
      );
      for (const r of resolved) {
        const role = EXPERT_ROLES.find((x) => entries[x].key === r.key)!;
        const want = bytes[r.layer!]![role];
        const fail = (what: string, problem: string, offset?: number): never => {
          throw new CheckpointError({ file: path, what, whatKind: "tensor", offset, problem });
        };
        for (let e = 0; e < experts; e++) {
          const part = r.parts.length === 1 ? r.parts[0]! : r.parts[e]!;
          const at = r.parts.length === 1 ? part.offset + e * want : part.offset;
          const have = r.parts.length === 1 ? part.nbytes / experts : part.nbytes;
          if (have !== want) {
            fail(part.name, `an expert's ${role} matrix takes ${have} bytes here, the model expects ${want}`);
          }
          if (at < 0 || at + want > size) {
            fail(
              part.name,
              `expert ${e} (bytes ${at} to ${at + want}) runs past the end of the file (${size} bytes)`,
              at,
            );
          }
          offsets[(r.layer! * EXPERT_ROLES.length + EXPERT_ROLES.indexOf(role)) * experts + e] = at;
        }
      }
    } finally {
      file.close();
    }
    // Our own descriptor for the reads; the file must still be the one whose header was checked.
    const fd = openSync(path, "r");
    const now = fstatSync(fd).size;
    if (now !== size) {
      closeSync(fd);
      throw new CheckpointError({
        file: path,
        problem: `changed while it was opened: ${size} bytes, then ${now}`,
      });
    }
    return new FileExpertSource(path, layout, offsets, fd);
  }

  /** Absolute offset in the file of one expert matrix. */
  offsetOf(layer: number, expert: number, role: ExpertRole): number {
    const i = (layer * EXPERT_ROLES.length + EXPERT_ROLES.indexOf(role)) * this.layout.experts + expert;
    return this.offsets[i]!;
  }

  read(layer: number, expert: number, role: ExpertRole, dst: Uint8Array): void {
    checkIndex(this.layout, layer, expert, role, dst);
    if (this.fd === undefined) throw new Error(`${this.path}: the expert source is closed`);
    const at = this.offsetOf(layer, expert, role);
    let got = 0;
    while (got < dst.length) {
      const r = readSync(this.fd, dst, got, Math.min(dst.length - got, 1 << 30), at + got);
      if (r === 0) {
        throw new CheckpointError({
          file: this.path,
          offset: at + got,
          problem: `file ended while reading layer ${layer} expert ${expert} ${role} (did it shrink after it was opened?)`,
        });
      }
      got += r;
    }
  }

  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    closeSync(fd);
  }
}
