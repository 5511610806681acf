// spec → generated module: passes, activation plan, manifest, code generation, assembly.
// Pure: returns the files; writing them (atomically) is the caller's job.
import { DEFAULT_KV_TYPE, type KvType, KvTypeError, kvTypeProblem } from "../runtime/kv-type.ts";
import type { Manifest } from "../runtime/manifest.ts";
import { assemble } from "./codegen/assemble.ts";
import { emitModule, moeOps } from "./codegen/emit.ts";
import { gpuKernelSet } from "./codegen/gpu/backends.ts";
import { buildGpuProgram, emitGpuModule } from "./codegen/gpu/program.ts";
import "./codegen/gpujs/kernels.ts";
import "./codegen/wgsl/kernels.ts";
import type { Graph } from "./ir/graph.ts";
import { walk } from "./ir/graph.ts";
import { printGraph } from "./ir/print.ts";
import type { CheckedModel, CheckedSpec, CheckedTarget } from "./lang/check.ts";
import { SpecError } from "./lang/errors.ts";
import {
  countOps,
  type Quant,
  runPasses,
  type Stage,
  schemeResolver,
  type WeightScheme,
} from "./pipeline.ts";
import { type ActivationPlan, planActivations } from "./plan/activations.ts";

export interface CompileOptions {
  quant?: Quant;
  target?: CheckedTarget;
  /** Overrides the target's max_context (or sets one when there is no target). */
  maxContext?: number;
  /** Overrides the target's backend (default cpu): `--backend`. */
  backend?: string;
  /** Overrides the target's `kv_type:` (default f16, f32 on gpujs): `--kv-type`. */
  kvType?: KvType;
  /** Which schemes' CPU products use their integer piece (activations quantized as llama.cpp's CPU does);
   * default every scheme that has one. The GPU tests turn it off where the GPU multiplies by f32 activations,
   * so both sides compute the same numbers. */
  integerProducts?: (scheme: string) => boolean;
}

/** The KV types each backend's kernels can hold; the first is its default. */
const KV_TYPES_OF: Record<string, readonly KvType[]> = {
  cpu: [DEFAULT_KV_TYPE, "f32", "q8_0"],
  webgpu: [DEFAULT_KV_TYPE, "f32"],
  // gpu.js keeps every buffer in f32 textures: no narrower element to store in.
  gpujs: ["f32"],
};

/** The KV type a compile for `backend` stores (`asked`, or the backend's default); a type the backend or the
 * model's head size cannot hold is refused, saying which and why. */
export function kvTypeFor(backend: string, asked: KvType | undefined, headDims: readonly number[]): KvType {
  const can = KV_TYPES_OF[backend] ?? ["f32"];
  const type = asked ?? can[0]!;
  if (!can.includes(type))
    throw new KvTypeError(
      `the ${backend} backend cannot hold a ${type} KV cache (it holds ${can.join(", ")}); choose one with --kv-type or the target's kv_type`,
    );
  for (const d of headDims) {
    const why = kvTypeProblem(type, d);
    if (why) throw new KvTypeError(`${why}; choose another with --kv-type or the target's kv_type`);
  }
  return type;
}

export interface Compiled {
  model: CheckedModel;
  stages: Stage[];
  graph: Graph;
  plan: ActivationPlan;
  manifest: Manifest;
  files: Record<string, string>;
  summary: { opsBefore: number; opsAfter: number; kernels: number; arenaBytes: number };
}

/** The context a model can hold: its `context` param when it has one. */
function modelContext(m: CheckedModel): number | undefined {
  return m.params.get("context") ?? m.params.get("max_context");
}

/** The head size of every attention op of a graph. */
function headDims(graph: Graph): number[] {
  return [...walk(graph)]
    .filter(({ node }) => node.op === "attend")
    .map(({ node }) => node.shape[0]! / (node.attrs.heads as number));
}

/** The manifest's view of a checked model's weights. */
export function weightEntries(m: CheckedModel, schemeOf: (key: string) => WeightScheme): Manifest["weights"] {
  return [...m.weights.values()].map((w) => {
    const { scheme, layers } = schemeOf(w.key);
    return {
      key: w.key,
      tensor: w.tensor,
      ...(w.group ? { index: m.groups.get(w.group)!.index } : {}),
      shape: w.shape,
      layers: w.group ? m.groups.get(w.group)!.count : 0,
      scheme,
      ...(layers && { schemes: layers }),
    };
  });
}

