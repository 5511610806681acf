// Plans for the real Mixtral specs checked against figures worked out by hand here, from the
// published shapes, GGUF's block sizes (q4_k: 144 bytes per 256 weights; f16: 2 bytes) and what the CPU
// runtime allocates: KV caches in f16 (the default), the half-float table, the arena with the kernels' scratch.
import { describe, expect, it } from "vitest";
import { getScheme } from "../../runtime/quant/registry.ts";
import { loadSpec } from "../lang/frontend.ts";
import { devicePlanner, planDevice } from "./device.ts";

const GiB = 2 ** 30;
const F16_TABLE = 65536 * 4;

interface Shape {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  experts: number;
  vocab: number;
}

function handFigures(o: Shape, quant: string, context: number) {
  const bpw = quant === "q4_k" ? 144 / 256 : 2;
  const attn = o.hidden * o.hidden * 2 + o.hidden * o.kvHeads * o.headDim * 2; // wq, wo, wk, wv
  const router = o.experts * o.hidden * 4; // f32, as llama.cpp keeps it
  const norms = 2 * o.hidden * 4; // attn_norm, ffn_norm: f32 vectors
  const dense =
    o.layers * (attn * bpw + router + norms) +
    2 * o.vocab * o.hidden * bpw + // embeddings, head
    o.hidden * 4; // out_norm
  const expertEach = 3 * o.ffn * o.hidden * bpw;
  const kv = o.layers * 2 * o.kvHeads * o.headDim * 2 * context; // f16 K and V
  // Activations at their peak: the last step holds the final hidden state and the logits. Kernel scratch
  // (f32 unless said): the normed input of each kernel that fuses an RMS norm (q, k, v and the head: 4 ×
  // hidden), the MoE kernel's hidden vector (ffn) and, where the scheme has a WebAssembly matrix-vector
  // product, its gate and up outputs (2 × ffn); attention's running max (f32) and sums (f64), 6 f64 per KV
  // head (the threads take whole KV heads) and set of 4 query heads of its group (its other scratch is shared,
  // below); the f32 staging row of a K or V product on its way into the f16 cache (kvHeads ×
  // headDim); RoPE's cosines and sines for a position (headDim f64) and the router's probabilities (experts).
  // Each scratch array in whole 64 bytes; none grows with the context.
  const wasm = getScheme(quant).wasm !== undefined;
  const group = o.heads / o.kvHeads;
  const whole = (floats: number) => Math.ceil(floats / 16) * 16;
  const sets = o.kvHeads * Math.ceil(group / 4);
  const attention = 4 * (whole(12 * sets) + o.kvHeads * o.headDim);
  const ropeRouter = 4 * (2 * o.headDim + whole(o.experts));
  const scratch = 4 * (4 * o.hidden + o.ffn * (wasm ? 3 : 1)) + attention + ropeRouter;
  // The batched prefill's scratch (with matrix-matrix kernels): each token's hidden vector and down
  // projection per pick (top-2), and the kernels' column lists (2 × 512 i32).
  const batch = wasm ? 4 * (2 * o.ffn + 2 * o.hidden) + 4 * 2 * 512 : 0;
  // A scheme with an integer piece (runtime/quant/q8-activations.ts) quantizes each product's input first: q8_K
  // blocks of 256 (1072 bytes: the q as int16, sums and d, the q again as int8 every other 16 bytes) for the
  // k-quants, q8_0 blocks of 32 (144 bytes, likewise) for the others. The prefill keeps
  // per token one quantized hidden vector (the inputs of q, k, v, o and the experts' gate and up all have
  // `hidden` values) and the down projection's input per pick; after the copies, one region holds the
  // matrix-vector kernels' quantized vector (the widest, ffn) and a two-entry list.
  const q8 = getScheme(quant).wasm?.q8 !== undefined;
  const [block, blockBytes] = getScheme(quant).wasm?.step === 256 ? [256, 1072] : [32, 144];
  const quantized = (n: number) => (n / block) * blockBytes;
  const q8Batch = q8 ? quantized(o.hidden) + 2 * quantized(o.ffn) : 0;
  const q8Region = q8 ? Math.ceil(quantized(o.ffn) / 64) * 64 + 64 : 0;
  const stride = (o.hidden + o.vocab) * 4 + scratch + batch + q8Batch;
  // The arena holds a copy per token of the prefill's batch: 64 tokens, fewer past 16 MiB.
  // Then, once for all the batch's tokens, attention's scores (per KV head and set: a vector per key of a
  // tile of 256 and 16 past it), the sets' corrections (4), the group's scaled queries (group × headDim per KV
  // head) and the call's parameter block (16), the tile of keys transposed (headDim rows of 272 f32 per KV
  // head) and of values widened from the f16 cache (256 rows of headDim f32 per KV head).
  const shared =
    4 * (sets * 4 * 272 + whole(4 * sets) + o.heads * o.headDim + 16) +
    4 * o.kvHeads * o.headDim * (272 + 256);
  const arena = Math.min(64, Math.floor((16 * 2 ** 20) / stride)) * stride + q8Region + shared;
  return { dense, expertEach, experts: expertEach * o.experts * o.layers, kv, arena };
}

const m87 = {
  hidden: 4096,
  layers: 32,
  heads: 32,
  kvHeads: 8,
  headDim: 128,
  ffn: 14336,
  experts: 8,
  vocab: 32000,
};
const m822 = {
  hidden: 6144,
  layers: 56,
  heads: 48,
  kvHeads: 8,
  headDim: 128,
  ffn: 16384,
  experts: 8,
  vocab: 32000,
};

