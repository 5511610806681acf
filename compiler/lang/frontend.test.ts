// The front end on good input: every construct of the language, and the specs in specs/.
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { schemeNames } from "../../runtime/quant/registry.ts";
import { type Graph, type Node, walk } from "../ir/graph.ts";
import type { CheckedModel } from "./check.ts";
import { SpecErrors } from "./errors.ts";
import { compileSource, loadSpec, parseSpec } from "./frontend.ts";
import { ops } from "./ops.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const specs = readdirSync(`${root}specs`)
  .filter((f) => f.endsWith(".moe"))
  .sort();

/** A small dense model; `rest` is appended after it (quantization blocks, targets). */
function dense(opts: { params?: string; weights?: string; forward?: string; rest?: string } = {}): string {
  return `model m {
  param vocab = 32, hidden = 64, layers = 2, ffn = 256, eps = 1e-6 ${opts.params ?? ""}
  weights {
    emb : [vocab, hidden]              <- "token_embd.weight"
    layer[i < layers] {
      norm   : [hidden]                <- "blk.{i}.ffn_norm.weight"
      w_gate : [ffn, hidden]           <- "blk.{i}.ffn_gate.weight"
      w_up   : [ffn, hidden]           <- "blk.{i}.ffn_up.weight"
      w_down : [hidden, ffn]           <- "blk.{i}.ffn_down.weight"
    }
    final_norm : [hidden]              <- "output_norm.weight"
    ${opts.weights ?? ""}
  }
  forward(tokens) {
    x = embed(emb, tokens)
    for i < layers {
      ${opts.forward ?? "x = x + swiglu(rms_norm(x, layer[i].norm, eps), layer[i].w_gate, layer[i].w_up, layer[i].w_down)"}
    }
    return linear(rms_norm(x, final_norm, eps), emb)
  }
}
${opts.rest ?? ""}`;
}

function model(source: string): CheckedModel {
  return compileSource(source, "test.moe").models[0]!;
}

function nodes(g: Graph, op: string): Node[] {
  return [...walk(g)].map((w) => w.node).filter((n) => n.op === op);
}

describe("the specs in specs/", () => {
  it.each(specs)("%s checks clean", (f) => {
    const spec = loadSpec(`${root}specs/${f}`);
    expect(spec.models.length).toBeGreaterThan(0);
  });

  it("a shared expert beside top-4 routed experts, without renormalization", () => {
    const m = loadSpec(`${root}specs/tiny-shared-expert.moe`).models[0]!;
    const [moe] = nodes(m.graph, "moe");
    expect(moe!.attrs).toMatchObject({ top_k: 4, normalize: false });
    expect(moe!.expert).toEqual({
      op: "swiglu",
      weights: { gate: "layer.gate", up: "layer.up", down: "layer.down" },
    });
    const shared = nodes(m.graph, "swiglu");
    expect(shared).toHaveLength(1);
    expect(shared[0]!.weights).toEqual({ gate: "layer.sh_gate", up: "layer.sh_up", down: "layer.sh_down" });
    expect(nodes(m.graph, "rope").map((n) => n.attrs.style)).toEqual(["half", "half"]);
  });

  it("a dense model: no moe, a sliding window", () => {
    const m = loadSpec(`${root}specs/mistral-7b.moe`).models[0]!;
    expect(nodes(m.graph, "moe")).toHaveLength(0);
    expect(nodes(m.graph, "swiglu")).toHaveLength(1);
    expect(nodes(m.graph, "attention")[0]!.attrs).toMatchObject({ heads: 32, kv_heads: 8, window: 4096 });
  });

  it("Mixtral 8x7B: params, GGUF tensor names with the layer index", () => {
    const m = loadSpec(`${root}specs/mixtral-8x7b.moe`).models[0]!;
    expect(Object.fromEntries(m.params)).toMatchObject({
      head_dim: 128,
      rope_theta: 1e6,
      eps: 1e-5,
      top_k: 2,
    });
    expect(m.weights.get("layer.w_gate")).toMatchObject({
      shape: [8, 14336, 4096],
      tensor: "blk.{i}.ffn_gate_exps.weight",
      group: "layer",
    });
    expect(m.groups.get("layer")!.count).toBe(32);
  });
});

