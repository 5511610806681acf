// What the rest of moec uses of a tokenizer, whichever kind it is: SentencePiece (spm.ts), byte-level
// BPE (bpe.ts) or a Hugging Face tokenizer.json (hf-json.ts).
import type { DecodeOptions, EncodeOptions, PieceSource } from "./spm.ts";

export interface Tokenizer extends PieceSource {
  readonly vocabSize: number;
  readonly unk: number | undefined;
  /** Tokens that end generation. */
  readonly eogIds: ReadonlySet<number>;
  /** The text of a token as stored in the vocabulary. */
  tokenText(id: number): string;
  /** The id of the token with exactly this text, if any. */
  tokenId(text: string): number | undefined;
  isEog(id: number): boolean;
  /** Text → token ids. Throws a TokenizeError when the text needs a token the vocabulary lacks. */
  encode(text: string, options?: EncodeOptions): number[];
  /** Token ids → text. */
  decode(ids: readonly number[], options?: DecodeOptions): string;
}

/** Text that cannot be tokenized with this vocabulary: it needs a token the vocabulary lacks. */
export class TokenizeError extends Error {
  override readonly name = "TokenizeError";
  /** The CLI's guard prints the message and exits with this code. */
  readonly exitCode = 2;
}
