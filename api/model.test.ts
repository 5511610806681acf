// The library on stories260K (a small trained model): answers equal to `moec run`'s generate(), alone
// or among concurrent calls, streaming, chat history, aborts, the queue and every typed error.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadForRun } from "../cli/model-source.ts";
import { generate } from "../runtime/generate.ts";
import { ModelInstance } from "../runtime/model.ts";
import { Sampler } from "../runtime/sampler.ts";
import { Detokenizer } from "../runtime/tokenizer/spm.ts";
import { needsWebGpu } from "../test/machine.ts";
import {
  AbortError,
  ContextLengthError,
  InvalidOptionError,
  InvalidPromptError,
  loadModel,
  type Model,
  ModelClosedError,
  ModelLoadError,
  NoChatTemplateError,
  QueueFullError,
} from "./index.ts";

const GGUF = "models/stories260K.gguf";
const TEMPLATE = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}";
const greedy = { temperature: 0, maxTokens: 12 };

/** What `moec run --temperature 0 -n N` generates: the runtime's own loop, one sequence. */
async function runGreedy(prompt: string, n: number): Promise<string> {
  const loaded = await loadForRun(undefined, GGUF);
  const m = new ModelInstance(loaded.module, loaded.weights, { threads: 1 });
  try {
    const t = loaded.tokenizer;
    return generate(m, t.encode(prompt, { addBos: t.addBos }), {
      maxTokens: n,
      sampler: new Sampler(m.module.manifest.vocab, { temperature: 0 }),
      stopTokens: [...t.eogIds],
      text: new Detokenizer(t, { keepLeadingSpace: true }),
    }).text;
  } finally {
    m.close();
    loaded.close();
  }
}

let model: Model;
beforeAll(async () => {
  model = await loadModel(GGUF, { threads: 1, parallel: 2, maxQueue: 2, chatTemplate: TEMPLATE });
}, 60_000);
afterAll(() => model?.close());

describe("loadModel", () => {
  it("describes the model", () => {
    expect(model.info).toMatchObject({ name: "llama", contextLength: 2048, vocabSize: 512, parallel: 2 });
    expect(model.info.hasChatTemplate).toBe(true);
  });

  it("refuses bad options and files with typed errors naming them", async () => {
    await expect(loadModel(GGUF, { threads: 0 })).rejects.toThrow(
      new InvalidOptionError("threads", "expected a whole number ≥ 1 ≤ 256, found 0"),
    );
    await expect(loadModel(GGUF, { policy: "lfu" })).rejects.toThrow(/policy: applies to the expert cache/);
    await expect(loadModel(GGUF, { vram: "lots" })).rejects.toThrow(/vram: expected a size above 0/);
    await expect(loadModel(GGUF, { kvType: "q4" as never })).rejects.toThrow(
      /kvType: expected one of f32, f16, q8_0/,
    );
    await expect(loadModel("models/none.gguf")).rejects.toThrow(
      new ModelLoadError("models/none.gguf: no such file or folder"),
    );
    await expect(loadModel("models/README.md")).rejects.toThrow(InvalidOptionError);
    await expect(loadModel(GGUF, { vram: 1000 })).rejects.toThrow(ModelLoadError);
    // Every slot's KV caches are planned with the rest: a budget that holds one sequence but not 64 refuses.
    await expect(
      loadModel(GGUF, { vram: "8MiB", threads: 1 }).then((m) => m.close()),
    ).resolves.toBeUndefined();
    await expect(loadModel(GGUF, { vram: "8MiB", parallel: 64 })).rejects.toThrow(
      /needs at least .* KV cache for 2048 tokens .*parallel 64 × context 2048/,
    );
  });
});

describe("complete and stream", () => {
  it("complete() is moec run's greedy text; stream() yields the same pieces", async () => {
    const want = await runGreedy("Once upon a time", 12);
    const done = await model.complete("Once upon a time", greedy);
    expect(done).toMatchObject({ text: want, promptTokens: 5, finishReason: "length", stop: "length" });
    expect(done.tokens).toHaveLength(12);
    const pieces: string[] = [];
    const stream = model.stream("Once upon a time", greedy);
    for (;;) {
      const r = await stream.next();
      if (r.done) {
        expect(r.value.text).toBe(want);
        break;
      }
      pieces.push(r.value);
    }
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.join("")).toBe(want);
  });

  it("concurrent calls (more than the slots) each get their answer alone", async () => {
    const prompts = ["Once upon a time", "The cat", "Lily had a ball", "Tom"];
    const alone: string[] = [];
    for (const p of prompts) alone.push((await model.complete(p, greedy)).text);
    const together = await Promise.all(prompts.slice(0, 4).map((p) => model.complete(p, greedy)));
    expect(together.map((c) => c.text)).toEqual(alone);
    expect(model.load).toEqual({ active: 0, waiting: 0, slots: 2 });
  });

  it("seeded sampling repeats; stop strings cut the text", async () => {
    const o = { maxTokens: 16, temperature: 1, seed: 7 };
    expect((await model.complete("Once upon a time", o)).text).toBe(
      (await model.complete("Once upon a time", o)).text,
    );
    const cut = await model.complete("Once upon a time", { ...greedy, stop: ["girl"] });
    expect(cut).toMatchObject({ text: ", there was a little ", finishReason: "stop", stop: "stop_string" });
  });

  it("token ids work as a prompt", async () => {
    const ids = model.tokenize("Once upon a time");
    expect((await model.complete(ids, greedy)).text).toBe(
      (await model.complete("Once upon a time", greedy)).text,
    );
  });
});

