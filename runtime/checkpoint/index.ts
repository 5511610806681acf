// Checkpoint readers and writers.
export * from "./errors.ts";
export * from "./gguf-layout.ts";
export * from "./gguf-read.ts";
export * from "./gguf-types.ts";
export * from "./gguf-value.ts";
export * from "./gguf-weights.ts";
export * from "./gguf-write.ts";
export * from "./random-gguf.ts";