describe("params", () => {
  it("reads 1e6, 1e-5 and other float forms", () => {
    const m = model(dense({ params: ", a = 1e6, b = 1e-5, c = 2.5E+3, d = .5, e = 3." }));
    expect(Object.fromEntries(m.params)).toMatchObject({ a: 1e6, b: 1e-5, c: 2500, d: 0.5, e: 3 });
  });

  it("evaluates + - * / with precedence, parentheses and unary minus", () => {
    const m = model(
      dense({ params: ", a = 2 + 3 * 4, b = (2 + 3) * 4, c = 20 / 2 / 5, d = -(1 - 3), e = 10 - 2 - 3" }),
    );
    expect(Object.fromEntries(m.params)).toMatchObject({ a: 14, b: 20, c: 2, d: 2, e: 5 });
  });

  it("may refer to params declared after them", () => {
    const m = model(dense({ params: ", q = p * 2, p = half + 1, half = hidden / 2" }));
    expect(Object.fromEntries(m.params)).toMatchObject({ half: 32, p: 33, q: 66 });
  });
});

describe("lexical", () => {
  it("skips // and /* */ comments anywhere between tokens", () => {
    const src = `// leading comment
/* a block
   comment */ model m { param vocab = 32, /* inline */ hidden = 64 // trailing
  param layers = /* mid-expression */ 2, ffn = 256 /* width */ / 1, eps = 1e-6
  weights { emb : [vocab, hidden] <- "a//b/*c*/" layer[i < layers] { norm : [hidden] <- "n.{i}" w_gate : [ffn, hidden] <- "g.{i}" w_up : [ffn, hidden] <- "u.{i}" w_down : [hidden, ffn] <- "d.{i}" } final_norm : [hidden] }
  forward(tokens) { x = embed(emb, tokens) for i < layers { x = x + swiglu(x, layer[i].w_gate, layer[i].w_up, layer[i].w_down) } return linear(x, emb) } }
// no newline at the end`;
    const m = model(src);
    expect(m.params.get("ffn")).toBe(256);
    // A comment marker inside a string is part of the string.
    expect(m.weights.get("emb")!.tensor).toBe("a//b/*c*/");
  });

  it("carries strings as data: a tensor name cannot become code", () => {
    const evil = `"); process.exit(1); ("`;
    const m = model(
      dense({
        weights: `head : [vocab, hidden] <- "output.weight\\"); process.exit(1); (\\""
    extra : [hidden] <- "x\\\\y\\t\\{i\\}"`,
      }),
    );
    expect(m.weights.get("head")!.tensor).toBe(`output.weight${evil}`);
    expect(m.weights.get("extra")!.tensor).toBe("x\\y\t{i}");
  });

  it("identifiers are [A-Za-z_][A-Za-z0-9_]*: anything else is a syntax error", () => {
    for (const bad of ["model m.x { }", "model m-x { }", "model é { }", 'model "m" { }', "model 1m { }"]) {
      expect(() => parseSpec(bad, "t.moe"), bad).toThrow(SpecErrors);
    }
    expect(parseSpec("model _m_1 { }", "t.moe").models[0]!.name).toBe("_m_1");
  });

  it("reuses one parser instance: specs parsed back to back, after a failure too", () => {
    const a = dense();
    const b = readFileSync(`${root}specs/tiny-shared-expert.moe`, "utf8");
    expect(compileSource(a, "a.moe").models[0]!.name).toBe("m");
    expect(compileSource(b, "b.moe").models[0]!.name).toBe("tiny_shared");
    expect(() => compileSource("model m {", "bad.moe")).toThrow(SpecErrors);
    const again = compileSource(a, "a.moe").models[0]!;
    expect(again.name).toBe("m");
    expect(again.weights.size).toBe(6);
    expect(compileSource(b, "b.moe").models[0]!.weights.get("layer.sh_down")!.shape).toEqual([64, 128]);
  });
});

