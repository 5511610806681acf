// The package's entry for importers (`import { loadModel } from "moec"`). moec is TypeScript run through
// tsx, as bin/moec.js runs it; a namespaced tsx loader imports the library without changing how the
// importer's own modules load. Types: dist/api/index.d.ts, emitted by `npm run build:types` (prepack).
import { register } from "tsx/esm/api";

const moec = await register({ namespace: "moec" }).import("./index.ts", import.meta.url);

export const {
  loadModel,
  Model,
  ChatSession,
  GENERATE_DEFAULTS,
  MoecError,
  AbortError,
  ContextLengthError,
  InvalidOptionError,
  InvalidPromptError,
  ModelClosedError,
  ModelLoadError,
  NoChatTemplateError,
  QueueFullError,
} = moec;
