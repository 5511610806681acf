// The generated module: kernels, the forward pass (the schedule, with its per-layer loop) and the
// manifest. The module imports nothing: a compiled model runs with the runtime alone.

import { type Manifest, schemesOf } from "../../runtime/manifest.ts";
import { q8RegionBytes } from "../../runtime/q8-kernels.ts";
import { ROWS8 } from "../../runtime/quant/rows8.ts";
import { type Graph, layerForms, type Node } from "../ir/graph.ts";
import { SpecError } from "../lang/errors.ts";
import type { ActivationPlan } from "../plan/activations.ts";
import { KernelSet, PREFILL_BYTES, PREFILL_MAX } from "./kernels.ts";

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

/**
 * The chosen experts of MoE op \`moe\` in \`layer\` (top-k ids at s[so..]): returns their matrices' byte
 * addresses in the heap, gate, up and down for each pick in order. The runtime loads offloaded experts
 * into device slots here. The array is the runtime's own, reused: read it before the next call for the op.
 */
export type Experts = (moe: number, layer: number, s: Float32Array, so: number) => Float64Array;

/** The residual stream x[xo..] as layer \`layer\` leaves it: the runtime may guess the next layer's experts
 * from it (through that layer's norm and router) and load them ahead of their use. */
export type Prefetch = (moe: number, layer: number, x: Float32Array, xo: number) => void;

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
  /** The whole heap (base 0): the expert kernels read their matrices at the addresses \`experts\` gives. */
  heap: Packed;
  experts: Experts;
  /** One expert's gate, up and down byte addresses (the batched prefill fetches each expert once per
   * batch); reused like \`experts\`'s array. */
  expert: (moe: number, layer: number, expert: number) => Float64Array;
  prefetch: Prefetch;
}