describe("forward", () => {
  it("binds named and positional arguments alike, named ones in any order, defaults filled in", () => {
    const down = "\n x = x + linear(h, layer[i].w_down)";
    const positional = model(
      dense({ forward: `h = linear(rms_norm(x, layer[i].norm, 1e-5), layer[i].w_gate)${down}` }),
    );
    const named = model(
      dense({ forward: `h = linear(w: layer[i].w_gate, x: rms_norm(weight: layer[i].norm, x: x))${down}` }),
    );
    const mixed = model(
      dense({
        forward: `h = linear(rms_norm(x, eps: 1e-5, weight: layer[i].norm), w: layer[i].w_gate)${down}`,
      }),
    );
    for (const m of [positional, named, mixed]) {
      const [norm] = nodes(m.graph, "rms_norm");
      expect(norm!.attrs).toEqual({ eps: 1e-5 });
      expect(norm!.weights).toEqual({ weight: "layer.norm" });
      expect(nodes(m.graph, "linear")[0]!.weights).toEqual({ w: "layer.w_gate" });
    }
  });

  it("`+` and `*` on tensors are add and mul", () => {
    const m = model(dense({ forward: "h = rms_norm(x, layer[i].norm, eps)\n x = x + h * silu(h)" }));
    expect(nodes(m.graph, "mul")).toHaveLength(1);
    expect(nodes(m.graph, "add")).toHaveLength(1);
    expect(nodes(m.graph, "silu")).toHaveLength(1);
  });

  it("one loop node over the layers, carrying x", () => {
    const m = model(dense());
    const loops = m.graph.nodes.filter((n) => n.op === "loop");
    expect(loops).toHaveLength(1);
    expect(loops[0]!.attrs).toEqual({ count: 2, index: "i" });
    expect(loops[0]!.body!.params.map((p) => p.name)).toEqual(["x"]);
  });
});

