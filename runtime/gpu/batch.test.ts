// The webgpu backend's batch program (runtime/gpu/batch.ts, compiler/codegen/gpu/batch.ts).
//
// The batched prefill against stepping the same model token by token, and the CPU backend's greedy
// continuation after it: on every tiny spec, for f32, q8_0, q4_0 and q4_k, a prompt longer than one batch
// (40 tokens, B = 32) and a continuation at pos0 > 0, fully resident and under a device budget that
// offloads experts.
//
// Batched decoding (GpuModel.stepBatch): several sequences at different positions, one token each per
// step, in any order, one sitting out a step. Each sequence's logits must be exactly those it gets decoded
// alone through the batch program, and within the prefill's tolerance of the per-token program's.
//
// Tolerances, prefill against stepping (largest |Δ| over the largest |logit|): the two run the same
// arithmetic per token but sum a row's products in a different order (the matrix-matrix kernel in one
// sequence per row, the per-token kernel in a tree of partial sums), so f32 activations differ in their
// last bits: 1e-5 for schemes that multiply f32 activations (measured about 1e-6). Schemes that quantize
// activations to q8 (q8_0, q4_0) get the same bound as against the CPU (logitTolerance, 2e-2; see
// test/gpu-harness.ts): an activation a last bit away from a q8 rounding boundary lands one step away.
import { afterAll, describe, expect, it } from "vitest";
import {
  argmax,
  compileGpuAndCpu,
  type GpuPair,
  logitTolerance,
  relativeDiff,
} from "../../test/gpu-harness.ts";
import { needsWebGpu } from "../../test/machine.ts";
import { withSequences } from "../manifest.ts";
import { measureDevice, minimumSlots } from "../memory/device-plan.ts";
import { getScheme } from "../quant/registry.ts";

const PROMPT = Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % 256);
const MORE = [5, 250, 17, 3, 99, 128, 64, 1, 200];
const NEW = 4;

const open: GpuPair[] = [];
afterAll(() => {
  for (const p of open) p.gpu.close();
});

const stepTolerance = (quant: string) => (getScheme(quant).wgsl?.q8 ? logitTolerance(quant) : 1e-5);

async function stepAll(p: GpuPair, tokens: number[], pos0: number): Promise<Float32Array> {
  let logits = new Float32Array(0);
  for (let i = 0; i < tokens.length; i++) logits = Float32Array.from(await p.gpu.step(tokens[i]!, pos0 + i));
  return logits;
}

/** Prefill (prompt, then a continuation at pos0 = prompt.length) against stepping on the same model,
 * then greedy tokens after it against the CPU's. */
async function check(p: GpuPair, quant: string, what: string) {
  const tol = stepTolerance(quant);
  const stepped = await stepAll(p, PROMPT, 0);
  const steppedMore = await stepAll(p, MORE, PROMPT.length);
  // Every position is rewritten before it is read, so the same model serves both.
  const pre = Float32Array.from(await p.gpu.prefill(PROMPT, 0));
  expect(relativeDiff(pre, stepped), `${what}: prompt`).toBeLessThan(tol);
  const preMore = Float32Array.from(await p.gpu.prefill(MORE, PROMPT.length));
  expect(relativeDiff(preMore, steppedMore), `${what}: continuation at ${PROMPT.length}`).toBeLessThan(tol);

  // Greedy after the prefill, against the CPU through the same tokens.
  const all = [...PROMPT, ...MORE];
  let cpu = new Float32Array(0);
  for (let pos = 0; pos < all.length; pos++) cpu = Float32Array.from(p.cpu.step(all[pos]!, pos));
  let gpu = preMore;
  const cpuTokens: number[] = [];
  const gpuTokens: number[] = [];
  let worst = 0;
  for (let i = 0; i < NEW; i++) {
    worst = Math.max(worst, relativeDiff(gpu, cpu));
    const next = argmax(cpu);
    cpuTokens.push(next);
    gpuTokens.push(argmax(gpu));
    cpu = Float32Array.from(p.cpu.step(next, all.length + i));
    gpu = Float32Array.from(await p.gpu.step(next, all.length + i));
  }
  expect(gpuTokens, `${what}: greedy tokens`).toEqual(cpuTokens);
  expect(worst, `${what}: logits against the CPU`).toBeLessThan(logitTolerance(quant));
  return { pre, stepped };
}

async function load(spec: string, quant: string, o: Parameters<typeof compileGpuAndCpu>[3] = {}) {
  // An f32 KV cache unless a test asks: a batch's attention and stepping's then read the same K and V (with
  // the f16 default they may differ by an f16 rounding, which the attention tests bound).
  const p = await compileGpuAndCpu(spec, quant, "webgpu", { maxContext: 64, kvType: "f32", ...o });
  open.push(p);
  return p;
}