let F16: Float32Array = new Float32Array(0);
let K: Record<string, Kernel> = {};
/** Views of the arena (the logits, kernel scratch), made once per arena rather than once per token. */
let ARENA: Float32Array | undefined;
let LOGITS: Float32Array = new Float32Array(0);
`;

/** A MoE op as the fused graph has it: the expert kernel, its router, and the norm in front of the router. */
export interface MoeOp {
  node: Node;
  route: Node;
  inLoop: Node | undefined;
  /** The norm weight in front of the router and its eps, when there is one. */
  norm?: string;
  eps?: number;
  /** The hidden state that norm reads (the residual stream), and whether it is still intact in the arena
   * right after the router runs: without a residual epilogue on the expert kernel (whose output is then
   * the stream after the experts), prefetch reads it there. */
  stream?: number;
  streamLive: boolean;
}

/** Every `moe_ffn` of the fused graph with its `route`, in walk order (the order of the manifest's `moe`). */
export function moeOps(graph: Graph): MoeOp[] {
  const out: MoeOp[] = [];
  const visit = (g: Graph, inLoop: Node | undefined) => {
    const at = new Map(g.nodes.map((n, i) => [n.id, i]));
    for (const n of g.nodes) {
      if (n.body) visit(n.body, n);
      if (n.op !== "moe_ffn") continue;
      const ri = at.get(n.inputs[1]!);
      const route = ri === undefined ? undefined : g.nodes[ri];
      if (route?.op !== "route") {
        throw new Error(`moe_ffn %${n.id} does not read a route in its own graph`);
      }
      const op: MoeOp = { node: n, route, inLoop, streamLive: false };
      const src = at.get(route.inputs[0]!);
      const normNode = src === undefined ? undefined : g.nodes[src];
      if (route.weights.norm) {
        op.norm = route.weights.norm;
        op.eps = route.attrs.norm_eps as number;
        op.stream = route.inputs[0]!;
      } else if (normNode?.op === "rms_norm") {
        op.norm = normNode.weights.weight!;
        op.eps = normNode.attrs.eps as number;
        op.stream = normNode.inputs[0]!;
      }
      if (op.stream !== undefined) {
        // Live at the route's step (so the route's output cannot overlap it): defined outside this node
        // list (a carried value or one read from outside the loop), a result, or read at or after the route.
        const s = op.stream;
        op.streamLive =
          !at.has(s) || g.results.includes(s) || g.nodes.slice(ri!).some((m) => m.inputs.includes(s));
      }
      out.push(op);
    }
  };
  visit(graph, undefined);
  return out;
}

export interface EmitInput {
  graph: Graph;
  plan: ActivationPlan;
  manifest: Manifest;
  header: string;
  /** Which schemes' products use their integer piece (CompileOptions.integerProducts); default all. */
  integer?: (scheme: string) => boolean;
}

/** The weights each op reads through its products (matrix × activations), by role. */
const PRODUCT_ROLES: Record<string, readonly string[]> = {
  linear: ["w"],
  gate_up: ["gate", "up"],
  moe_ffn: ["gate", "up", "down"],
};

/**
 * The matrices to store 8 rows interleaved (runtime/quant/rows8.ts): read by products only (not an
 * embedding table that is also the output head, not a router), rows in eights (per expert), and in a
 * scheme whose products read that layout (`interleaved`) in some layer. The runtime repacks them as they
 * load; the kernels of their products read the layout.
 */
export function rows8Weights(
  graph: Graph,
  manifest: Pick<Manifest, "weights">,
  interleaved: (scheme: string) => boolean,
): Set<string> {
  const product = new Set<string>();
  const other = new Set<string>();
  const visit = (g: Graph) => {
    for (const n of g.nodes) {
      if (n.body) visit(n.body);
      const roles = PRODUCT_ROLES[n.op] ?? [];
      for (const [role, key] of Object.entries(n.weights)) (roles.includes(role) ? product : other).add(key);
    }
  };
  visit(graph);
  const fits = (w: Manifest["weights"][number]) =>
    product.has(w.key) &&
    !other.has(w.key) &&
    w.shape.length >= 2 &&
    w.shape.at(-2)! % ROWS8 === 0 &&
    schemesOf(w).some(interleaved);
  return new Set(manifest.weights.filter(fits).map((w) => w.key));
}

export function emitModule({ graph, plan, manifest: planned, header, integer }: EmitInput): {
  source: string;
  kernels: number;
  /** The manifest with the arena grown by the kernels' scratch. */
  manifest: Manifest;
} {
  const ks = new KernelSet();
  ks.kvType = planned.kvType ?? "f32";
  if (integer) ks.wasm.integer = integer;
  ks.rows8 = rows8Weights(graph, planned, (s) => ks.wasm.interleaved(s));
  const vars: string[] = [];
  const varOf = new Map<string, string>();
  const manifest: Manifest = {
    ...planned,
    weights: planned.weights.map((w) => (ks.rows8.has(w.key) ? { ...w, rows8: true } : w)),
  };
  // Only the weights the forward pass reads directly: expert stacks are reached through rt.experts, and an
  // offloaded expert stack is not in rt.weights at all.
  const used = new Set<string>();
  const weightVars = () =>
    manifest.weights.flatMap((w) => {
      const v = varOf.get(w.key)!;
      if (!used.has(w.key)) return [];
      return [
        `  const ${v} = rt.${w.shape.length === 1 ? "vectors" : "weights"}[${JSON.stringify(w.key)}]; // ${w.key} [${w.shape}] ${w.scheme}`,
      ];
    });
  manifest.weights.forEach((w, i) => varOf.set(w.key, w.shape.length === 1 ? `V${i}` : `W${i}`));
  const moes = moeOps(graph);
  const moeOfRoute = new Map(moes.map((m, i) => [m.route.id, { op: m, index: i }]));
  const moeIndex = new Map(moes.map((m, i) => [m.node.id, i]));
  if (moes.length) vars.push("  const HP = rt.heap;");
  // The current sequence's caches (rt.kv), which forward and prefill read; decode is given each token's.
  const kvVars = manifest.kv.flatMap((_, c) => [
    `  const KV${c}K = rt.kv[${2 * c}];`,
    `  const KV${c}V = rt.kv[${2 * c + 1}];`,
  ]);
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

  // A node whose scheme differs by layer gets one kernel per distinct form and a module-level table of
  // them by layer, which the loop indexes: still one loop, the choice per layer is data.
  let loopCount = 0;
  const tables = new Map<string, string>();
  /** The kernel a node's call names: one function, or `BY_LAYERn[l]`; undefined when a form has none. */
  const kernelOf = (n: Node, make: (form: Node) => string | undefined): string | undefined => {
    const { forms, table } = layerForms(n, loopCount);
    const names = forms.map(make);
    if (names.some((k) => k === undefined)) return undefined;
    if (names.length === 1) return names[0];
    const entries = `[${table.map((i) => names[i]).join(", ")}]`;
    if (!tables.has(entries)) tables.set(entries, `BY_LAYER${tables.size}`);
    return `${tables.get(entries)}[l]`;
  };
  const kernel = (n: Node, make: (form: Node) => string): string => kernelOf(n, make)!;
  /** The cache a K or V product writes. */
  const cacheOf = (n: Node, layer: string, ctx: Ctx) =>
    ctx.kv(n.attrs.cache as number, n.attrs.kv as string, layer);
  /** The arena index of the staging row for a product of `width` into a narrower cache. */
  const staging = (width: number) => `((${ks.kvStaging(width)}.byteOffset - A.byteOffset) >> 2)`;

  /**
   * How a node's kernel call is written. The forward pass: one token (`token`, `pos`), values at their
   * arena offsets. The prefill: `b` is the token in the batch; values at `b · STRIDE` past their offsets.
   */
  interface Ctx {
    batch: boolean;
    /** A batch of independent sequences' next tokens (batched decoding), not one sequence's prompt. */
    decode: boolean;
    at: (id: number) => string;
    pos: string;
    token: string;
    /** Cache `c`'s K or V (`slot` "k" or "v") of a layer: the module's own, or token b's sequence's. */
    kv: (c: number, slot: string, layer: string) => string;
  }
  const step: Ctx = {
    batch: false,
    decode: false,
    at: (id) => `A, ${off(id)}`,
    pos: "pos",
    token: "token",
    kv: (c, slot, layer) => `KV${c}${slot === "k" ? "K" : "V"}[${layer}]`,
  };
  const prefill: Ctx = { ...step, batch: true, pos: "P[b]" };
  const perToken = (ctx: Ctx): Ctx => ({
    ...ctx,
    at: (id) => `A, ${off(id)} + b * STRIDE`,
    token: "tokens[b]",
  });
  const decode: Ctx = {
    ...prefill,
    decode: true,
    kv: (c, slot, layer) => `S[b]![${2 * c + (slot === "k" ? 0 : 1)}]![${layer}]!`,
  };

  /** Nodes of the top-level graph whose values every token needs (the rest only serve the last token's
   * logits): the layer loop, writes to the KV caches, and whatever those read. */
  const allTokens = (g: Graph): Set<number> => {
    const need = new Set<number>();
    const outside = (b: Graph): number[] => {
      const inner = new Set([...b.params.map((p) => p.id), ...b.nodes.map((m) => m.id)]);
      return b.nodes.flatMap((m) => [
        ...m.inputs.filter((i) => !inner.has(i)),
        ...(m.body ? outside(m.body) : []),
      ]);
    };
    for (const n of [...g.nodes].reverse()) {
      const effect = n.op === "loop" || n.op === "kv_write" || n.op === "attend" || n.attrs.kv !== undefined;
      if (!effect && !need.has(n.id)) continue;
      need.add(n.id);
      for (const i of n.inputs) need.add(i);
      if (n.body) for (const i of outside(n.body)) need.add(i);
    }
    return need;
  };

  const emitGraph = (g: Graph, layered: boolean, indent: string, ctx: Ctx) => {
    const W = (key: string) => {
      used.add(key);
      return `${varOf.get(key)}[${layered && manifest.weights.find((w) => w.key === key)!.layers ? "l" : 0}]`;
    };
    const layer = layered ? "l" : "0";
    // Batched decoding needs every token's logits; a prompt only its last token's.
    const need = ctx.batch && !ctx.decode && !layered ? allTokens(g) : undefined;
    for (const n of g.nodes) {
      const x = n.inputs[0]!;
      const call = (k: string, args: string[]) => lines.push(`${indent}${k}(${args.join(", ")});`);
      const normArg = n.weights.norm ? [W(n.weights.norm)] : [];
      // The prefill: a batched kernel where there is one, else the one-token kernel for each token (or,
      // outside the layer loop, for the last token only when only the logits need the node).
      if (ctx.batch && n.op !== "loop" && n.op !== "loop_result") {
        const lastOnly = need !== undefined && !need.has(n.id);
        if (!lastOnly && emitBatched(n, x, W, layer, normArg, indent, ctx)) continue;
        const first = lastOnly ? "n - 1" : "0";
        // A prompt's batches before its last need no logits (ModelInstance.prefill says which).
        lines.push(`${indent}${lastOnly ? "if (logits) " : ""}for (let b = ${first}; b < n; b++) {`);
        emitOne(n, x, W, layer, normArg, `${indent}  `, perToken(ctx), layered);
        lines.push(`${indent}}`);
        continue;
      }
      if (n.op === "loop") {
        const b = n.body!;
        const copy = (to: number, from: number, w: number, ind: string) => {
          if (off(to) === off(from)) return;
          const range = `${off(to)}${ctx.batch ? " + b * STRIDE" : ""}, ${off(from)}${ctx.batch ? " + b * STRIDE" : ""}, ${off(from) + w}${ctx.batch ? " + b * STRIDE" : ""}`;
          lines.push(
            ctx.batch
              ? `${ind}for (let b = 0; b < n; b++) A.copyWithin(${range});`
              : `${ind}A.copyWithin(${range});`,
          );
        };
        b.params.forEach((p, k) => copy(p.id, n.inputs[k]!, p.shape[0]!, indent));
        lines.push(`${indent}for (let l = 0; l < ${n.attrs.count}; l++) {`);
        loopCount = n.attrs.count as number;
        emitGraph(b, true, `${indent}  `, ctx);
        loopCount = 0;
        b.params.forEach((p, k) => copy(p.id, b.results[k]!, p.shape[0]!, `${indent}  `));
        lines.push(`${indent}}`);
        continue;
      }
      emitOne(n, x, W, layer, normArg, indent, ctx, layered);
    }
  };

  /** The prefill's batched kernel call for a node, when it has one (its products have a matrix-matrix kernel). */
  const emitBatched = (
    n: Node,
    x: number,
    W: (key: string) => string,
    layer: string,
    normArg: string[],
    indent: string,
    ctx: Ctx,
  ): boolean => {
    const call = (k: string, args: string[]) => lines.push(`${indent}${k}(${args.join(", ")});`);
    const at = (id: number) => `A, ${off(id)}`;
    switch (n.op) {
      case "linear": {
        // A bias or q/k norm epilogue runs with the one-token kernel, token by token.
        if (n.weights.bias || n.weights.post_norm) return false;
        const k = kernelOf(n, (f) => ks.linearBatch(f, width(x)));
        if (!k) return false;
        const cache = n.attrs.kv === undefined ? undefined : cacheOf(n, layer, ctx);
        // A prompt's rows go straight into an f32 cache, consecutively; each token of a decoding batch
        // has its own sequence's cache, so its row goes through the staging copy like a narrower type's.
        const staged = cache && (ks.kvType !== "f32" || ctx.decode) ? staging(n.shape[0]!) : undefined;
        const dest = staged
          ? `A, ${staged}, STRIDE`
          : cache
            ? `${cache}, P[0] * ${n.shape[0]}, ${n.shape[0]}`
            : `${at(n.id)}, STRIDE`;
        const args = [W(n.weights.w!), at(x), ...normArg, dest];
        if (n.attrs.residual) args.push(at(n.inputs[1]!));
        if (n.attrs.rope_heads !== undefined) args.push("P");
        call(k, [...args, "n"]);
        if (staged)
          lines.push(
            `${indent}for (let b = 0; b < n; b++) ${ks.kvWrite(n.shape[0]!)}(A, ${staged} + b * STRIDE, ${cache}, P[b]);`,
          );
        return true;
      }
      case "gate_up": {
        const k = kernelOf(n, (f) => ks.gateUpBatch(f, width(x)));
        if (!k) return false;
        call(k, [W(n.weights.gate!), W(n.weights.up!), at(x), ...normArg, at(n.id), "n"]);
        return true;
      }
      case "moe_ffn": {
        const gate = manifest.weights.find((w) => w.key === n.weights.gate)!;
        const index = moeIndex.get(n.id)!;
        const k = kernelOf(n, (f) =>
          ks.moeFfnBatch(f, width(x), gate.shape[1]!, width(n.inputs[1]!) / 2, manifest.moe![index]!.experts),
        );
        if (!k) return false;
        const args = ["rt", String(index), layer, at(x), at(n.inputs[1]!), at(n.id)];
        if (n.attrs.residual) args.push(at(n.inputs[2]!));
        call(k, [...args, "n"]);
        return true;
      }
      case "attend": {
        // Each token of a decoding batch attends to its own sequence's caches: the one-token call.
        if (ctx.decode) return false;
        const c = n.attrs.cache as number;
        call(ks.attend(n), [at(x), ctx.kv(c, "k", layer), ctx.kv(c, "v", layer), "P[0]", at(n.id), "n"]);
        return true;
      }
      default:
        return false;
    }
  };

  /** One token's kernel call for a node. */
  const emitOne = (
    n: Node,
    x: number,
    W: (key: string) => string,
    layer: string,
    normArg: string[],
    indent: string,
    ctx: Ctx,
    layered: boolean,
  ) => {
    const call = (k: string, args: string[]) => lines.push(`${indent}${k}(${args.join(", ")});`);
    const at = ctx.at;
    switch (n.op) {
      case "embed": {
        const table = manifest.weights.find((w) => w.key === n.weights.table)!;
        call(ks.embed(n, table.shape[0]!, table.scheme), [
          W(n.weights.table!),
          ctx.token,
          at(n.id),
          "rt.decode",
        ]);
        break;
      }
      case "linear": {
        const cache = n.attrs.kv === undefined ? undefined : cacheOf(n, layer, ctx);
        // A narrower cache gets the row through f32 staging in the arena, converted by the cache write.
        const staged = cache && ks.kvType !== "f32" ? staging(n.shape[0]!) : undefined;
        const dest = staged
          ? `A, ${staged}${ctx.batch ? " + b * STRIDE" : ""}`
          : cache
            ? `${cache}, ${ctx.pos} * ${n.shape[0]}`
            : at(n.id);
        const post = [n.weights.bias, n.weights.post_norm].filter((k) => k !== undefined).map(W);
        const args = [W(n.weights.w!), at(x), ...normArg, ...post, dest];
        if (n.attrs.residual) args.push(at(n.inputs[1]!));
        if (n.attrs.rope_heads !== undefined) args.push(ctx.pos);
        call(
          kernel(n, (f) => ks.linear(f, width(x))),
          args,
        );
        if (staged)
          call(ks.kvWrite(n.shape[0]!), [`A, ${staged}${ctx.batch ? " + b * STRIDE" : ""}`, cache!, ctx.pos]);
        break;
      }
      case "gate_up":
        call(
          kernel(n, (f) => ks.gateUp(f, width(x))),
          [W(n.weights.gate!), W(n.weights.up!), at(x), ...normArg, at(n.id)],
        );
        break;
      case "route": {
        call(
          kernel(n, (f) => ks.route(f, width(x))),
          [W(n.weights.router!), at(x), ...normArg, at(n.id)],
        );
        const moe = moeOfRoute.get(n.id);
        if (moe && !ctx.batch) {
          // Right after the router: the runtime finds (or loads) the chosen experts.
          const { op, index } = moe;
          lines.push(`${indent}const E${index} = rt.experts(${index}, ${layer}, ${at(n.id)});`);
          // Without a residual epilogue, the stream before the experts is the best guess there is.
          if (layered && !op.node.attrs.residual && op.stream !== undefined && op.streamLive)
            lines.push(`${indent}rt.prefetch(${index}, l, ${at(op.stream)});`);
        }
        break;
      }
      case "moe_ffn": {
        const gate = manifest.weights.find((w) => w.key === n.weights.gate)!;
        const index = moeIndex.get(n.id)!;
        // The prefill asks for each token's experts here, right before they run.
        if (ctx.batch)
          lines.push(`${indent}const E${index} = rt.experts(${index}, ${layer}, ${at(n.inputs[1]!)});`);
        const args = ["HP", `E${index}`, at(x), at(n.inputs[1]!), at(n.id)];
        if (n.attrs.residual) args.push(at(n.inputs[2]!));
        call(
          kernel(n, (f) => ks.moeFfn(f, width(x), gate.shape[1]!, width(n.inputs[1]!) / 2)),
          args,
        );
        // The residual stream with this layer's experts added: the next layer's router will read it
        // after only its attention, so the runtime guesses that layer's experts from it.
        if (layered && n.attrs.residual && !ctx.batch)
          lines.push(`${indent}rt.prefetch(${index}, l, ${at(n.id)});`);
        break;
      }
      case "attend": {
        const c = n.attrs.cache as number;
        call(ks.attend(n), [at(x), ctx.kv(c, "k", layer), ctx.kv(c, "v", layer), ctx.pos, at(n.id), "1"]);
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
      case "scale":
        call(ks.elementwise(n), [at(x), at(n.id)]);
        break;
      case "bias":
        call(ks.elementwise(n), [at(x), W(n.weights.bias!), at(n.id)]);
        break;
      case "sigmoid_gate": {
        const args = [at(x), at(n.inputs[1]!), W(n.weights.weight!), at(n.id)];
        if (n.attrs.residual) args.push(at(n.inputs[2]!));
        call(ks.sigmoidGate(n, width(n.inputs[1]!)), args);
        break;
      }
      case "softmax":
        call(ks.softmax(n), [at(x), at(n.id)]);
        break;
      case "rope":
        call(ks.rope(n), [at(x), at(n.id), ctx.pos]);
        break;
      case "kv_write":
        call(ks.kvWrite(width(x)), [
          at(x),
          ctx.kv(n.attrs.cache as number, n.attrs.slot as string, layer),
          ctx.pos,
        ]);
        break;
      case "loop_result":
        break;
      default:
        throw new SpecError(
          n.loc,
          `no cpu kernel for \`${n.op}\` (a pattern the fusion pass should have folded)`,
        );
    }
  };
  emitGraph(graph, false, "  ", step);
  const stepLines = lines.splice(0);
  emitGraph(graph, false, "  ", prefill);
  const batchLines = lines.splice(0);
  emitGraph(graph, false, "  ", decode);
  const decodeLines = lines.splice(0);
  const result = graph.results[0]!;
  const kernels = [...ks.kernels.values()];
  // Kernel scratch goes after the activations, in the heap where the WebAssembly kernels can reach it.
  let at = Math.ceil(manifest.arenaBytes / 64) * 16;
  const views = [`LOGITS = A.subarray(${off(result)}, ${off(result) + width(result)});`];
  /** A view of `count` elements at float `at` of the arena; returns the floats it takes, in whole 64 bytes. */
  const view = (name: string, count: number, type: "f32" | "f64" | "i32", at: number) => {
    const floats = type === "f64" ? 2 * count : count;
    views.push(
      type === "f64"
        ? `${name} = new Float64Array(A.buffer, A.byteOffset + ${at * 4}, ${count});`
        : type === "i32"
          ? `${name} = new Int32Array(A.buffer, A.byteOffset + ${at * 4}, ${count});`
          : `${name} = A.subarray(${at}, ${at + floats});`,
    );
    return Math.ceil(floats / 16) * 16;
  };
  for (const [name, { count, type, shared }] of ks.scratch) if (!shared) at += view(name, count, type, at);
  // The prefill runs up to `tokens` tokens at once, each with its own copy of the arena (activations and
  // scratch), `at` floats apart; the forward pass uses the first copy.
  const tokens = Math.max(1, Math.min(PREFILL_MAX, Math.floor(PREFILL_BYTES / (at * 4))));
  // After the copies: the matrix-vector integer kernels' quantized vector (runtime/q8-kernels.ts).
  let arenaBytes = tokens * at * 4;
  let q8Scratch: Manifest["q8Scratch"];
  if (ks.wasm.q8Bytes) {
    q8Scratch = { offset: arenaBytes, bytes: Math.ceil(ks.wasm.q8Bytes / 64) * 64 };
    arenaBytes += q8RegionBytes(q8Scratch.bytes);
  }
  // Then the scratch a call uses once for all the batch's tokens.
  const sharedAt = arenaBytes;
  for (const [name, { count, type, shared }] of ks.scratch)
    if (shared) arenaBytes += 4 * view(name, count, type, arenaBytes / 4);
  const sharedScratch =
    arenaBytes > sharedAt ? { offset: sharedAt, bytes: arenaBytes - sharedAt } : undefined;
  const full: Manifest = {
    ...manifest,
    arenaBytes,
    prefill: { tokens, strideBytes: at * 4 },
    ...(q8Scratch && { q8Scratch }),
    ...(sharedScratch && { sharedScratch }),
  };
  const base64 = (relaxed: boolean) =>
    ks.wasm.size ? Buffer.from(ks.wasm.binary(relaxed)).toString("base64") : "";
  const last = `(n - 1) * STRIDE + ${off(result)}`;
  const source = [
    header,
    prelude,
    `export const manifest = ${JSON.stringify(full, null, 2)} as const;`,
    "",
    "/** Tokens the prefill runs at once, and the floats between one token's copy of the arena and the next. */",
    `export const PREFILL = ${tokens};`,
    `const STRIDE = ${at};`,
    "",
    "/** The WebAssembly kernels (text in the comment below), assembled; base64. The runtime runs the",
    " * relaxed-SIMD twin (fused multiply-adds) where the engine accepts it. */",
    `export const wasm = ${JSON.stringify(base64(false))};`,
    `export const wasmRelaxed = ${JSON.stringify(base64(true))};`,
    ks.wasm.size ? `/*\n${ks.wasm.text()}*/` : "",
    "",
    ...[...ks.scratch].map(([name, { type }]) =>
      type === "f64"
        ? `let ${name}: Float64Array = new Float64Array(0);`
        : type === "i32"
          ? `let ${name}: Int32Array = new Int32Array(0);`
          : `let ${name}: Float32Array = LOGITS;`,
    ),
    ...kernels.flatMap((k) => k.statics),
    "",
    ...kernels.map((k) => k.source),
    ...(tables.size ? ["/** Kernels by layer, for ops whose weight's scheme differs by layer. */"] : []),
    ...[...tables].map(([entries, name]) => `const ${name} = ${entries};`),
    "/** The runtime's tables, kernels and arena views, made once per arena rather than once per call. */",
    "function bind(rt: Runtime): Float32Array {",
    "  F16 = rt.f16;",
    "  K = rt.kernels;",
    "  const A = rt.arena;",
    "  if (A !== ARENA) {",
    "    ARENA = A;",
    ...views.map((v) => `    ${v}`),
    "  }",
    "  return A;",
    "}",
    "",
    "/** One token at position `pos` through the whole model; returns a view of the logits in the arena. */",
    "export function forward(rt: Runtime, token: number, pos: number): Float32Array {",
    "  const A = bind(rt);",
    ...weightVars(),
    ...vars,
    ...kvVars,
    ...stepLines,
    "  return LOGITS;",
    "}",
    "",
    "/**",
    " * A prompt's tokens (1 to PREFILL of them) at positions pos0, pos0 + 1, … through the whole model at",
    " * once: every matrix with a matrix-matrix kernel is read once for all of them, the experts once per",
    " * batch for the tokens that chose them, attention stays causal per token, and the KV caches get every",
    " * position. Returns a view of the last token's logits (the only ones computed; not computed, and the",
    " * view's contents stale, when `logits` is false: a long prompt's batches before its last).",
    " */",
    "export function prefill(rt: Runtime, tokens: ArrayLike<number>, pos0: number, logits = true): Float32Array {",
    "  const n = tokens.length;",
    "  if (!(n >= 1 && n <= PREFILL)) throw new RangeError(`prefill takes 1 to ${PREFILL} tokens, not ${n}`);",
    "  const A = bind(rt);",
    "  const P = Int32Array.from({ length: n }, (_, b) => pos0 + b);",
    ...weightVars(),
    ...vars,
    ...kvVars,
    ...batchLines,
    `  return A.subarray(${last}, ${last} + ${width(result)});`,
    "}",
    "",
    "/**",
    " * One next token for each of up to PREFILL independent sequences (a server's parallel slots): token b at",
    " * position P[b] of the sequence whose KV caches are S[b] (as rt.kv holds one sequence's). Every",
    " * matrix with a matrix-matrix kernel and every chosen expert is read once for the whole batch; each",
    " * token attends to its own sequence. Returns a view of each token's logits.",
    " */",
    "export function decode(rt: Runtime, tokens: ArrayLike<number>, P: ArrayLike<number>, S: readonly Float32Array[][][]): Float32Array[] {",
    "  const n = tokens.length;",
    "  if (!(n >= 1 && n <= PREFILL && P.length === n && S.length === n))",
    "    throw new RangeError(`decode takes 1 to ${PREFILL} tokens, each with a position and caches`);",
    "  const A = bind(rt);",
    ...weightVars(),
    ...vars,
    ...decodeLines,
    `  return Array.from({ length: n }, (_, b) => A.subarray(b * STRIDE + ${off(result)}, b * STRIDE + ${off(result) + width(result)}));`,
    "}",
    "",
  ].join("\n");
  return { source, kernels: kernels.length, manifest: full };
}
