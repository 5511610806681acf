// moec as a library: `import { loadModel } from "moec"`. Everything a caller needs is exported here;
// the rest of the package is internal.
export type { ChatSessionOptions } from "./chat.ts";
export { ChatSession } from "./chat.ts";
export {
  AbortError,
  ContextLengthError,
  InvalidOptionError,
  InvalidPromptError,
  ModelClosedError,
  ModelLoadError,
  MoecError,
  type MoecErrorCode,
  NoChatTemplateError,
  QueueFullError,
} from "./errors.ts";
export { loadModel } from "./load.ts";
export type { ChatMessage, Completion, CompletionStream, ModelInfo, StreamOptions } from "./model.ts";
export { Model } from "./model.ts";
export { type Backend, GENERATE_DEFAULTS, type GenerateOptions, type LoadOptions } from "./options.ts";
