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

/** Throws ContextError when the prompt is empty or does not leave room in the context. */
export function checkPrompt(prompt: readonly number[], context: number): void {
  if (prompt.length === 0) throw new ContextError("the prompt is empty: nothing to continue from");
  if (prompt.length >= context) {
    throw new ContextError(
      `the prompt is ${prompt.length} tokens but the context holds ${context}: shorten it or compile with a larger max_context`,
    );
  }
}

/**
 * One generation after its prompt: sampling, streaming and the stops, whatever steps the model (this
 * file's synchronous loop, or runtime/gpu/generate.ts's awaited one).
 */
export class Decoding {
  readonly tokens: number[] = [];
  private readonly history: number[];
  private text = "";
  private stop: Generation["stop"] = "length";
  private held = 0; // characters withheld from onText because they might begin a stop string
  private readonly maxStop: number;

  constructor(
    private readonly prompt: readonly number[],
    private readonly context: number,
    private readonly o: GenerateOptions,
  ) {
    this.history = [...prompt];
    this.maxStop = Math.max(0, ...(o.stopStrings ?? []).map((s) => s.length));
  }

  /** Where the token `next` returned goes: step the model with (token, position). */
  get position(): number {
    return this.history.length - 1;
  }

  /** Samples from the logits; the token to step the model with next, or undefined when generation stops. */
  next(logits: Float32Array): number | undefined {
    const o = this.o;
    if (this.tokens.length >= o.maxTokens) return undefined;
    const id = o.sampler.sample(logits, this.history);
    if (o.stopTokens?.includes(id)) {
      this.stop = "eos";
      return undefined;
    }
    this.tokens.push(id);
    this.history.push(id);
    if (o.text) {
      this.text += o.text.push(id);
      const hit = (o.stopStrings ?? []).map((s) => (s ? this.text.indexOf(s) : -1)).filter((i) => i >= 0);
      if (hit.length) {
        this.text = this.text.slice(0, Math.min(...hit));
        this.stop = "stop_string";
        return undefined;
      }
      const safe = Math.max(this.held, this.text.length - (this.maxStop ? this.maxStop - 1 : 0));
      o.onText?.(this.text.slice(this.held, safe));
      this.held = safe;
    }
    if (this.history.length >= this.context) {
      this.stop = "context";
      return undefined;
    }
    return this.tokens.length >= o.maxTokens ? undefined : id;
  }

  /** The result, with the prefill ending at t1 (started at t0) and decode ending now. */
  finish(t0: number, t1: number): Generation {
    const o = this.o;
    if (this.stop !== "stop_string" && o.text?.flush) this.text += o.text.flush();
    o.onText?.(this.text.slice(this.held));
    const t2 = performance.now();
    return {
      tokens: this.tokens,
      text: this.text,
      stop: this.stop,
      timings: {
        prefill_ms: t1 - t0,
        decode_ms: t2 - t1,
        prefill_tok_s: this.prompt.length / ((t1 - t0) / 1000),
        decode_tok_s: this.tokens.length / ((t2 - t1) / 1000),
      },
    };
  }
}

export function generate(model: ModelInstance, prompt: readonly number[], o: GenerateOptions): Generation {
  const context = model.module.manifest.maxContext;
  checkPrompt(prompt, context);
  const t0 = performance.now();
  // The prompt in batches (matrix-matrix products); then one token at a time.
  let logits = model.prefill(prompt, 0);
  const t1 = performance.now();
  const d = new Decoding(prompt, context, o);
  for (let id = d.next(logits); id !== undefined; id = d.next(logits)) logits = model.step(id, d.position);
  return d.finish(t0, t1);
}
