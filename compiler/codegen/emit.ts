// The generated module: kernels, the forward pass (the schedule, with its per-layer loop) and the
// manifest. The module imports nothing: a compiled model runs with the runtime alone.

import type { Manifest } from "../../runtime/manifest.ts";
import type { Graph } from "../ir/graph.ts";
import { SpecError } from "../lang/errors.ts";
import type { ActivationPlan } from "../plan/activations.ts";
import { KernelSet } from "./kernels.ts";

const prelude = `
/** One packed weight tensor: views over the whole heap, and the byte where the tensor starts. */
export interface Packed {
  u8: Uint8Array;
  i8: Int8Array;
  f32: Float32Array;
  base: number;
}

/** A WebAssembly kernel: byte addresses in the heap and constants (see each kernel's WAT in the comment below). */
export type Kernel = (...args: number[]) => void;

export type Decode = (scheme: string, src: Uint8Array, dst: Float32Array) => void;

/** What the runtime hands the forward pass; every buffer is allocated once, by the runtime. */
export interface Runtime {
  /** Packed matrices by weight key: one per layer, or one. */
  weights: Record<string, Packed[]>;
  /** Vectors (norm weights) in f32 by weight key. */
  vectors: Record<string, Float32Array[]>;
  /** KV caches: [cache * 2 + (0 for K, 1 for V)][layer], each maxContext × width. */
  kv: Float32Array[][];
  arena: Float32Array;
  /** Half-precision bits → value. */
  f16: Float32Array;
  decode: Decode;
  /** This module's WebAssembly kernels, instantiated by the runtime over the heap. */
  kernels: Record<string, Kernel>;
}

let F16: Float32Array = new Float32Array(0);
let K: Record<string, Kernel> = {};
/** Views of the arena (the logits, kernel scratch), made once per arena rather than once per token. */
let ARENA: Float32Array | undefined;
let LOGITS: Float32Array = new Float32Array(0);
`;

export interface EmitInput {
  graph: Graph;
  plan: ActivationPlan;
  manifest: Manifest;
  header: string;
}

