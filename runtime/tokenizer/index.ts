// Tokenizers: llama.cpp's SentencePiece BPE ("llama" GGUF vocabularies) and its GGUF reader.
export * from "./from-gguf.ts";
export * from "./spm.ts";
