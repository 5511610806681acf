// A loaded model as the library hands it out: complete, stream and chat over the scheduler's sequence
// slots, with an AbortSignal on every call. Prompts are checked here (empty, too long for the context)
// so the errors name the numbers before anything runs.
import { type ChatMessage, type ChatTemplateSource, encodeChat } from "../runtime/chat-template.ts";
import type { Generation } from "../runtime/generate.ts";
import type { MemoryStats } from "../runtime/memory/memory-stats.ts";
import { Sampler } from "../runtime/sampler.ts";
import { Detokenizer } from "../runtime/tokenizer/spm.ts";
import type { Tokenizer } from "../runtime/tokenizer/tokenizer.ts";
import { ChatSession, type ChatSessionOptions } from "./chat.ts";
import {
  AbortError,
  ContextLengthError,
  InvalidOptionError,
  InvalidPromptError,
  ModelClosedError,
  NoChatTemplateError,
} from "./errors.ts";
import { checkGenerate, type GenerateOptions } from "./options.ts";
import type { Scheduler } from "./scheduler.ts";

export type { ChatMessage };

export interface ModelInfo {
  /** The model's name in its spec. */
  name: string;
  /** How it was obtained ("imported from model.gguf", "compiled DIR", …). */
  origin: string;
  /** Max context in tokens (prompt and generated together). */
  contextLength: number;
  vocabSize: number;
  /** Sequences generated at once. */
  parallel: number;
  backend: string;
  hasChatTemplate: boolean;
}

export interface Completion {
  text: string;
  /** The generated token ids (a stop token is not included). */
  tokens: number[];
  promptTokens: number;
  /** OpenAI's finish_reason: "stop" at an end-of-generation token or a stop string, "length" at the limit. */
  finishReason: "stop" | "length";
  /** What stopped it, in moec run's words: eos, stop_string, length (maxTokens) or context (context full). */
  stop: Generation["stop"];
  timings: Generation["timings"];
}

export interface StreamOptions extends GenerateOptions {
  /** Called with each piece of text as it is produced (what stream() yields). */
  onText?: (piece: string) => void;
}

/** The pieces of the text as they are produced; the generator's return value is the Completion. */
export type CompletionStream = AsyncGenerator<string, Completion, undefined>;

/** What the model needs of its loader's result. */
export interface ModelParts {
  info: ModelInfo;
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplateSource | undefined;
  scheduler: Scheduler;
  memory(): MemoryStats;
  /** Frees the runtime and closes the files. */
  dispose(): void;
}

export class Model {
  readonly info: ModelInfo;
  private closing: Promise<void> | undefined;

  constructor(private readonly parts: ModelParts) {
    this.info = parts.info;
  }

  /** Token ids for `text` (BOS added where the model wants one). */
  tokenize(text: string): number[] {
    this.open();
    if (typeof text !== "string")
      throw new InvalidPromptError("the prompt must be a string or an array of token ids");
    try {
      return this.parts.tokenizer.encode(text, { addBos: this.parts.tokenizer.addBos });
    } catch (e) {
      throw new InvalidPromptError((e as Error).message, e);
    }
  }

  /** Text for token ids. */
  detokenize(tokens: readonly number[]): string {
    this.open();
    return this.parts.tokenizer.decode(tokens);
  }

  /** The prompt tokens of a conversation, rendered with the chat template (ending with the assistant's turn opened). */
  chatPrompt(messages: readonly ChatMessage[]): number[] {
    this.open();
    const template = this.parts.chatTemplate;
    if (!template) throw new NoChatTemplateError(this.info.name);
    for (const [i, m] of messages.entries()) {
      if (!m || !["system", "user", "assistant"].includes(m.role) || typeof m.content !== "string") {
        throw new InvalidPromptError(
          `messages[${i}]: expected { role: "system" | "user" | "assistant", content: string }`,
        );
      }
    }
    try {
      return encodeChat(this.parts.tokenizer, template, messages);
    } catch (e) {
      throw new InvalidPromptError((e as Error).message, e);
    }
  }

  /** Generates after `prompt` (text, or token ids used as they are). */
  async complete(prompt: string | readonly number[], options: StreamOptions = {}): Promise<Completion> {
    const tokens = typeof prompt === "string" ? this.tokenize(prompt) : this.checkIds(prompt);
    return this.generate(tokens, options);
  }

