// Tokenizers: llama.cpp's SentencePiece BPE, byte-level BPE, WordPiece and Unigram, their GGUF reader, and the
// Hugging Face tokenizer.json reader; all behind one Tokenizer interface.
export * from "./bpe.ts";
export * from "./from-gguf.ts";
export * from "./hf-json.ts";
export * from "./spm.ts";
export * from "./tokenizer.ts";
export * from "./ugm.ts";
export * from "./wpm.ts";