describe("webgpu batched prefill", needsWebGpu(), () => {
  for (const spec of ["specs/tiny-mixtral.moe", "specs/tiny-shared-expert.moe", "specs/tiny-top1.moe"]) {
    it(`${spec}: prefill gives stepping's logits and the CPU's greedy tokens`, async () => {
      for (const quant of ["f32", "q8_0", "q4_0", "q4_k"]) {
        const p = await load(spec, quant);
        expect(p.gpu.prefillBatch, "a batch of 32 fits").toBe(32);
        await check(p, quant, `${spec} ${quant}`);
        p.gpu.close();
        open.splice(open.indexOf(p), 1);
      }
    }, 600_000);
  }

  it("under a device budget that offloads experts: each used expert fetched once per batch", async () => {
    const probe = await load("specs/tiny-mixtral.moe", "q8_0");
    const m = probe.gpu.manifest;
    const budget = measureDevice(m, minimumSlots(m)).used;
    const p = await load("specs/tiny-mixtral.moe", "q8_0", { memory: { deviceBudget: budget } });
    expect(p.gpu.placed.caches.length).toBeGreaterThan(0);
    await check(p, "q8_0", "offloaded");
    expect(p.gpu.memory().peak_device_bytes).toBeLessThanOrEqual(budget);

    // One batch: per MoE layer each distinct expert the batch chose is located once (a hit or a miss), so
    // demand is at most experts × layers, where stepping demands top-k per token per layer.
    const moe = m.moe![0]!;
    const before = p.gpu.memory();
    const uploaded = p.gpu.uploadedBytes;
    await p.gpu.prefill(PROMPT.slice(0, 32), 0);
    const after = p.gpu.memory();
    const demand = (s: typeof before) => s.expert_hits! + s.expert_misses!;
    expect(demand(after) - demand(before)).toBeLessThanOrEqual(moe.experts * moe.layers);
    expect(demand(after) - demand(before)).toBeGreaterThanOrEqual(moe.topK * moe.layers);
    // Uploads: the frame, the 32 token ids and positions, per layer the token lists (at most 32 · k
    // entries and a count per expert), and the experts that missed.
    const lists = moe.layers * (32 * moe.topK + moe.experts) * 4;
    const misses = after.bytes_loaded! - before.bytes_loaded!;
    expect(p.gpu.uploadedBytes - uploaded).toBeLessThanOrEqual(12 + 32 * 8 + lists + misses);
  }, 600_000);

  it("weights split by rows under a lowered binding limit, and batches of what fits", async () => {
    // f32 tiny-mixtral: the [256, 64] tables (64 KiB) in two buffers under 32 KiB, and as many copies of a
    // token's arena (about 8 KiB with the batch's scratch) as fit 32 KiB, so the 40-token prompt runs in
    // many short batches.
    process.env.MOEC_WEBGPU_MAX_BINDING = "32768";
    try {
      const p = await load("specs/tiny-mixtral.moe", "f32");
      expect(p.gpu.placed.weights.get("lm_head")![0]!.buffers.length).toBe(2);
      const stride = p.gpu.module.program.batch!.stride;
      expect(p.gpu.prefillBatch).toBe(Math.floor(32768 / (stride * 4)));
      expect(p.gpu.prefillBatch).toBeGreaterThan(1);
      expect(p.gpu.prefillBatch).toBeLessThan(32);
      await check(p, "f32", "split");
    } finally {
      delete process.env.MOEC_WEBGPU_MAX_BINDING;
    }
  }, 300_000);

  it("where two arena copies do not fit a binding, prefill steps token by token, with the same logits", async () => {
    // The tiny arena is a few KiB: a 4608-byte binding limit holds one copy only (and splits the weights;
    // a KV cache of 32 positions is 4 KiB).
    process.env.MOEC_WEBGPU_MAX_BINDING = "4608";
    try {
      const p = await load("specs/tiny-mixtral.moe", "q8_0", { maxContext: 32 });
      expect(p.gpu.prefillBatch).toBe(1);
      const stepped = await stepAll(p, PROMPT.slice(0, 5), 0);
      const pre = await p.gpu.prefill(PROMPT.slice(0, 5), 0);
      expect(relativeDiff(pre, stepped)).toBe(0);
    } finally {
      delete process.env.MOEC_WEBGPU_MAX_BINDING;
    }
  }, 120_000);
});