export function emitModule({ graph, plan, manifest: planned, header }: EmitInput): {
  source: string;
  kernels: number;
  /** The manifest with the arena grown by the kernels' scratch. */
  manifest: Manifest;
} {
  const ks = new KernelSet();
  const vars: string[] = [];
  const varOf = new Map<string, string>();
  const manifest = planned;
  manifest.weights.forEach((w, i) => {
    const v = w.shape.length === 1 ? `V${i}` : `W${i}`;
    varOf.set(w.key, v);
    vars.push(
      `  const ${v} = rt.${w.shape.length === 1 ? "vectors" : "weights"}[${JSON.stringify(w.key)}]; // ${w.key} [${w.shape}] ${w.scheme}`,
    );
  });
  manifest.kv.forEach((_, c) =>
    vars.push(`  const KV${c}K = rt.kv[${2 * c}];`, `  const KV${c}V = rt.kv[${2 * c + 1}];`),
  );
  const off = (id: number) => {
    const b = plan.arena.offsets.get(plan.alias.get(id) ?? id);
    if (b === undefined) throw new Error(`no arena slot for %${id}`);
    return b / 4;
  };
  const shapes = new Map<number, number[]>();
  const note = (g: Graph) => {
    for (const p of g.params) shapes.set(p.id, p.shape);
    for (const n of g.nodes) {
      shapes.set(n.id, n.shape);
      if (n.body) note(n.body);
    }
  };
  note(graph);
  const width = (id: number) => shapes.get(id)![0]!;
  const lines: string[] = [];

  const emitGraph = (g: Graph, layered: boolean, indent: string) => {
    const W = (key: string) =>
      `${varOf.get(key)}[${layered && manifest.weights.find((w) => w.key === key)!.layers ? "l" : 0}]`;
    const layer = layered ? "l" : "0";
    const at = (id: number) => `A, ${off(id)}`;
    for (const n of g.nodes) {
      const x = n.inputs[0]!;
      const call = (k: string, args: string[]) => lines.push(`${indent}${k}(${args.join(", ")});`);
      const normArg = n.weights.norm ? [W(n.weights.norm)] : [];
      switch (n.op) {
        case "embed": {
          const table = manifest.weights.find((w) => w.key === n.weights.table)!;
          call(ks.embed(n, table.shape[0]!, table.scheme), [
            W(n.weights.table!),
            "token",
            at(n.id),
            "rt.decode",
          ]);
          break;
        }
        case "linear": {
          const dest =
            n.attrs.kv !== undefined
              ? `KV${n.attrs.cache}${n.attrs.kv === "k" ? "K" : "V"}[${layer}], pos * ${n.shape[0]}`
              : at(n.id);
          const args = [W(n.weights.w!), at(x), ...normArg, dest];
          if (n.attrs.residual) args.push(at(n.inputs[1]!));
          if (n.attrs.rope_heads !== undefined) args.push("pos");
          call(ks.linear(n, width(x)), args);
          break;
        }
        case "gate_up":
          call(ks.gateUp(n, width(x)), [W(n.weights.gate!), W(n.weights.up!), at(x), ...normArg, at(n.id)]);
          break;
        case "route":
          call(ks.route(n, width(x)), [W(n.weights.router!), at(x), ...normArg, at(n.id)]);
          break;
        case "moe_ffn": {
          const gate = manifest.weights.find((w) => w.key === n.weights.gate)!;
          const args = [
            W(n.weights.gate!),
            W(n.weights.up!),
            W(n.weights.down!),
            at(x),
            at(n.inputs[1]!),
            at(n.id),
          ];
          if (n.attrs.residual) args.push(at(n.inputs[2]!));
          call(ks.moeFfn(n, width(x), gate.shape[1]!, width(n.inputs[1]!) / 2), args);
          break;
        }
        case "attend": {
          const c = n.attrs.cache;
          call(ks.attend(n, manifest.maxContext), [
            at(x),
            `KV${c}K[${layer}]`,
            `KV${c}V[${layer}]`,
            "pos",
            at(n.id),
          ]);
          break;
        }
        case "rms_norm":
          call(ks.rmsNorm(n), [at(x), W(n.weights.weight!), at(n.id)]);
          break;
        case "add":
        case "mul":
          call(ks.elementwise(n), [at(x), at(n.inputs[1]!), at(n.id)]);
          break;
        case "silu":
          call(ks.elementwise(n), [at(x), at(n.id)]);
          break;
        case "softmax":
          call(ks.softmax(n), [at(x), at(n.id)]);
          break;
        case "rope":
          call(ks.rope(n), [at(x), at(n.id), "pos"]);
          break;
        case "kv_write":
          call(ks.kvWrite(width(x)), [
            at(x),
            `KV${n.attrs.cache}${n.attrs.slot === "k" ? "K" : "V"}[${layer}]`,
            "pos",
          ]);
          break;
        case "loop": {
          const b = n.body!;
          const copy = (to: number, from: number, w: number, ind: string) => {
            if (off(to) !== off(from))
              lines.push(`${ind}A.copyWithin(${off(to)}, ${off(from)}, ${off(from) + w});`);
          };
          b.params.forEach((p, k) => copy(p.id, n.inputs[k]!, p.shape[0]!, indent));
          lines.push(`${indent}for (let l = 0; l < ${n.attrs.count}; l++) {`);
          emitGraph(b, true, `${indent}  `);
          b.params.forEach((p, k) => copy(p.id, b.results[k]!, p.shape[0]!, `${indent}  `));
          lines.push(`${indent}}`);
          break;
        }
        case "loop_result":
          break;
        default:
          throw new SpecError(
            n.loc,
            `no cpu kernel for \`${n.op}\` (a pattern the fusion pass should have folded)`,
          );
      }
    }
  };
  emitGraph(graph, false, "  ");
  const result = graph.results[0]!;
  const kernels = [...ks.kernels.values()];
  // Kernel scratch goes after the activations, in the heap where the WebAssembly kernels can reach it.
  let at = Math.ceil(manifest.arenaBytes / 64) * 16;
  const views = [`LOGITS = A.subarray(${off(result)}, ${off(result) + width(result)});`];
  for (const [name, floats] of ks.scratch) {
    views.push(`${name} = A.subarray(${at}, ${at + floats});`);
    at += Math.ceil(floats / 16) * 16;
  }
  const full: Manifest = { ...manifest, arenaBytes: at * 4 };
  const wasm = ks.wasm.size ? Buffer.from(ks.wasm.binary()).toString("base64") : "";
  const source = [
    header,
    prelude,
    `export const manifest = ${JSON.stringify(full, null, 2)} as const;`,
    "",
    "/** The WebAssembly kernels (text in the comment below), assembled; base64. */",
    `export const wasm = ${JSON.stringify(wasm)};`,
    ks.wasm.size ? `/*\n${ks.wasm.text()}*/` : "",
    "",
    ...[...ks.scratch.keys()].map((name) => `let ${name}: Float32Array = LOGITS;`),
    ...kernels.flatMap((k) => k.statics),
    "",
    ...kernels.map((k) => k.source),
    "/** One token at position `pos` through the whole model; returns a view of the logits in the arena. */",
    "export function forward(rt: Runtime, token: number, pos: number): Float32Array {",
    "  F16 = rt.f16;",
    "  K = rt.kernels;",
    "  const A = rt.arena;",
    "  if (A !== ARENA) {",
    "    ARENA = A;",
    ...views.map((v) => `    ${v}`),
    "  }",
    ...vars,
    ...lines,
    "  return LOGITS;",
    "}",
    "",
  ].join("\n");
  return { source, kernels: kernels.length, manifest: full };
}
