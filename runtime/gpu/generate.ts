// generate() for a GPU model: the same prefill, sampling, streaming and stops as runtime/generate.ts,
// with each step awaited (a GPU step reads its MoE picks and logits back asynchronously). Keep the two in
// step: the CPU loop stays synchronous so its hot path has no promise per token.
import type { GenerateOptions, Generation } from "../generate.ts";
import { ContextError } from "../generate.ts";

/** What the loop needs of a model: its context and an async step. */
export interface AsyncStepper {
  manifest: { maxContext: number };
  step(token: number, pos: number): Promise<Float32Array>;
}

export async function generateAsync(
  model: AsyncStepper,
  prompt: readonly number[],
  o: GenerateOptions,
): Promise<Generation> {
  const context = model.manifest.maxContext;
  if (prompt.length === 0) throw new ContextError("the prompt is empty: nothing to continue from");
  if (prompt.length >= context) {
    throw new ContextError(
      `the prompt is ${prompt.length} tokens but the context holds ${context}: shorten it or compile with a larger max_context`,
    );
  }
  const t0 = performance.now();
  let logits: Float32Array = new Float32Array(0);
  for (let pos = 0; pos < prompt.length; pos++) logits = await model.step(prompt[pos]!, pos);
  const t1 = performance.now();
  const history = [...prompt];
  const tokens: number[] = [];
  let text = "";
  let stop: Generation["stop"] = "length";
  let held = 0;
  const maxStop = Math.max(0, ...(o.stopStrings ?? []).map((s) => s.length));
  while (tokens.length < o.maxTokens) {
    const id = o.sampler.sample(logits, history);
    if (o.stopTokens?.includes(id)) {
      stop = "eos";
      break;
    }
    tokens.push(id);
    history.push(id);
    if (o.text) {
      text += o.text.push(id);
      const hit = (o.stopStrings ?? []).map((s) => (s ? text.indexOf(s) : -1)).filter((i) => i >= 0);
      if (hit.length) {
        text = text.slice(0, Math.min(...hit));
        stop = "stop_string";
        break;
      }
      const safe = Math.max(held, text.length - (maxStop ? maxStop - 1 : 0));
      o.onText?.(text.slice(held, safe));
      held = safe;
    }
    if (history.length >= context) {
      stop = "context";
      break;
    }
    if (tokens.length >= o.maxTokens) break;
    logits = await model.step(id, history.length - 1);
  }
  if (stop !== "stop_string" && o.text?.flush) text += o.text.flush();
  o.onText?.(text.slice(held));
  const t2 = performance.now();
  return {
    tokens,
    text,
    stop,
    timings: {
      prefill_ms: t1 - t0,
      decode_ms: t2 - t1,
      prefill_tok_s: prompt.length / ((t1 - t0) / 1000),
      decode_tok_s: tokens.length / ((t2 - t1) / 1000),
    },
  };
}
