// Plans for the real Mixtral specs checked against figures worked out by hand here, from the
// published shapes and GGUF's block sizes (q4_k: 144 bytes per 256 weights; f16: 2 bytes).
import { describe, expect, it } from "vitest";
import { loadSpec } from "../lang/frontend.ts";
import { planDevice } from "./device.ts";

const GiB = 2 ** 30;

function handFigures(
  o: {
    hidden: number;
    layers: number;
    kvHeads: number;
    headDim: number;
    ffn: number;
    experts: number;
    vocab: number;
  },
  bytesPerWeight: number,
  context: number,
) {
  const attn = o.hidden * o.hidden * 2 + o.hidden * o.kvHeads * o.headDim * 2; // wq, wo, wk, wv
  const router = o.experts * o.hidden * 4; // f32, as llama.cpp keeps it
  const norms = 2 * o.hidden * 4; // f32 vectors
  const dense =
    o.layers * (attn * bytesPerWeight + router + norms) +
    2 * o.vocab * o.hidden * bytesPerWeight +
    o.hidden * 4;
  const expertEach = 3 * o.ffn * o.hidden * bytesPerWeight;
  const kv = o.layers * 2 * o.kvHeads * o.headDim * 2 * context; // f16 K and V
  // Peak activations: the last step holds the final hidden state and the logits.
  const arena = o.hidden * 4 + o.vocab * 4;
  return { dense, expertEach, experts: expertEach * o.experts * o.layers, kv, arena };
}

const m87 = { hidden: 4096, layers: 32, kvHeads: 8, headDim: 128, ffn: 14336, experts: 8, vocab: 32000 };
const m822 = { hidden: 6144, layers: 56, kvHeads: 8, headDim: 128, ffn: 16384, experts: 8, vocab: 32000 };

describe("device plans for Mixtral", () => {
  const cases = [
    { file: "specs/mixtral-8x7b.moe", shape: m87, quant: "q4_k", bpw: 144 / 256, budget: 24 * GiB },
    { file: "specs/mixtral-8x7b.moe", shape: m87, quant: "f16", bpw: 2, budget: 80 * GiB },
    { file: "specs/mixtral-8x22b.moe", shape: m822, quant: "q4_k", bpw: 144 / 256, budget: 24 * GiB },
    { file: "specs/mixtral-8x22b.moe", shape: m822, quant: "f16", bpw: 2, budget: 80 * GiB },
  ];
  for (const c of cases) {
    it(`${c.file} at ${c.quant} in ${c.budget / GiB} GiB with an 8k context`, () => {
      const model = loadSpec(c.file).models[0]!;
      const p = planDevice({ model, quant: c.quant, budgetBytes: c.budget, context: 8192 });
      const h = handFigures(c.shape, c.bpw, 8192);
      expect(p.weights.dense_bytes).toBe(h.dense);
      expect(p.weights.expert_bytes).toBe(h.experts);
      expect(p.experts.bytes_each).toBe(h.expertEach);
      expect(p.kv_cache_bytes).toBe(h.kv);
      expect(p.arena_bytes).toBe(h.arena);
      const slots = Math.min(
        8,
        Math.floor((c.budget - h.dense - h.kv - h.arena) / h.expertEach / c.shape.layers),
      );
      expect(p.experts.cache_slots_per_layer).toBe(slots);
      expect(p.fits).toBe(slots >= 2);
      if (p.fits) {
        expect(p.device_bytes).toBeLessThanOrEqual(c.budget);
        expect(p.device_bytes).toBe(h.dense + slots * c.shape.layers * h.expertEach + h.kv + h.arena);
      }
      const minimum = h.dense + h.arena + 2 * h.expertEach * c.shape.layers;
      expect(p.max_context).toBe(Math.floor((c.budget - minimum) / (h.kv / 8192)));
    });
  }

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
