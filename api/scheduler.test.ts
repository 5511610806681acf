// The scheduler over a fake model whose next token depends only on (token, position): what each
// sequence gets must not depend on what else runs, while the steps of different sequences interleave
// round by round and a job arriving mid-way joins at the next round.
import { describe, expect, it } from "vitest";
import { Sampler } from "../runtime/sampler.ts";
import { AbortError, ModelClosedError, QueueFullError } from "./errors.ts";
import { Scheduler, type Stepper } from "./scheduler.ts";

const VOCAB = 16;

/** Logits peaked at (7·token + 3·position) mod VOCAB; `calls` logs which sequence ran each call. */
function fakeModel(sequences: number, batched = false): Stepper & { calls: string[] } {
  const logits = new Float32Array(VOCAB);
  const out = (token: number, pos: number) => {
    logits.fill(0);
    logits[(7 * token + 3 * pos) % VOCAB] = 1;
    return logits;
  };
  const calls: string[] = [];
  return {
    calls,
    sequences,
    maxContext: 64,
    prefillChunk: 2,
    prefill(seq, tokens, pos0) {
      calls.push(`p${seq}`);
      return out(tokens.at(-1)!, pos0 + tokens.length - 1);
    },
    step(seq, token, pos) {
      calls.push(`s${seq}`);
      return out(token, pos);
    },
    ...(batched && {
      stepBatch(seqs: readonly number[], tokens: readonly number[], positions: readonly number[]) {
        calls.push(`b${seqs.join(",")}`);
        return tokens.map((t, i) => out(t, positions[i]!).slice());
      },
    }),
  };
}

const options = (maxTokens: number) => ({ maxTokens, sampler: new Sampler(VOCAB, { temperature: 0 }) });

/** The tokens the fake model gives `prompt` on its own. */
function alone(prompt: number[], n: number): number[] {
  const out: number[] = [];
  let [token, pos] = [prompt.at(-1)!, prompt.length - 1];
  for (let i = 0; i < n; i++) {
    token = (7 * token + 3 * pos) % VOCAB;
    pos++;
    out.push(token);
  }
  return out;
}

describe("Scheduler", () => {
  it("interleaves sequences step by step; each gets its answer alone", async () => {
    const m = fakeModel(2);
    const s = new Scheduler(m, 4);
    const prompts = [[1, 2, 3], [4, 5], [6]];
    const got = await Promise.all(prompts.map((p) => s.submit(p, options(5))));
    expect(got.map((g) => g.tokens)).toEqual(prompts.map((p) => alone(p, 5)));
    // The first round has only the first job (the others arrive after it began); from the second, the
    // two slots alternate (prompt chunks of 2 tokens, then one step each); the third waits for a slot.
    expect(m.calls.slice(0, 7)).toEqual(["p0", "p0", "p1", "s0", "s1", "s0", "s1"]);
    expect(s.load).toEqual({ active: 0, waiting: 0, slots: 2 });
  });

  it("steps every decoding sequence in one batched step where the model has one", async () => {
    const m = fakeModel(3, true);
    const s = new Scheduler(m, 4);
    const prompts = [[1, 2, 3], [4, 5], [6], [7, 8]];
    const got = await Promise.all(prompts.map((p, i) => s.submit(p, options(4 + i))));
    expect(got.map((g) => g.tokens)).toEqual(prompts.map((p, i) => alone(p, 4 + i)));
    // Prompts first (chunks of 2), then one batch a round of whichever sequences are decoding; the fourth
    // job takes the first slot freed and joins the batch once its prompt is read.
    // A sequence decoding alone takes the one-token step.
    expect(m.calls).toEqual([
      ...["p0", "p0", "p1", "p2", "b0,1,2", "b0,1,2", "b0,1,2"],
      ...["p0", "b1,2", "b2,0", "s0", "s0", "s0", "s0", "s0"],
    ]);
  });

  it("a job submitted mid-way joins at the next round (continuous batching of slots)", async () => {
    const m = fakeModel(2);
    const s = new Scheduler(m, 4);
    const first = s.submit([1], options(20));
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const second = s.submit([2], options(3));
    const [a, b] = await Promise.all([first, second]);
    expect(a.tokens).toEqual(alone([1], 20));
    expect(b.tokens).toEqual(alone([2], 3));
    // The second finished while the first was still decoding.
    const lastOfSecond = m.calls.lastIndexOf("s1");
    expect(m.calls.slice(lastOfSecond + 1)).toContain("s0");
  });

  it("a full queue refuses; aborts free waiting and running jobs; close rejects the rest", async () => {
    const s = new Scheduler(fakeModel(1), 1);
    const running = new AbortController();
    const a = s.submit([1], options(40), running.signal);
    const waiting = new AbortController();
    const b = s.submit([2], options(40), waiting.signal);
    await expect(s.submit([3], options(1))).rejects.toBeInstanceOf(QueueFullError);
    waiting.abort();
    await expect(b).rejects.toBeInstanceOf(AbortError);
    running.abort();
    await expect(a).rejects.toBeInstanceOf(AbortError);
    expect(s.load).toEqual({ active: 0, waiting: 0, slots: 1 });
    await expect(s.submit([1], options(1), AbortSignal.abort())).rejects.toBeInstanceOf(AbortError);
    const c = expect(s.submit([1], options(40))).rejects.toBeInstanceOf(ModelClosedError);
    const d = expect(s.submit([2], options(40))).rejects.toBeInstanceOf(ModelClosedError);
    await s.close();
    await Promise.all([c, d]);
    await expect(s.submit([1], options(1))).rejects.toBeInstanceOf(ModelClosedError);
  });
});
