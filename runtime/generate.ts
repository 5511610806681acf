// Prompt prefill, then decode: sample, stream, stop at EOS, a stop string, the token limit or the
// end of the context. Timings are measured here so every caller reports the same figures.
import type { ModelInstance } from "./model.ts";
import type { Sampler } from "./sampler.ts";

export interface TextStream {
  /** Text for one more token; may be "" while a multi-byte character is incomplete. */
  push(id: number): string;
  /** Whatever is still held back at the end. */
  flush?(): string;
}

export interface GenerateOptions {
  maxTokens: number;
  sampler: Sampler;
  /** Token ids that end generation (EOS). */
  stopTokens?: readonly number[];
  /** Strings that end generation; the text is cut before them. */
  stopStrings?: readonly string[];
  text?: TextStream;
  /** Called with each piece of text as it is produced. */
  onText?(piece: string): void;
}

export interface Generation {
  tokens: number[];
  text: string;
  stop: "eos" | "stop_string" | "length" | "context";
  timings: { prefill_tok_s: number; decode_tok_s: number; prefill_ms: number; decode_ms: number };
}

export class ContextError extends Error {
  readonly exitCode = 1;
}

export function generate(model: ModelInstance, prompt: readonly number[], o: GenerateOptions): Generation {
  const context = model.module.manifest.maxContext;
  if (prompt.length === 0) throw new ContextError("the prompt is empty: nothing to continue from");
  if (prompt.length >= context) {
    throw new ContextError(
      `the prompt is ${prompt.length} tokens but the context holds ${context}: shorten it or compile with a larger max_context`,
    );
  }
  const t0 = performance.now();
  // The prompt in batches (matrix-matrix products); then one token at a time.
  let logits = model.prefill(prompt, 0);
  const t1 = performance.now();
  const history = [...prompt];
  const tokens: number[] = [];
  let text = "";
  let stop: Generation["stop"] = "length";
  let held = 0; // characters withheld from onText because they might begin a stop string
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
    logits = model.step(id, history.length - 1);
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
