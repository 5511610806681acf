// A conversation with history: each send() renders the whole conversation with the chat template and
// appends the reply. A reply cut short (aborted) is kept as far as it got, as the user saw it.
import type { ChatMessage } from "../runtime/chat-template.ts";
import type { Completion, CompletionStream, Model } from "./model.ts";
import type { GenerateOptions } from "./options.ts";

export interface ChatSessionOptions {
  /** The system message that opens the conversation (kept by reset()). */
  system?: string;
  /** Generation options for every send() (each call's own options override them). */
  defaults?: GenerateOptions;
}

export class ChatSession {
  private messages: ChatMessage[] = [];

  constructor(
    private readonly model: Model,
    private readonly options: ChatSessionOptions = {},
  ) {
    this.reset();
  }

  /** The conversation so far, system message first. */
  get history(): readonly ChatMessage[] {
    return this.messages;
  }

  /** Forgets everything but the system message. */
  reset(): void {
    this.messages =
      this.options.system === undefined ? [] : [{ role: "system", content: this.options.system }];
  }

  /** The model's reply to `text`; both go into the history. */
  async send(text: string, options: GenerateOptions = {}): Promise<Completion> {
    const stream = this.stream(text, options);
    for (;;) {
      const r = await stream.next();
      if (r.done) return r.value;
    }
  }

  /** The reply to `text` piece by piece; the user's message and the reply (even a partial one) go into the history. */
  async *stream(text: string, options: GenerateOptions = {}): CompletionStream {
    const asked: ChatMessage[] = [...this.messages, { role: "user", content: text }];
    const stream = this.model.streamChat(asked, { ...this.options.defaults, ...options });
    let reply = "";
    let finished = false;
    try {
      for (;;) {
        const r = await stream.next();
        if (r.done) {
          reply = r.value.text;
          finished = true;
          return r.value;
        }
        reply += r.value;
        yield r.value;
      }
    } finally {
      // A call that failed before saying anything (a prompt too long) leaves the history as it was.
      // The reply's leading space (kept for completions) is not part of what the assistant said.
      if (finished || reply) this.messages = [...asked, { role: "assistant", content: reply.trimStart() }];
      await stream.return(undefined as never);
    }
  }
}
