// `moec quantize --rules SPEC`: a rule that names layers (`layer[0, 3].w_down`) gives those layers'
// tensors its scheme and the others the next rule's, so a file can be written with per-layer schemes as
// llama.cpp's presets write them; and the compiler reads such a file back as it is.
import { describe, expect, it } from "vitest";
import { compileModel } from "./compile.ts";
import { compileSource, loadSpec } from "./lang/frontend.ts";
import { ruleChoice } from "./quantize-rules.ts";

describe("quantize --rules with layer lists", () => {
  const spec = loadSpec("test/fixtures/tiny-mixed.moe");
  const model = spec.models[0]!;
  const choose = ruleChoice(model, spec.quants[0]!, undefined, "tiny-mixed.moe");
  const scheme = (name: string, dims: number[]) => {
    const c = choose({ name, dims });
    return c.keep ? "kept" : c.scheme;
  };

  it("each layer's tensor gets its layer's rule", () => {
    const down = [0, 1, 2, 3].map((l) => scheme(`blk.${l}.ffn_down_exps.weight`, [256, 256, 4]));
    expect(down).toEqual(["q6_k", "q4_k", "q4_k", "q6_k"]);
    const gate = [0, 1, 2, 3].map((l) => scheme(`blk.${l}.ffn_gate_exps.weight`, [256, 256, 4]));
    expect(gate).toEqual(["q4_k", "q5_k", "q5_k", "q4_k"]);
    // Layers no listed rule names fall to the default.
    expect(scheme("blk.0.attn_k.weight", [256, 128])).toBe("q4_0");
    expect(scheme("blk.1.attn_k.weight", [256, 128])).toBe("q3_k");
  });

  it("the choices are the compiler's: the manifest gives the same scheme per layer", () => {
    const compiled = compileModel(spec, model, { quant: spec.quants[0]! });
    const down = compiled.manifest.weights.find((w) => w.key === "layer.w_down")!;
    expect(down.schemes).toEqual(["q6_k", "q4_k", "q4_k", "q6_k"]);
  });

  it("a layer list naming a layer twice, or ranges that overlap, still names each layer once", () => {
    const source = `${spec.file}`;
    expect(source).toBeTruthy();
    const text = `model m {
  param vocab = 32, hidden = 64, layers = 4
  weights {
    emb : [vocab, hidden] <- "token_embd.weight"
    layer[i < layers] { w : [hidden, hidden] <- "blk.{i}.w.weight" }
  }
  forward(tokens) {
    x = embed(emb, tokens)
    for i < layers { x = x + linear(x, layer[i].w) }
    return linear(x, emb)
  }
}
quantization q for m {
  layer[0-2, 1, 2-3].w : q8_0
  default : f16
}`;
    const s = compileSource(text, "m.moe");
    const q = s.quants[0]!;
    expect([0, 1, 2, 3].map((l) => q.schemeFor("layer.w", l))).toEqual(["q8_0", "q8_0", "q8_0", "q8_0"]);
  });
});