export function buildManifest(
  m: CheckedModel,
  graph: Graph,
  quant: Quant,
  maxContext: number,
  arenaBytes: number,
  kvType: KvType = "f32",
): Manifest {
  const schemeOf = schemeResolver(m, quant);
  const kv: Manifest["kv"] = [];
  for (const { node, inLoop } of walk(graph)) {
    if (node.op !== "attend") continue;
    const heads = node.attrs.heads as number;
    kv[node.attrs.cache as number] = {
      layers: inLoop ? (inLoop.attrs.count as number) : 1,
      kvHeads: node.attrs.kv_heads as number,
      headDim: node.shape[0]! / heads,
    };
  }
  const result = [...walk(graph)].find(({ node }) => node.id === graph.results[0])!.node;
  const weights = weightEntries(m, schemeOf);
  // Each MoE op's experts, router and the norm in front of the router: the runtime places or offloads
  // the experts and guesses the next layer's picks (prefetch) from these.
  const moe: NonNullable<Manifest["moe"]> = moeOps(graph).map(({ node, route, norm, eps }) => ({
    gate: node.weights.gate!,
    up: node.weights.up!,
    down: node.weights.down!,
    router: route.weights.router!,
    experts: route.attrs.experts as number,
    topK: route.attrs.k as number,
    layers: weights.find((w) => w.key === node.weights.gate)!.layers,
    ...(norm === undefined ? {} : { norm, eps: eps! }),
  }));
  return {
    model: m.name,
    weights,
    kv,
    kvType,
    ...(moe.length ? { moe } : {}),
    maxContext,
    vocab: result.shape[0]!,
    arenaBytes,
  };
}

/**
 * The manifest a compile at a given max_context would write, without assembling the module: its arena
 * includes the kernels' scratch, so it is exactly what the runtime allocates. The passes run once; each
 * context is one code generation. The device planner uses it.
 */
export function manifestsFor(
  m: CheckedModel,
  quant: Quant,
  backend = "cpu",
  kvType?: KvType,
): (maxContext: number) => Manifest {
  const graph = runPasses(m, quant).at(-1)!.graph;
  const plan = planActivations(graph);
  const type = kvTypeFor(backend, kvType, headDims(graph));
  const memo = new Map<number, Manifest>();
  return (maxContext) => {
    let out = memo.get(maxContext);
    if (!out) {
      const planned = buildManifest(m, graph, quant, maxContext, plan.arena.size, type);
      const gpu = backend === "cpu" ? undefined : gpuKernelSet(backend);
      out = gpu
        ? buildGpuProgram(graph, plan, planned, gpu).manifest
        : emitModule({ graph, plan, manifest: planned, header: "" }).manifest;
      memo.set(maxContext, out);
    }
    return out;
  };
}

export function compileModel(spec: CheckedSpec, m: CheckedModel, opts: CompileOptions = {}): Compiled {
  const limit = modelContext(m);
  const maxContext = opts.maxContext ?? opts.target?.maxContext ?? limit ?? 4096;
  if (limit !== undefined && maxContext > limit) {
    const where = opts.target?.decl.props.find((p) => p.key === "max_context")?.valueLoc ?? m.decl.loc;
    throw new SpecError(where, `max_context ${maxContext} exceeds the model's context of ${limit}`);
  }
  const backend = opts.backend ?? opts.target?.backend ?? "cpu";
  const gpu = backend === "cpu" ? undefined : gpuKernelSet(backend);
  if (backend !== "cpu" && !gpu) {
    const where = opts.target?.decl.props.find((p) => p.key === "backend")?.valueLoc ?? opts.target?.decl.loc;
    const why = `backend \`${backend}\` has no code generator yet`;
    if (where) throw new SpecError(where, why);
    throw new Error(why);
  }
  const stages = runPasses(m, opts.quant);
  const graph = stages.at(-1)!.graph;
  const plan = planActivations(graph);
  let kvType: KvType;
  try {
    kvType = kvTypeFor(backend, opts.kvType ?? opts.target?.kvType, headDims(graph));
  } catch (e) {
    const where = opts.kvType
      ? undefined
      : opts.target?.decl.props.find((p) => p.key === "kv_type")?.valueLoc;
    if (where) throw new SpecError(where, (e as Error).message);
    throw e;
  }
  const planned = buildManifest(m, graph, opts.quant, maxContext, plan.arena.size, kvType);
  const quantName =
    opts.quant === undefined ? "f32" : typeof opts.quant === "string" ? opts.quant : opts.quant.name;
  const header = [
    `// Generated by moec from ${JSON.stringify(spec.file.split("/").pop())}: model ${m.name}, quantization ${quantName}, max_context ${maxContext}.`,
    "// Do not edit: `moec compile` writes it, and a test checks that it is reproducible byte for byte.",
  ].join("\n");
  if (gpu) return compileGpu({ spec, m, stages, graph, plan, planned, header, quantName, maxContext, gpu });
  const { source, kernels, manifest } = emitModule({
    graph,
    plan,
    manifest: planned,
    header,
    integer: opts.integerProducts,
  });
  const { ts, js } = assemble(source);
  const summary = {
    opsBefore: countOps(stages[1]!.graph),
    opsAfter: countOps(graph),
    kernels,
    arenaBytes: plan.arena.size,
  };
  const planJson = {
    model: m.name,
    quantization: quantName,
    max_context: maxContext,
    kv_type: kvType,
    arena: {
      bytes: plan.arena.size,
      buffers: plan.buffers.map((b) => ({
        value: b.id,
        bytes: b.size,
        live: [b.start, b.end],
        offset: plan.arena.offsets.get(b.id),
      })),
    },
    kv_cache_bytes: manifest.kv.reduce(
      (s, k) => s + k.layers * 2 * k.kvHeads * k.headDim * 4 * maxContext,
      0,
    ),
    weights: manifest.weights,
  };
  const readme = [
    `# ${m.name} (generated)`,
    "",
    `Compiled by \`moec compile\` from \`${spec.file.split("/").pop()}\` with quantization \`${quantName}\` and max_context ${maxContext}.`,
    "",
    "- `model.ts`: the kernels and the forward pass (TypeScript, type-checked with zero diagnostics)",
    "- `model.js`: the same, compiled to JavaScript; the runtime imports it",
    "- `plan.json`: the activation arena, KV-cache size and the weight manifest",
    "",
    `${summary.opsBefore} ops before fusion, ${summary.opsAfter} after; ${summary.kernels} kernels; activation arena ${summary.arenaBytes} bytes per token.`,
    "",
    "Kernels:",
    "",
    ...[...ts.matchAll(/^function (\w+)/gm)].map((k) => `- \`${k[1]}\``),
    "",
  ].join("\n");
  return {
    model: m,
    stages,
    graph,
    plan,
    manifest,
    files: {
      "model.ts": ts,
      "model.js": js,
      "plan.json": `${JSON.stringify(planJson, null, 2)}\n`,
      "README.md": readme,
    },
    summary,
  };
}