  /** The text of complete() piece by piece, as it is produced. Breaking out of the loop aborts it. */
  stream(prompt: string | readonly number[], options: GenerateOptions = {}): CompletionStream {
    const tokens = typeof prompt === "string" ? this.tokenize(prompt) : this.checkIds(prompt);
    return this.streamTokens(tokens, options);
  }

  /** A reply to a conversation (one call, no history kept: see chat() for a session). */
  completeChat(messages: readonly ChatMessage[], options: StreamOptions = {}): Promise<Completion> {
    return this.generate(this.chatPrompt(messages), options);
  }

  /** The reply to a conversation, piece by piece. */
  streamChat(messages: readonly ChatMessage[], options: GenerateOptions = {}): CompletionStream {
    return this.streamTokens(this.chatPrompt(messages), options);
  }

  /** A conversation that keeps its history: `await chat.send("Hello")`. */
  chat(options: ChatSessionOptions = {}): ChatSession {
    this.open();
    if (!this.parts.chatTemplate) throw new NoChatTemplateError(this.info.name);
    return new ChatSession(this, options);
  }

  /** Sequences generating and waiting. */
  get load(): { active: number; waiting: number; slots: number } {
    return this.parts.scheduler.load;
  }

  /** Device memory and expert cache counters (`moec run --stats`). */
  memory(): MemoryStats {
    return this.parts.memory();
  }

  /** Stops every generation (they reject with ModelClosedError) and frees the model. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.parts.scheduler.close().finally(() => this.parts.dispose());
    return this.closing;
  }

  private open(): void {
    if (this.closing) throw new ModelClosedError();
  }

  private checkIds(ids: readonly number[]): number[] {
    this.open();
    if (!Array.isArray(ids))
      throw new InvalidPromptError("the prompt must be a string or an array of token ids");
    const vocab = this.info.vocabSize;
    const bad = ids.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= vocab);
    if (bad >= 0) {
      throw new InvalidPromptError(
        `prompt[${bad}]: ${JSON.stringify(ids[bad])} is not a token id (0 to ${vocab - 1})`,
      );
    }
    return [...ids];
  }

  private async generate(prompt: number[], options: StreamOptions): Promise<Completion> {
    this.open();
    const o = checkGenerate(options);
    if (options.onText !== undefined && typeof options.onText !== "function") {
      throw new InvalidOptionError("onText", "expected a function");
    }
    if (prompt.length === 0) throw new InvalidPromptError("the prompt is empty: nothing to continue from");
    if (prompt.length >= this.info.contextLength)
      throw new ContextLengthError(prompt.length, this.info.contextLength);
    if (o.signal?.aborted) throw new AbortError(o.signal.reason);
    const tokenizer = this.parts.tokenizer;
    const g = await this.parts.scheduler.submit(
      prompt,
      {
        maxTokens: o.maxTokens,
        sampler: new Sampler(this.info.vocabSize, {
          temperature: o.temperature,
          topK: o.topK,
          topP: o.topP,
          minP: o.minP,
          repetitionPenalty: o.repeatPenalty,
          seed: o.seed,
        }),
        stopTokens: [...tokenizer.eogIds],
        stopStrings: o.stop,
        // Generated text continues the prompt, so its first space is kept (as `moec run` prints it).
        text: new Detokenizer(tokenizer, { keepLeadingSpace: true }),
        onText: options.onText ? (s) => s && options.onText!(s) : undefined,
      },
      o.signal,
    );
    return {
      text: g.text,
      tokens: g.tokens,
      promptTokens: prompt.length,
      finishReason: g.stop === "eos" || g.stop === "stop_string" ? "stop" : "length",
      stop: g.stop,
      timings: g.timings,
    };
  }

  private async *streamTokens(prompt: number[], options: GenerateOptions): CompletionStream {
    const own = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, own.signal]) : own.signal;
    const pieces: string[] = [];
    let wake: (() => void) | undefined;
    let settled: { ok: Completion } | { error: unknown } | undefined;
    const done = this.generate(prompt, {
      ...options,
      signal,
      onText: (s) => {
        pieces.push(s);
        wake?.();
      },
    }).then(
      (ok) => {
        settled = { ok };
        wake?.();
      },
      (error) => {
        settled = { error };
        wake?.();
      },
    );
    try {
      for (;;) {
        if (pieces.length) {
          yield pieces.shift()!;
          continue;
        }
        if (settled) {
          if ("error" in settled) throw settled.error;
          return settled.ok;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      // The consumer stopped early (break, return, a throw in its loop): stop generating for it.
      if (!settled) own.abort(new AbortError("the stream's consumer stopped reading"));
      await done;
    }
  }
}
