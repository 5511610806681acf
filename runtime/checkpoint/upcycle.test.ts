import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { loadMoec, maxAbsDiff, moecGreedy } from "../../test/llama/engines.ts";
import { CheckpointError } from "./errors.ts";
import { openGguf } from "./gguf-read.ts";
import { plainValue } from "./gguf-value.ts";
import { scratchDir } from "./test-support.ts";
import { upcycleGguf } from "./upcycle.ts";

const STORIES = fileURLToPath(new URL("../../models/stories260K.gguf", import.meta.url));
const { dir, cleanup } = scratchDir();
afterAll(cleanup);

function f32s(path: string, name: string): Float32Array {
  const f = openGguf(path);
  try {
    const t = f.findTensor(name)!;
    const out = new Float32Array(t.elements);
    t.scheme.decode(f.read(t), out);
    return out;
  } finally {
    f.close();
  }
}

const rms = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0) / v.length);

describe("upcycleGguf on stories260K", () => {
  const out = `${dir}/moe.gguf`;
  upcycleGguf(STORIES, out, { experts: 4, topK: 2, seed: 3, noise: 0.1, routerScale: 2 });

  it("writes a Mixtral-architecture file: expert metadata, stacked experts, a router per layer, the rest as it was", () => {
    const dense = openGguf(STORIES);
    const moe = openGguf(out);
    try {
      expect(plainValue(moe.metadata.get("llama.expert_count")!)).toBe(4);
      expect(plainValue(moe.metadata.get("llama.expert_used_count")!)).toBe(2);
      expect(plainValue(moe.metadata.get("general.architecture")!)).toBe("llama");
      for (const [k, v] of dense.metadata) {
        if (k !== "general.name") expect(moe.metadata.get(k)).toEqual(v);
      }
      for (let l = 0; l < 5; l++) {
        expect(moe.findTensor(`blk.${l}.ffn_gate.weight`)).toBeUndefined();
        expect(moe.findTensor(`blk.${l}.ffn_gate_inp.weight`)?.dims).toEqual([64, 4]);
        expect(moe.findTensor(`blk.${l}.ffn_gate_exps.weight`)?.dims).toEqual([64, 172, 4]);
        expect(moe.findTensor(`blk.${l}.ffn_up_exps.weight`)?.dims).toEqual([64, 172, 4]);
        expect(moe.findTensor(`blk.${l}.ffn_down_exps.weight`)?.dims).toEqual([172, 64, 4]);
      }
      const kept = dense.tensors.filter((t) => !/ffn_(gate|up|down)\.weight$/.test(t.name));
      expect(moe.tensors.length).toBe(kept.length + 5 * 4);
      for (const t of kept) {
        expect(Buffer.from(moe.read(moe.findTensor(t.name)!)).equals(dense.read(t)), t.name).toBe(true);
      }
    } finally {
      dense.close();
      moe.close();
    }
  });

  it("makes each expert the dense FFN times (1 + noise·N(0,1)), every expert different, the router N(0, s²/hidden)", () => {
    for (const which of ["gate", "up", "down"]) {
      const base = f32s(STORIES, `blk.2.ffn_${which}.weight`);
      const stack = f32s(out, `blk.2.ffn_${which}_exps.weight`);
      const experts = [0, 1, 2, 3].map((e) => stack.subarray(e * base.length, (e + 1) * base.length));
      for (const x of experts) {
        const rel = Array.from(x, (v, i) => (base[i] === 0 ? 0 : v / base[i]! - 1));
        expect(rms(rel)).toBeGreaterThan(0.09);
        expect(rms(rel)).toBeLessThan(0.11);
      }
      for (let a = 0; a < 4; a++)
        for (let b = a + 1; b < 4; b++) expect(maxAbsDiff(experts[a]!, experts[b]!)).toBeGreaterThan(0);
    }
    const router = f32s(out, "blk.0.ffn_gate_inp.weight");
    expect(rms(router) * Math.sqrt(64)).toBeGreaterThan(1.7);
    expect(rms(router) * Math.sqrt(64)).toBeLessThan(2.3);
  });

  it("is reproducible from its seed, and another seed gives other experts and routers", () => {
    const again = `${dir}/again.gguf`;
    const other = `${dir}/other.gguf`;
    upcycleGguf(STORIES, again, { experts: 4, topK: 2, seed: 3, noise: 0.1, routerScale: 2 });
    upcycleGguf(STORIES, other, { experts: 4, topK: 2, seed: 4, noise: 0.1, routerScale: 2 });
    expect(readFileSync(again).equals(readFileSync(out))).toBe(true);
    for (const name of ["blk.1.ffn_gate_inp.weight", "blk.1.ffn_up_exps.weight"]) {
      expect(maxAbsDiff(f32s(other, name), f32s(out, name))).toBeGreaterThan(0);
    }
  });

  it("without noise every expert is the dense FFN, so the MoE gives the dense model's logits", async () => {
    const same = `${dir}/same.gguf`;
    upcycleGguf(STORIES, same, { experts: 4, topK: 2, seed: 3, noise: 0 });
    const run = async (path: string) => {
      const m = await loadMoec(path, 64);
      try {
        return moecGreedy(m.model, m.tokenizer.encode("Once upon a time", { addBos: true }), 8);
      } finally {
        m.close();
      }
    };
    const dense = await run(STORIES);
    const moe = await run(same);
    expect(moe.tokens).toEqual(dense.tokens);
    for (let p = 0; p < dense.logits.length; p++) {
      expect(maxAbsDiff(moe.logits[p]!, dense.logits[p]!)).toBeLessThan(1e-4);
    }
    // With noise, which experts the router picks changes the logits: another router seed, other logits.
    const a = `${dir}/route-a.gguf`;
    const b = `${dir}/route-b.gguf`;
    upcycleGguf(STORIES, a, { experts: 4, topK: 2, seed: 3 });
    upcycleGguf(STORIES, b, { experts: 4, topK: 2, seed: 5 });
    const ra = await run(a);
    const rb = await run(b);
    expect(Math.max(...ra.logits.map((l, p) => maxAbsDiff(l, rb.logits[p]!)))).toBeGreaterThan(1e-2);
  });

  it("refuses a file that already has experts, and a top-k above the experts", () => {
    expect(() => upcycleGguf(out, `${dir}/twice.gguf`, { experts: 4, topK: 2 })).toThrow(CheckpointError);
    expect(() => upcycleGguf(out, `${dir}/twice.gguf`, { experts: 4, topK: 2 })).toThrow(/already/);
    expect(() => upcycleGguf(STORIES, `${dir}/k.gguf`, { experts: 2, topK: 3 })).toThrow(/topK/);
  });
});