describe("webgpu with two slots", needsWebGpu(), () => {
  it("each sequence has its own KV caches on the device: concurrent calls get their answers alone", async () => {
    const one = await loadModel(GGUF, { backend: "webgpu", threads: 1 });
    const two = await loadModel(GGUF, { backend: "webgpu", threads: 1, parallel: 2 });
    try {
      // The second slot's caches are allocated (and planned) with the rest.
      expect(two.memory().peak_device_bytes).toBeGreaterThan(one.memory().peak_device_bytes);
      const prompts = ["Once upon a time", "The cat", "Lily had a ball"];
      const alone: string[] = [];
      for (const p of prompts) alone.push((await one.complete(p, greedy)).text);
      const together = await Promise.all(prompts.map((p) => two.complete(p, greedy)));
      expect(together.map((c) => c.text)).toEqual(alone);
      expect(alone[0]).toBe(await runGreedy("Once upon a time", greedy.maxTokens));
    } finally {
      one.close();
      two.close();
    }
  }, 120_000);
});

describe("aborts and the queue", () => {
  it("an abort mid-stream stops the generation and frees its slot", async () => {
    const ac = new AbortController();
    const got: string[] = [];
    await expect(
      (async () => {
        for await (const piece of model.stream("Once upon a time", { maxTokens: 500, signal: ac.signal })) {
          got.push(piece);
          if (got.length === 3) ac.abort();
        }
      })(),
    ).rejects.toThrow(AbortError);
    expect(got).toHaveLength(3);
    expect(model.load.active).toBe(0);
    // Breaking out of the loop aborts too.
    for await (const _ of model.stream("Once upon a time", { maxTokens: 500 })) break;
    await new Promise((r) => setImmediate(r));
    expect(model.load.active).toBe(0);
  });

  it("a full queue refuses; a waiting call can be aborted; an aborted signal fails at once", async () => {
    const long = { maxTokens: 40, temperature: 0 };
    const running = [model.complete("A", long), model.complete("B", long)];
    const ac = new AbortController();
    const waiting = model.complete("C", { ...long, signal: ac.signal });
    const waiting2 = model.complete("D", long);
    await expect(model.complete("E", long)).rejects.toThrow(QueueFullError);
    // Two in the slots (admitted at the next round) and two waiting: the queue holds maxQueue = 2.
    expect(model.load.active + model.load.waiting).toBe(4);
    ac.abort();
    await expect(waiting).rejects.toThrow(AbortError);
    await Promise.all([...running, waiting2]);
    await expect(model.complete("F", { signal: AbortSignal.abort() })).rejects.toThrow(AbortError);
  });
});

describe("errors", () => {
  it("bad options, prompts and contexts are typed errors with the numbers", async () => {
    await expect(model.complete("x", { maxTokens: 0 })).rejects.toThrow(
      new InvalidOptionError("maxTokens", "expected a whole number ≥ 1, found 0"),
    );
    await expect(model.complete("x", { topP: 2 })).rejects.toThrow(
      /topP: expected a number > 0 ≤ 1, found 2/,
    );
    await expect(model.complete("x", { stop: "y" as never })).rejects.toThrow(/stop: expected an array/);
    await expect(model.complete([], greedy)).rejects.toThrow(InvalidPromptError);
    await expect(model.complete([1, 512], greedy)).rejects.toThrow(
      /prompt\[1\]: 512 is not a token id \(0 to 511\)/,
    );
    const long = Array.from({ length: 2048 }, () => 300);
    await expect(model.complete(long)).rejects.toThrow(new ContextLengthError(2048, 2048));
  });

  it("chat without a template is NoChatTemplateError", async () => {
    const plain = await loadModel(GGUF, { threads: 1 });
    try {
      expect(() => plain.chat()).toThrow(NoChatTemplateError);
      expect(() => plain.completeChat([{ role: "user", content: "hi" }])).toThrow(NoChatTemplateError);
    } finally {
      await plain.close();
    }
    await expect(plain.complete("x")).rejects.toThrow(ModelClosedError);
  });
});

describe("chat", () => {
  it("keeps the history, renders it with the template, and reset() keeps the system message", async () => {
    const chat = model.chat({ system: "Be kind.", defaults: greedy });
    const first = await chat.send("Once upon a time");
    // The template renders "<system>Be kind.\n<user>Once upon a time\n": the same tokens as complete() of it.
    const rendered = await model.complete("<system>Be kind.\n<user>Once upon a time\n", greedy);
    expect(first.text).toBe(rendered.text);
    expect(chat.history.map((m) => m.role)).toEqual(["system", "user", "assistant"]);
    expect(chat.history[2]!.content).toBe(first.text.trimStart());
    let streamed = "";
    for await (const piece of chat.stream("Then")) streamed += piece;
    expect(chat.history).toHaveLength(5);
    expect(chat.history[4]!.content).toBe(streamed.trimStart());
    chat.reset();
    expect(chat.history).toEqual([{ role: "system", content: "Be kind." }]);
  });
});
