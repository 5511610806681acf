// The library's errors: one class per thing a caller may want to handle, all MoecErrors with a stable
// `code`, so `catch (e) { if (e instanceof ContextLengthError) … }` and `e.code` both work.

export type MoecErrorCode =
  | "invalid_option"
  | "model_load"
  | "context_length_exceeded"
  | "invalid_prompt"
  | "no_chat_template"
  | "aborted"
  | "queue_full"
  | "model_closed";

export class MoecError extends Error {
  override readonly name: string = "MoecError";
  constructor(
    readonly code: MoecErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** An option with a wrong type or value: `option` names it as the caller spelled it (`maxTokens`). */
export class InvalidOptionError extends MoecError {
  override readonly name = "InvalidOptionError";
  constructor(
    readonly option: string,
    message: string,
  ) {
    super("invalid_option", `${option}: ${message}`);
  }
}

/** The model could not be loaded: a missing or bad file, a spec that does not compile, memory that does not fit. */
export class ModelLoadError extends MoecError {
  override readonly name = "ModelLoadError";
  constructor(message: string, cause?: unknown) {
    super("model_load", message, { cause });
  }
}

/** A prompt (with room for one generated token) longer than the context. */
export class ContextLengthError extends MoecError {
  override readonly name = "ContextLengthError";
  constructor(
    readonly promptTokens: number,
    readonly contextTokens: number,
  ) {
    super(
      "context_length_exceeded",
      `the prompt is ${promptTokens} tokens but the context holds ${contextTokens}, leaving no room to generate: shorten it or load with a larger context`,
    );
  }
}

/** A prompt that cannot be turned into tokens (empty, or text the vocabulary cannot encode). */
export class InvalidPromptError extends MoecError {
  override readonly name = "InvalidPromptError";
  constructor(message: string, cause?: unknown) {
    super("invalid_prompt", message, { cause });
  }
}

/** Chat needs a chat template: the model ships none and none was given (`chatTemplate`). */
export class NoChatTemplateError extends MoecError {
  override readonly name = "NoChatTemplateError";
  constructor(model: string) {
    super(
      "no_chat_template",
      `${model} has no chat template; give one (the chatTemplate option, or --chat-template FILE) or use complete() with a prompt in the model's format`,
    );
  }
}

/** The call's AbortSignal fired: its generation stopped and its sequence slot is free again. */
export class AbortError extends MoecError {
  override readonly name = "AbortError";
  constructor(reason?: unknown) {
    super("aborted", "the generation was aborted", { cause: reason });
  }
}

/** Every sequence slot is busy and the waiting queue is full (`maxQueue`). */
export class QueueFullError extends MoecError {
  override readonly name = "QueueFullError";
  constructor(
    readonly parallel: number,
    readonly maxQueue: number,
  ) {
    super(
      "queue_full",
      `all ${parallel} sequence slots are busy and ${maxQueue} requests are already waiting: try again later`,
    );
  }
}

/** A call on a model after close(). */
export class ModelClosedError extends MoecError {
  override readonly name = "ModelClosedError";
  constructor() {
    super("model_closed", "the model is closed");
  }
}