describe("quantization", () => {
  const rules = `quantization q for m {
  layer[*].w_* : q4_0        // gate, up, down
  layer[*].w_up : q8_0       // never used: the rule above already took w_up
  layer[1].norm : f16
  *norm : bf16               // one segment: a weight's own name, in a group or not
  default : q4_k
}
quantization uniform for m { default : q4_k }
quantization none for m { }`;

  it("first matching rule wins; * globs; group[*] and group[N]; one segment matches anywhere", () => {
    const q = compileSource(dense({ rest: rules }), "t.moe").quants[0]!;
    expect(q.schemeFor("layer.w_gate", 0)).toBe("q4_0");
    expect(q.schemeFor("layer.w_up", 1)).toBe("q4_0");
    expect(q.schemeFor("layer.w_down", 1)).toBe("q4_0");
    expect(q.schemeFor("layer.norm", 1)).toBe("f16");
    expect(q.schemeFor("layer.norm", 0)).toBe("bf16");
    expect(q.schemeFor("final_norm")).toBe("bf16");
    // default: rows of 64 are not a multiple of q4_k's 256-element block, so f16.
    expect(q.schemeFor("emb")).toBe("f16");
  });

  it("layer lists and inclusive ranges: group[0, 2-3]", () => {
    const spec = compileSource(
      dense({
        rest: `quantization q for m {
  layer[0, 2-3].w_down : q8_0
  layer[*].w_down : q4_0
  default : f16
}`,
      }).replace("layers = 2", "layers = 5"),
      "t.moe",
    );
    const q = spec.quants[0]!;
    expect([0, 1, 2, 3, 4].map((l) => q.schemeFor("layer.w_down", l))).toEqual([
      "q8_0",
      "q4_0",
      "q8_0",
      "q8_0",
      "q4_0",
    ]);
    expect(q.decl.rules[0]!.patterns[0]!.text).toBe("layer[0, 2-3].w_down");
  });

  it("default: vectors stay f32, rows off the block fall back to f16", () => {
    const [, uniform, none] = compileSource(dense({ rest: rules }), "t.moe").quants;
    expect(uniform!.schemeFor("layer.w_down", 0)).toBe("q4_k"); // rows of 256
    expect(uniform!.schemeFor("layer.w_gate", 0)).toBe("f16"); // rows of 64
    expect(uniform!.schemeFor("layer.norm", 0)).toBe("f32");
    expect(uniform!.schemeFor("final_norm")).toBe("f32");
    expect(none!.schemeFor("layer.w_down", 0)).toBe("f32");
  });

  it("an explicit rule whose block does not divide the rows is an error, unless an earlier rule took them", () => {
    expect(() =>
      compileSource(dense({ rest: "quantization q for m { layer[*].w_gate : q4_k }" }), "t.moe"),
    ).toThrow(/rows of 64, not a multiple of q4_k's block of 256/);
    const ok = "quantization q for m { layer[*].w_gate : f16\n layer[*].w_* : q4_k }";
    expect(() => compileSource(dense({ rest: ok }), "t.moe")).toThrow(/`layer.w_up` has rows of 64/);
    const fine = "quantization q for m { layer[*].w_gate, layer[*].w_up : f16\n layer[*].w_* : q4_k }";
    expect(compileSource(dense({ rest: fine }), "t.moe").quants[0]!.schemeFor("layer.w_down", 0)).toBe(
      "q4_k",
    );
  });
});

describe("targets", () => {
  it("reads sizes in B, KiB, MiB, GiB, KB, MB, GB (with or without a space)", () => {
    const units: [string, number][] = [
      ["512 B", 512],
      ["512", 512],
      ["2 KiB", 2048],
      ["3 MiB", 3 * 2 ** 20],
      ["24 GiB", 24 * 2 ** 30],
      ["24GiB", 24 * 2 ** 30],
      ["1.5 GiB", 1.5 * 2 ** 30],
      ["2 KB", 2000],
      ["3 MB", 3e6],
      ["80 GB", 80e9],
    ];
    const targets = units
      .map(([s], k) => `target t${k} { backend: cpu, memory: ${s}, max_context: 64 }`)
      .join("\n");
    const spec = compileSource(dense({ rest: targets }), "t.moe");
    expect(spec.targets.map((t) => t.memoryBytes)).toEqual(units.map(([, b]) => b));
  });

  it("reads every key: backend, vram|memory, host_memory, max_context, batch; commas optional", () => {
    const spec = compileSource(
      dense({
        rest: `target gpu { backend: webgpu, vram: 24 GiB, host_memory: 64 GiB, max_context: 8192, batch: 4 }
target small { backend: "gpujs" memory: 1 GB max_context: 16 }`,
      }),
      "t.moe",
    );
    expect(spec.targets[0]).toMatchObject({
      backend: "webgpu",
      memoryBytes: 24 * 2 ** 30,
      hostMemoryBytes: 64 * 2 ** 30,
      maxContext: 8192,
      batch: 4,
    });
    expect(spec.targets[1]).toMatchObject({ backend: "gpujs", memoryBytes: 1e9, maxContext: 16, batch: 1 });
  });
});

describe("the language guide (docs/language.md)", () => {
  const section = readFileSync(`${root}docs/language.md`, "utf8");

  it("documents every built-in op, its arguments, and every scheme", () => {
    for (const op of Object.values(ops)) {
      // The op's item in the list: from its "- **`name`**" to the next item.
      const at = section.indexOf(`- **\`${op.name}\`**`);
      expect(at, op.name).toBeGreaterThanOrEqual(0);
      const item = section.slice(at, section.indexOf("\n- **", at + 1));
      for (const a of op.args) expect(item, `${op.name}(${a.name})`).toContain(`\`${a.name}\``);
    }
    for (const s of schemeNames()) expect(section).toContain(s);
  });

  it("its complete example checks clean", () => {
    const example = /```moe\n([\s\S]*?)```/.exec(section)![1]!;
    const spec = compileSource(example, "docs/language.md");
    expect(spec.models.map((m) => m.name)).toEqual(["tiny_moe"]);
    expect(spec.quants[0]!.schemeFor("layer.wq", 0)).toBe("q8_0");
    expect(spec.quants[0]!.schemeFor("layer.w_up", 1)).toBe("q4_0");
  });
});