/** A GPU backend's module: the manifest and the program (steps and kernel sources) as data; imports nothing. */
function compileGpu(c: {
  spec: CheckedSpec;
  m: CheckedModel;
  stages: Stage[];
  graph: Graph;
  plan: ActivationPlan;
  planned: Manifest;
  header: string;
  quantName: string;
  maxContext: number;
  gpu: NonNullable<ReturnType<typeof gpuKernelSet>>;
}): Compiled {
  const build = buildGpuProgram(c.graph, c.plan, c.planned, c.gpu);
  const { ts, js } = assemble(emitGpuModule(build, c.header));
  const kernels = Object.keys(build.program.kernels);
  const summary = {
    opsBefore: countOps(c.stages[1]!.graph),
    opsAfter: countOps(c.graph),
    kernels: kernels.length,
    arenaBytes: c.plan.arena.size,
  };
  const planJson = {
    model: c.m.name,
    backend: build.program.backend,
    quantization: c.quantName,
    max_context: c.maxContext,
    kv_type: c.planned.kvType,
    arena: { bytes: c.plan.arena.size, device_bytes: build.manifest.arenaBytes },
    weights: build.manifest.weights,
  };
  const readme = [
    `# ${c.m.name} (generated, ${build.program.backend})`,
    "",
    `Compiled by \`moec compile --backend ${build.program.backend}\` from \`${c.spec.file.split("/").pop()}\` with quantization \`${c.quantName}\` and max_context ${c.maxContext}.`,
    "",
    "- `model.ts` / `model.js`: the manifest and the GPU program (steps, kernel sources); runtime/gpu runs it",
    "- `plan.json`: the arena and the weight manifest",
    "",
    `${summary.opsBefore} ops before fusion, ${summary.opsAfter} after; ${summary.kernels} kernels.`,
    "",
    "Kernels:",
    "",
    ...kernels.map((k) => `- \`${k}\``),
    "",
  ].join("\n");
  return {
    model: c.m,
    stages: c.stages,
    graph: c.graph,
    plan: c.plan,
    manifest: build.manifest,
    files: {
      "model.ts": ts,
      "model.js": js,
      "plan.json": `${JSON.stringify(planJson, null, 2)}\n`,
      "README.md": readme,
    },
    summary,
  };
}

export function dumpStages(stages: Stage[], pass: string | undefined, maxContext: number, batch = 1): string {
  // Shapes print per token; the batch and sequence dimensions are symbolic with these bounds.
  const dims = `;; every value is [B, T, ...shape] with B = ${batch}, T ≤ ${maxContext}`;
  const shown = stages.filter((s) => pass === undefined || s.pass === pass);
  return [dims, ...shown.map((s) => `;; after ${s.pass}\n${printGraph(s.graph)}`)].join("\n\n");
}