describe("device plans for Mixtral", () => {
  const cases = [
    { file: "specs/mixtral-8x7b.moe", shape: m87, limit: 32768, quant: "q4_k", budget: 24 * GiB },
    { file: "specs/mixtral-8x7b.moe", shape: m87, limit: 32768, quant: "f16", budget: 80 * GiB },
    { file: "specs/mixtral-8x22b.moe", shape: m822, limit: 65536, quant: "q4_k", budget: 24 * GiB },
    { file: "specs/mixtral-8x22b.moe", shape: m822, limit: 65536, quant: "f16", budget: 80 * GiB },
  ];
  for (const c of cases) {
    it(`${c.file} at ${c.quant} in ${c.budget / GiB} GiB with a 4k context`, () => {
      const model = loadSpec(c.file).models[0]!;
      const context = 4096;
      const p = planDevice({ model, quant: c.quant, budgetBytes: c.budget, context });
      const h = handFigures(c.shape, c.quant, context);
      expect(p.weights.dense_bytes).toBe(h.dense);
      expect(p.weights.expert_bytes).toBe(h.experts);
      expect(p.experts.bytes_each).toBe(h.expertEach);
      expect(p.kv_cache_bytes).toBe(h.kv);
      expect(p.arena_bytes).toBe(h.arena);
      // Every region is a multiple of 64 bytes at these sizes: no alignment padding.
      expect(p.padding_bytes).toBe(0);
      const room = c.budget - F16_TABLE - h.dense - h.kv - h.arena;
      const slots = Math.min(8, Math.floor(room / h.expertEach / c.shape.layers));
      expect(p.experts.cache_slots_per_layer).toBe(slots);
      expect(p.fits).toBe(slots >= 2);
      expect(p.device_bytes).toBe(
        F16_TABLE + h.dense + slots * c.shape.layers * h.expertEach + h.kv + h.arena,
      );
      if (p.fits) expect(p.device_bytes).toBeLessThanOrEqual(c.budget);
      expect(p.weights.offloaded_bytes).toBe(h.experts - slots * c.shape.layers * h.expertEach);
      expect(p.host_expert_bytes).toBe(slots < 8 ? h.experts : 0);
      // The largest context beside the minimum (top-2 slots per layer): its KV cache must fit (each cache in
      // 64-byte steps, one per layer, K and V); at most the model's own context.
      const kvPerToken = h.kv / context;
      const caches = 2 * c.shape.layers;
      const fixed = F16_TABLE + h.dense + 2 * h.expertEach * c.shape.layers + h.arena;
      const needs = (n: number) => fixed + caches * 64 * Math.ceil((n * kvPerToken) / caches / 64);
      let most = Math.floor((c.budget - fixed) / kvPerToken);
      while (needs(most) > c.budget) most--;
      expect(p.max_context).toBe(Math.min(c.limit, most));
    });
  }

  it("the 24 GiB cards: 8x7B keeps 7 of 8 experts per layer at q4_k; 8x22B runs 2 at 8k with the f16 cache, not with f32", () => {
    const x7 = devicePlanner(loadSpec("specs/mixtral-8x7b.moe").models[0]!, "q4_k");
    expect(x7.plan({ budgetBytes: 24 * GiB, context: 4096 }).experts.cache_slots_per_layer).toBe(7);
    const model = loadSpec("specs/mixtral-8x22b.moe").models[0]!;
    const f16 = devicePlanner(model, "q4_k").plan({ budgetBytes: 24 * GiB, context: 8192 });
    expect([f16.fits, f16.experts.cache_slots_per_layer, f16.kv_type]).toEqual([true, 2, "f16"]);
    expect(f16.kv_cache_bytes).toBe(56 * 2 * 8 * 128 * 2 * 8192);
    expect(f16.kv_bytes_per_token).toBe(56 * 2 * 8 * 128 * 2);
    const f32 = devicePlanner(model, "q4_k", "cpu", "f32").plan({ budgetBytes: 24 * GiB, context: 8192 });
    expect([f32.fits, f32.experts.cache_slots_per_layer, f32.kv_cache_bytes]).toEqual([
      false,
      1,
      2 * f16.kv_cache_bytes,
    ]);
    expect(f32.max_context).toBeLessThan(8192);
    expect(f32.shortfall!.advice).toContain(`a context of at most ${f32.max_context}`);
    // q8_0: 34 bytes per 32 values.
    const q8 = devicePlanner(model, "q4_k", "cpu", "q8_0").plan({ budgetBytes: 24 * GiB, context: 8192 });
    expect(q8.kv_cache_bytes).toBe((f16.kv_cache_bytes / 2 / 32) * 34);
  });

  it("8x22B at f16 does not fit in 24 GiB, and says what is needed", () => {
    const model = loadSpec("specs/mixtral-8x22b.moe").models[0]!;
    const p = planDevice({ model, quant: "f16", budgetBytes: 24 * GiB, context: 8192 });
    expect(p.fits).toBe(false);
    expect(p.shortfall!.needed_bytes).toBeGreaterThan(24 * GiB);
    expect(p.shortfall!.advice).toContain("smaller quantization");
  });

  it("a dense model has no experts to offload", () => {
    const model = loadSpec("specs/mistral-7b.moe").models[0]!;
    const p = planDevice({ model, quant: "q4_k", budgetBytes: 24 * GiB, context: 8192 });
    expect(p.experts.total).toBe(0);
    expect(p.fits).toBe(true);
    expect(p.weights.offloaded_bytes).toBe(0);
  });
});
