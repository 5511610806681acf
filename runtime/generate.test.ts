import { beforeAll, describe, expect, it } from "vitest";
import { compileAndLoad } from "../test/harness.ts";
import { ContextError, generate } from "./generate.ts";
import type { ModelInstance } from "./model.ts";
import { Sampler } from "./sampler.ts";

let model: ModelInstance;
beforeAll(async () => {
  model = (await compileAndLoad("specs/tiny-mixtral.moe", "q8_0", 5, 32)).generated;
});

const greedy = () => new Sampler(256, { temperature: 0 });
/** A stand-in detokenizer: token t is the letter for t mod 26. */
const letters = () => ({ push: (id: number) => String.fromCharCode(97 + (id % 26)) });

describe("generate", () => {
  it("stops at the token limit, and greedy runs repeat exactly", () => {
    const a = generate(model, [1, 2, 3], { maxTokens: 8, sampler: greedy() });
    const b = generate(model, [1, 2, 3], { maxTokens: 8, sampler: greedy() });
    expect(a.tokens).toHaveLength(8);
    expect(a.stop).toBe("length");
    expect(b.tokens).toEqual(a.tokens);
    expect(a.timings.decode_tok_s).toBeGreaterThan(0);
  });

  it("stops at an EOS token without emitting it", () => {
    const first = generate(model, [1, 2, 3], { maxTokens: 8, sampler: greedy() }).tokens;
    const r = generate(model, [1, 2, 3], { maxTokens: 8, sampler: greedy(), stopTokens: [first[2]!] });
    expect(r.stop).toBe("eos");
    expect(r.tokens).toEqual(first.slice(0, first.indexOf(first[2]!)));
  });

  it("cuts the text before a stop string, and streams exactly the final text", () => {
    const full = generate(model, [1, 2, 3], { maxTokens: 12, sampler: greedy(), text: letters() });
    const stopAt = full.text.slice(4, 6);
    let streamed = "";
    const r = generate(model, [1, 2, 3], {
      maxTokens: 12,
      sampler: greedy(),
      text: letters(),
      stopStrings: [stopAt],
      onText: (s) => (streamed += s),
    });
    expect(r.stop).toBe("stop_string");
    expect(r.text).toBe(full.text.slice(0, full.text.indexOf(stopAt)));
    expect(streamed).toBe(r.text);
  });

  it("stops when the context is full, and refuses a prompt longer than the context", () => {
    const r = generate(model, [1, 2, 3], { maxTokens: 100, sampler: greedy() });
    expect(r.stop).toBe("context");
    expect(3 + r.tokens.length).toBe(32);
    expect(() => generate(model, Array(40).fill(1), { maxTokens: 1, sampler: greedy() })).toThrow(
      ContextError,
    );
  });
});
