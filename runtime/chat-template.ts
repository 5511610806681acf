// Chat templates: the Jinja template a model ships (`tokenizer.chat_template` in GGUF metadata, or
// `chat_template` in a Hugging Face tokenizer_config.json) rendered with @huggingface/jinja, the
// implementation transformers.js uses. The variables are the ones transformers passes:
// `messages`, `bos_token`, `eos_token`, `add_generation_prompt`. A template that does not parse, or
// that raises (raise_exception("Conversation roles must alternate …")), is a CheckpointError naming
// the file and key, since the template is part of the checkpoint.
import { Template } from "@huggingface/jinja";
import { CheckpointError } from "./checkpoint/errors.ts";
import type { GgufValue } from "./checkpoint/gguf-value.ts";
import type { Tokenizer } from "./tokenizer/tokenizer.ts";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** A template and where it came from (for errors). */
export interface ChatTemplateSource {
  template: string;
  file: string;
  /** `tokenizer.chat_template` (GGUF) or `chat_template` (tokenizer_config.json). */
  key: string;
}

export interface RenderChatOptions {
  bosToken?: string | undefined;
  eosToken?: string | undefined;
  /** End with the assistant's turn opened (default true). */
  addGenerationPrompt?: boolean;
}

export const GGUF_CHAT_TEMPLATE_KEY = "tokenizer.chat_template";

/** The GGUF file's chat template, if it has one. */
export function chatTemplateFromGguf(
  metadata: ReadonlyMap<string, GgufValue>,
  file: string,
): ChatTemplateSource | undefined {
  const v = metadata.get(GGUF_CHAT_TEMPLATE_KEY);
  if (v === undefined) return undefined;
  if (v.type !== "string") {
    throw new CheckpointError({
      file,
      what: GGUF_CHAT_TEMPLATE_KEY,
      problem: `must be a string, not ${v.type}`,
    });
  }
  return { template: v.value, file, key: GGUF_CHAT_TEMPLATE_KEY };
}

/** Renders the conversation as the model expects its prompt. */
export function renderChat(
  source: ChatTemplateSource,
  messages: readonly ChatMessage[],
  opts: RenderChatOptions = {},
): string {
  const fail = (problem: string): never => {
    throw new CheckpointError({ file: source.file, what: source.key, problem });
  };
  let template: Template;
  try {
    template = new Template(source.template);
  } catch (e) {
    return fail(`the chat template does not parse: ${(e as Error).message}`);
  }
  try {
    return template.render({
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      bos_token: opts.bosToken ?? "",
      eos_token: opts.eosToken ?? "",
      add_generation_prompt: opts.addGenerationPrompt ?? true,
    });
  } catch (e) {
    return fail(`the chat template failed: ${(e as Error).message}`);
  }
}

/**
 * The conversation as prompt tokens: rendered with the template, whose special tokens (BOS, [INST] …)
 * are parsed as such, with BOS added only where the model wants one and the template did not write it.
 */
export function encodeChat(
  tokenizer: Pick<Tokenizer, "bos" | "eos" | "addBos" | "tokenText" | "encode">,
  source: ChatTemplateSource,
  messages: readonly ChatMessage[],
): number[] {
  const text = (id: number | undefined) => (id === undefined ? undefined : tokenizer.tokenText(id));
  const bos = text(tokenizer.bos);
  const rendered = renderChat(source, messages, {
    bosToken: bos,
    eosToken: text(tokenizer.eos),
    addGenerationPrompt: true,
  });
  const hasBos = bos !== undefined && bos !== "" && rendered.startsWith(bos);
  return tokenizer.encode(rendered, { addBos: tokenizer.addBos && !hasBos, parseSpecial: true });
}