describe("webgpu batched decoding", needsWebGpu(), () => {
  const prompts = [[1, 2, 3, 4, 5], [9, 8], [7], [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]];
  const STEPS = 5;

  /** Each prompt decoded greedily alone (a model of one sequence), through the batch program and through
   * the per-token program from the same tokens: the logits of every step. */
  async function alone(p: GpuPair) {
    const batch: Float32Array[][] = [];
    const stepped: Float32Array[][] = [];
    for (const prompt of prompts) {
      const first = argmax(await p.gpu.prefill(prompt, 0));
      const tokens = [first];
      const b: Float32Array[] = [];
      for (let i = 0; i < STEPS; i++) {
        b.push(Float32Array.from((await p.gpu.stepBatch([tokens[i]!], [prompt.length + i], [0]))[0]!));
        tokens.push(argmax(b.at(-1)!));
      }
      // Again through the per-token program, from the same tokens (every KV row rewritten first).
      await p.gpu.prefill(prompt, 0);
      const s: Float32Array[] = [];
      for (let i = 0; i < STEPS; i++)
        s.push(Float32Array.from(await p.gpu.step(tokens[i]!, prompt.length + i)));
      batch.push(b);
      stepped.push(s);
    }
    return { batch, stepped };
  }

  /** The prompts in four sequences of one model, decoded together; each step's logits per sequence. */
  async function together(p: GpuPair) {
    const out: Float32Array[][] = prompts.map(() => []);
    const tokens: number[] = [];
    for (let s = 0; s < prompts.length; s++) {
      p.gpu.useSequence(s);
      tokens.push(argmax(await p.gpu.prefill(prompts[s]!, 0)));
    }
    // Sequence 2 sits out the second step, so the sequences stand at different steps afterwards too.
    const done = prompts.map(() => 0);
    for (let i = 0; i < STEPS + 1; i++) {
      const seqs = (i === 1 ? [3, 0, 1] : [3, 0, 1, 2]).filter((s) => done[s]! < STEPS);
      const got = await p.gpu.stepBatch(
        seqs.map((s) => tokens[s]!),
        seqs.map((s) => prompts[s]!.length + done[s]!),
        seqs,
      );
      seqs.forEach((s, k) => {
        out[s]!.push(Float32Array.from(got[k]!));
        tokens[s] = argmax(got[k]!);
        done[s]!++;
      });
    }
    return out;
  }

  async function check(quant: string, o: Parameters<typeof compileGpuAndCpu>[3] = {}) {
    const one = await load("specs/tiny-mixtral.moe", quant, o);
    const ref = await alone(one);
    one.gpu.close();
    open.splice(open.indexOf(one), 1);
    const four = await load("specs/tiny-mixtral.moe", quant, { ...o, sequences: 4 });
    expect(four.gpu.decodeBatch).toBeGreaterThan(1);
    const got = await together(four);
    prompts.forEach((_, s) => {
      expect(got[s]!.length).toBe(STEPS);
      got[s]!.forEach((l, i) => {
        expect(l, `${quant}: sequence ${s}, step ${i}: as alone`).toEqual(ref.batch[s]![i]);
        expect(
          relativeDiff(l, ref.stepped[s]![i]!),
          `${quant}: sequence ${s}, step ${i}: as stepped`,
        ).toBeLessThan(stepTolerance(quant));
      });
    });
    return four;
  }

  it("each sequence gets exactly its logits alone, close to the per-token program's", async () => {
    for (const quant of ["f32", "q8_0", "q4_0", "q4_k"]) {
      const p = await check(quant);
      await expect(p.gpu.stepBatch([1, 2], [0, 0], [1, 1])).rejects.toThrow(/each sequence at most once/);
      await expect(p.gpu.stepBatch([1], [64], [0])).rejects.toThrow(
        /position 64 is outside the context of 64/,
      );
      await expect(p.gpu.stepBatch([1], [0], [4])).rejects.toThrow(/sequence 4 does not exist/);
      p.gpu.close();
      open.splice(open.indexOf(p), 1);
    }
  }, 600_000);

  it("under a device budget that offloads experts", async () => {
    const probe = await load("specs/tiny-mixtral.moe", "q8_0", { sequences: 4 });
    const m = probe.gpu.manifest;
    const budget = measureDevice(withSequences(m, 4), minimumSlots(m)).used;
    const p = await check("q8_0", { memory: { deviceBudget: budget } });
    expect(p.gpu.placed.caches.length).toBeGreaterThan(0);
    expect(p.gpu.memory().peak_device_bytes).toBeLessThanOrEqual(budget);

    // One step of the four: per MoE layer each distinct expert the batch chose is located once (a hit or a
    // miss), where stepping them one by one locates top-k per token per layer.
    const moe = m.moe![0]!;
    const demand = () => {
      const s = p.gpu.memory();
      return s.expert_hits! + s.expert_misses!;
    };
    const seqs = [0, 1, 2, 3];
    const tokens = [11, 22, 33, 44];
    const positions = prompts.map((q) => q.length + STEPS);
    const before = demand();
    await p.gpu.stepBatch(tokens, positions, seqs);
    const batched = demand() - before;
    for (const s of seqs) {
      p.gpu.useSequence(s);
      await p.gpu.step(tokens[s]!, positions[s]!);
    }
    const stepped = demand() - before - batched;
    expect(stepped).toBe(seqs.length * moe.topK * moe.layers);
    expect(batched).toBeLessThan(stepped);
    expect(batched).toBeLessThanOrEqual(moe.experts * moe.layers);
    expect(batched).toBeGreaterThanOrEqual(moe.topK * moe.layers);
  }, 600_000);

  it("more sequences than a batch holds decode in several batches", async () => {
    // Three copies of a token's arena fit the lowered binding limit: the four sequences take two batches.
    const probe = await load("specs/tiny-mixtral.moe", "f32");
    const stride = probe.gpu.module.program.batch!.stride;
    process.env.MOEC_WEBGPU_MAX_BINDING = String(3 * stride * 4);
    try {
      const p = await check("f32");
      expect(p.gpu.decodeBatch).toBe(3);
    } finally {
      delete process.env.MOEC_WEBGPU_MAX_BINDING;
    }
  }, 600_000);
});
