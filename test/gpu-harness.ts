// Shared by the GPU backends' tests: compile a spec for a backend and for the CPU on the same random
// weights, and step both through the same tokens.
import { expect } from "vitest";
import { compileModel } from "../compiler/compile.ts";
import { loadSpec } from "../compiler/lang/frontend.ts";
import type { Quant } from "../compiler/pipeline.ts";
import type { GpuModule } from "../runtime/gpu/model.ts";
import { GpuModel } from "../runtime/gpu/model.ts";
import type { KvType } from "../runtime/kv-type.ts";
import type { MemoryOptions } from "../runtime/memory/place.ts";
import { importModuleSource, ModelInstance } from "../runtime/model.ts";
import { getScheme } from "../runtime/quant/registry.ts";
import { randomWeights, type WeightSource } from "../runtime/weights.ts";

export interface GpuPair {
  gpu: GpuModel;
  cpu: ModelInstance;
  weights: WeightSource;
}

export async function compileGpuAndCpu(
  specPath: string,
  quant: Quant,
  backend: string,
  o: {
    seed?: number;
    maxContext?: number;
    memory?: MemoryOptions;
    features?: string;
    kvType?: KvType;
    /** Sequences with their own KV caches (a server's parallel slots). */
    sequences?: number;
  } = {},
): Promise<GpuPair> {
  const spec = loadSpec(specPath);
  const model = spec.models[0]!;
  // Features named without f16 cannot hold the default f16 cache: then f32, unless the test says.
  const asked = o.kvType ?? (o.features !== undefined && !o.features.includes("f16") ? "f32" : undefined);
  const gpuCompiled = compileModel(spec, model, { quant, maxContext: o.maxContext, backend, kvType: asked });
  // The CPU twin stores the same KV type, so the two differ only in their arithmetic. It multiplies by the
  // activations as the GPU backends do: quantized to q8_0 where the scheme's GPU pieces read them so (q8_0,
  // q4_0), in f32 for the others, whose CPU products otherwise quantize them (q8_K for the k-quants, q8_0
  // blocks for q4_1, q5_0 and q5_1): a rounding the GPU does not share, which flips routing on these tiny
  // models.
  const kvType = gpuCompiled.manifest.kvType;
  const cpuCompiled = compileModel(spec, model, {
    quant,
    maxContext: o.maxContext,
    kvType,
    integerProducts: (s) => getScheme(s).wgsl?.q8 === true,
  });
  const weights = randomWeights(cpuCompiled.manifest, { seed: o.seed ?? 7 });
  const gpuModule = (await importModuleSource(gpuCompiled.files["model.js"]!)) as unknown as GpuModule;
  const cpu = new ModelInstance(await importModuleSource(cpuCompiled.files["model.js"]!), weights);
  // The webgpu features to use (MOEC_WEBGPU_FEATURES), when a test names them.
  const was = process.env.MOEC_WEBGPU_FEATURES;
  if (o.features !== undefined) process.env.MOEC_WEBGPU_FEATURES = o.features;
  let gpu: GpuModel;
  try {
    gpu = await GpuModel.load(gpuModule, weights, { ...o.memory, sequences: o.sequences });
  } finally {
    if (was === undefined) delete process.env.MOEC_WEBGPU_FEATURES;
    else process.env.MOEC_WEBGPU_FEATURES = was;
  }
  return { gpu, cpu, weights };
}

/**
 * How far a GPU backend's logits may be from the CPU's: largest |Δ| over the largest |logit|. 1e-4 where
 * both multiply f32 activations (measured about 1e-6: only the summation order differs). For schemes whose GPU
 * pieces quantize activations (q8_0, q4_0; compileGpuAndCpu's CPU twin then does too) 2e-2: the two sum in different orders, so an
 * activation can differ in its last bit, and one that sits on a rounding boundary of its q8 block then
 * lands one step (max|x| / 127) away, which on these tiny models moves the logits by up to about 1e-2 (measured
 * 8.8e-3: tiny-mixtral, seed 7, prompt [1, 7], position 2, where the CPU differs from the reference executor
 * by the same 8.7e-3 and the routing is far from a tie). Greedy tokens must still be equal.
 */
export function logitTolerance(quant: string): number {
  return getScheme(quant).wgsl?.q8 ? 2e-2 : 1e-4;
}

/**
 * The same with the KV caches in f16 (webgpu's `f16` feature, as llama.cpp keeps them): each K and V is
 * rounded to 11 significant bits (a relative 2^-12), which moves the attention outputs and so the logits
 * by about 5e-4 of the largest (measured 4.6e-4: tiny-mixtral f32, prompt [1, 2, 3]): 2e-3. For the q8
 * schemes, activations that move that much cross q8 rounding boundaries far more often than an ulp does
 * (above): measured 2.0e-2 (tiny-mixtral q4_0), so 6e-2. A greedy token may then differ from the CPU's
 * where the CPU's two best logits are that close.
 */
export function logitToleranceF16(quant: string): number {
  return getScheme(quant).wgsl?.q8 ? 6e-2 : 2e-3;
}

/** Largest |a − b| over the largest |b| (at least 1). */
export function relativeDiff(a: Float32Array, b: Float32Array): number {
  let scale = 1;
  let err = 0;
  for (let i = 0; i < b.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]!));
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
  }
  return err / scale;
}

export function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

/**
 * Greedy decoding from `prompt` on both, `n` tokens (both fed the CPU's pick); the logits' largest relative
 * difference, and each step where the GPU picked another token with the CPU's gap from its own pick to the
 * GPU's over its largest |logit|: a near-tie when that gap is within the logits' difference.
 */
export async function greedyBoth(p: GpuPair, prompt: number[], n: number) {
  const cpuTokens: number[] = [];
  const gpuTokens: number[] = [];
  const differ: { step: number; gap: number }[] = [];
  let worst = 0;
  let token = prompt[0]!;
  for (let pos = 0; pos < prompt.length + n - 1; pos++) {
    const c = p.cpu.step(token, pos);
    const cpuLogits = Float32Array.from(c);
    const g = await p.gpu.step(token, pos);
    worst = Math.max(worst, relativeDiff(g, cpuLogits));
    const next = pos + 1 < prompt.length ? prompt[pos + 1]! : argmax(cpuLogits);
    if (pos + 1 >= prompt.length) {
      const [mine, theirs] = [argmax(cpuLogits), argmax(g)];
      cpuTokens.push(mine);
      gpuTokens.push(theirs);
      const scale = Math.max(1, ...cpuLogits.map(Math.abs));
      if (mine !== theirs)
        differ.push({ step: cpuTokens.length - 1, gap: (cpuLogits[mine]! - cpuLogits[theirs]!) / scale });
    }
    token = next;
  }
  return { cpuTokens, gpuTokens, worst, differ };
}

/** The GPU's greedy tokens are the CPU's but for at most one near-tie: a step where the CPU's own two
 * candidates are closer than `tolerance` (the logits' allowed difference), so either order is right. */
export function expectSameOrNearTie(r: Awaited<ReturnType<typeof greedyBoth>>, tolerance: number): void {
  expect(r.differ.length, `differing steps: ${JSON.stringify(r.differ)}`).toBeLessThanOrEqual(1);
  for (const d of r.differ)
    expect(d.gap, `step ${d.step}: the CPU's gap to the GPU's pick`).toBeLessThan(tolerance);
}
