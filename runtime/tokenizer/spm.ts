// The SentencePiece-BPE tokenizer llama.cpp uses for GGUF files whose `tokenizer.ggml.model` is
// "llama" (Llama, Mistral, Mixtral), written to give the same token ids as llama.cpp's
// `llm_tokenizer_spm_session` and the same text as its `llama_vocab::detokenize`:
//
// encode
//   1. Special-token partition (llama.cpp `tokenizer_st_partition`): user-defined tokens are always
//      cut out of the text; control and unknown tokens only when `parseSpecial` is set. Longest
//      token text first.
//   2. Each text fragment gets one "▁" in front when `addSpacePrefix` is set and it is the first
//      fragment or follows a special token; then every " " becomes "▁" (U+2581).
//   3. The fragment is split into code points, and adjacent symbols whose concatenation is a token are
//      merged, best score first; equal scores merge the leftmost pair first (llama.cpp's priority queue
//      orders by score, then by the smaller left index).
//   4. A final symbol that is a token is emitted; otherwise each UTF-8 byte of it becomes the token
//      `<0xXX>` (or, failing that, a token whose text is that single ASCII character).
//
// decode
//   control and unknown tokens render as nothing (as their text with `unparseSpecial`), user-defined
//   tokens as their text, normal tokens with "▁" → " ", byte tokens as their byte; the bytes are
//   joined and read as UTF-8. When `addSpacePrefix` is set, one leading space of the FIRST token's
//   piece is removed (llama.cpp's `remove_space`); when that first token is BOS it is BOS's piece that
//   is looked at, so text after a leading BOS keeps its space (this is what llama.cpp does).

import { MergeQueue } from "./merge-queue.ts";
import {
  ATTR,
  ATTR_OF_TYPE,
  type Fragment,
  markSpecialTexts,
  partitionSpecial,
  perModelAttributes,
  sortSpecials,
} from "./special.ts";
import { TokenizeError } from "./tokenizer.ts";

/** `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`). */
export const SPM_TOKEN_TYPE = {
  undefined: 0,
  normal: 1,
  unknown: 2,
  control: 3,
  userDefined: 4,
  unused: 5,
  byte: 6,
} as const;

/** The plain data a tokenizer is built from (as read from GGUF metadata). */
export interface SpmTokenizerData {
  readonly tokens: readonly string[];
  readonly scores: readonly number[];
  /** One `SPM_TOKEN_TYPE` per token; values outside 0..6 count as undefined (as in llama.cpp). */
  readonly types: readonly number[];
  readonly bos?: number | undefined;
  readonly eos?: number | undefined;
  readonly unk?: number | undefined;
  readonly addBos: boolean;
  /** Default false (llama.cpp's default for SPM vocabularies). */
  readonly addEos?: boolean | undefined;
  readonly addSpacePrefix: boolean;
  /**
   * Whether text needing a byte token that the vocabulary lacks becomes the unknown token (default
   * true, when there is one). llama.cpp has no such fallback (its tokenize fails on such text), so
   * the GGUF reader sets false: then `encode` throws a TokenizeError naming the missing byte token.
   * Either way a vocabulary with some or no byte tokens loads.
   */
  readonly unkFallback?: boolean | undefined;
  /** End-of-turn / end-of-message ids the file names (tokenizer.ggml.eot_token_id …). */
  readonly eot?: number | undefined;
  readonly eom?: number | undefined;
  /** `general.name` / `tokenizer.ggml.pre` / `general.architecture`, for llama.cpp's per-model attributes (Phi-3). */
  readonly modelName?: string | undefined;
  readonly pre?: string | undefined;
  readonly architecture?: string | undefined;
}

/** Which part of `SpmTokenizerData` an error is about (the GGUF reader maps it to a metadata key). */
export type SpmDataField =
  | "tokens"
  | "scores"
  | "types"
  | "bos"
  | "eos"
  | "unk"
  | "addBos"
  | "addEos"
  | "merges"
  | "pre";

/** Bad tokenizer data. The message names the field and the piece; the caller adds the file name. */
export class TokenizerDataError extends Error {
  override readonly name = "TokenizerDataError";
  readonly field: SpmDataField;
  constructor(field: SpmDataField, message: string) {
    super(message);
    this.field = field;
  }
}

export interface EncodeOptions {
  /** Put BOS first. Default: the tokenizer's `addBos`. */
  readonly addBos?: boolean;
  /** Put EOS last. Default: the tokenizer's `addEos`. */
  readonly addEos?: boolean;
  /** Recognise control tokens (`<s>`, `[INST]` …) written in the text. Default false. */
  readonly parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Drop a leading BOS (when the tokenizer adds BOS) and a trailing EOS (when it adds EOS). Default false. */
  readonly removeSpecial?: boolean;
  /** Render control and unknown tokens as their text instead of nothing. Default false. */
  readonly unparseSpecial?: boolean;
  /**
   * Never remove the leading space of the first token. Default false, i.e. llama.cpp's
   * `llama_detokenize` rule; set it for a continuation (generated tokens after a prompt), which
   * llama.cpp renders piece by piece with `common_token_to_piece`, leaving spaces alone.
   */
  readonly keepLeadingSpace?: boolean;
}

const SPACE_MARK = "\u2581";
const HEX = "0123456789ABCDEF";

const utf8 = new TextEncoder();

/** Lone surrogates become U+FFFD, as they do when the text is encoded as UTF-8. */
function wellFormed(s: string): string {
  return s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD");
}

function quote(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);
}

/** C `strtol(s, NULL, 16)` on the two bytes after "<0x", as llama.cpp's token_to_byte reads them. */
function byteOfByteToken(text: string): number {
  const s = String.fromCharCode(...utf8.encode(text).subarray(3, 5));
  const m = /^\s*([+-]?)(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]*)/.exec(s)!;
  const v = m[2] === "" ? 0 : Number.parseInt(m[2]!, 16);
  return (m[1] === "-" ? -v : v) & 0xff;
}

export class SpmTokenizer {
  readonly vocabSize: number;
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  readonly unk: number | undefined;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly addSpacePrefix: boolean;
  /** Tokens that end generation: EOS and the end-of-turn tokens llama.cpp recognises by text. */
  readonly eogIds: ReadonlySet<number>;

  private readonly texts: readonly string[];
  private readonly scores: Float32Array;
  private readonly attrs: Uint16Array;
  private readonly ids = new Map<string, number>();
  /** The token for each byte, or -1. */
  private readonly byteTokens = new Int32Array(256).fill(-1);
  /** Control, user-defined and unknown tokens, longest text (in UTF-8 bytes) first. */
  private readonly specialTokens: readonly number[];
  /** Each token's piece as llama.cpp renders it with special = true. */
  private readonly pieces: readonly Uint8Array[];
  /** Text needing a missing byte token becomes the unknown token instead of failing. */
  private readonly unkFallback: boolean;

  constructor(data: SpmTokenizerData) {
    const { tokens, scores, types } = data;
    if (!Array.isArray(tokens) || tokens.length === 0) {
      throw new TokenizerDataError("tokens", "the token list is missing or empty");
    }
    const n = tokens.length;
    if (!Array.isArray(scores) || scores.length !== n) {
      throw new TokenizerDataError(
        "scores",
        `${Array.isArray(scores) ? scores.length : "no"} scores for ${n} tokens`,
      );
    }
    if (!Array.isArray(types) || types.length !== n) {
      throw new TokenizerDataError(
        "types",
        `${Array.isArray(types) ? types.length : "no"} token types for ${n} tokens`,
      );
    }
    this.vocabSize = n;

    const texts: string[] = [];
    this.scores = new Float32Array(n);
    this.attrs = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      let t = tokens[i];
      if (typeof t !== "string") throw new TokenizerDataError("tokens", `token ${i} is not a string`);
      // llama.cpp renames empty tokens so that they can never match.
      if (t === "") t = `[EMPTY_${i}]`;
      const prev = this.ids.get(t);
      if (prev !== undefined) {
        throw new TokenizerDataError("tokens", `duplicate token ${quote(t)} has ids ${prev} and ${i}`);
      }
      this.ids.set(t, i);
      texts.push(t);
      const s = scores[i];
      if (typeof s !== "number" || Number.isNaN(s)) {
        throw new TokenizerDataError("scores", `score ${i} (token ${quote(t)}) is not a number`);
      }
      this.scores[i] = s;
      const ty = types[i];
      if (typeof ty !== "number" || !Number.isInteger(ty)) {
        throw new TokenizerDataError("types", `type ${i} (token ${quote(t)}) is not an integer`);
      }
      this.attrs[i] = ATTR_OF_TYPE[ty] ?? 0;
    }
    this.texts = texts;

    const special = (field: "bos" | "eos" | "unk", id: number | undefined): number | undefined => {
      if (id === undefined) return undefined;
      if (!Number.isInteger(id) || id < 0 || id >= n) {
        throw new TokenizerDataError(
          field,
          `${field} token id ${id} is outside the vocabulary (0..${n - 1})`,
        );
      }
      return id;
    };
    this.bos = special("bos", data.bos);
    this.eos = special("eos", data.eos);
    this.unk = special("unk", data.unk);
    this.addBos = data.addBos;
    this.addEos = data.addEos ?? false;
    this.addSpacePrefix = data.addSpacePrefix;
    if (this.addBos && this.bos === undefined) {
      throw new TokenizerDataError(
        "bos",
        "BOS is added to every prompt (addBos) but there is no BOS token id",
      );
    }
    if (this.addEos && this.eos === undefined) {
      throw new TokenizerDataError(
        "eos",
        "EOS is added to every prompt (addEos) but there is no EOS token id",
      );
    }

    // End-of-generation and other special-looking tokens, made control tokens as llama.cpp does.
    this.eogIds = markSpecialTexts({
      ids: this.ids,
      attrs: this.attrs,
      eos: this.eos,
      eot: data.eot,
      eom: data.eom,
    });

    // Byte fallback: `<0xXX>`, else the single character (ASCII only; NUL never matches in llama.cpp).
    // A missing byte token is only an error when some text needs it (encode), as in llama.cpp.
    for (let b = 0; b < 256; b++) {
      const name = `<0x${HEX[b >> 4]}${HEX[b & 15]}>`;
      const id = this.ids.get(name) ?? (b > 0 && b < 0x80 ? this.ids.get(String.fromCharCode(b)) : undefined);
      if (id !== undefined) this.byteTokens[b] = id;
    }
    this.unkFallback = (data.unkFallback ?? true) && this.unk !== undefined;

    this.specialTokens = sortSpecials(texts, this.attrs);

    const pieces: Uint8Array[] = [];
    for (let i = 0; i < n; i++) pieces.push(this.renderPiece(i));
    this.pieces = pieces;
    perModelAttributes(this.ids, this.attrs, this.specialTokens, data);
  }

  /** The text of a token as stored in the vocabulary (with "▁", `<0xXX>` …). */
  tokenText(id: number): string {
    this.checkId(id);
    return this.texts[id]!;
  }

  /** The id of the token with exactly this text, if any. */
  tokenId(text: string): number | undefined {
    return this.ids.get(text);
  }

  isEog(id: number): boolean {
    return this.eogIds.has(id);
  }

  /** Text → token ids, as llama.cpp's `llama_tokenize`. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const addBos = options.addBos ?? this.addBos;
    const addEos = options.addEos ?? this.addEos;
    const out: number[] = [];
    if (addBos) {
      if (this.bos === undefined) throw new Error("cannot add BOS: the tokenizer has no BOS token");
      out.push(this.bos);
    }
    text = wellFormed(text);
    const fragments: Fragment[] = text === "" ? [] : this.partition(text, options.parseSpecial ?? false);
    let prevSpecial = true;
    for (const f of fragments) {
      if (f.text === undefined) {
        out.push(f.token!);
        prevSpecial = true;
        continue;
      }
      const raw = this.addSpacePrefix && prevSpecial ? ` ${f.text}` : f.text;
      this.tokenizeFragment(raw.replaceAll(" ", SPACE_MARK), out);
      prevSpecial = false;
    }
    if (addEos) {
      if (this.eos === undefined) throw new Error("cannot add EOS: the tokenizer has no EOS token");
      out.push(this.eos);
    }
    return out;
  }

  /** Token ids → text, as llama.cpp's `llama_detokenize` (invalid UTF-8 becomes U+FFFD). */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    return decodeAll(this, ids, options);
  }

  /**
   * The bytes of one token as llama.cpp's `token_to_piece` gives them: control and unknown tokens
   * are empty unless `special`. The array is shared: do not modify it.
   */
  piece(id: number, special = false): Uint8Array {
    this.checkId(id);
    if (!special && this.attrs[id]! & (ATTR.unknown | ATTR.control)) return EMPTY;
    return this.pieces[id]!;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
  }

  private renderPiece(id: number): Uint8Array {
    const attr = this.attrs[id]!;
    const text = this.texts[id]!;
    if (attr & (ATTR.unknown | ATTR.control | ATTR.userDefined)) return utf8.encode(text);
    if (attr & ATTR.normal) return utf8.encode(text.replaceAll(SPACE_MARK, " "));
    if (attr & ATTR.byte) return Uint8Array.of(byteOfByteToken(text));
    return EMPTY; // unused and undefined tokens render as nothing
  }

  /** Cuts special tokens out of the text: longest first, leftmost occurrences (lstrip/rstrip as marked). */
  private partition(text: string, parseSpecial: boolean): Fragment[] {
    return partitionSpecial(text, this.specialTokens, this.texts, this.attrs, parseSpecial);
  }

  /** llama.cpp's llm_tokenizer_spm_session::tokenize on one escaped fragment. */
  private tokenizeFragment(text: string, out: number[]): void {
    // Symbols are code points, each a [start, length) range of `text` (UTF-16 units), in a linked list.
    const start: number[] = [];
    const len: number[] = [];
    for (let i = 0; i < text.length; ) {
      const l = text.codePointAt(i)! > 0xffff ? 2 : 1;
      start.push(i);
      len.push(l);
      i += l;
    }
    const count = start.length;
    if (count === 0) return;
    const prev = new Int32Array(count);
    const next = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < count ? i + 1 : -1;
    }

    // Higher score first: the queue takes the lowest key.
    const queue = new MergeQueue<number>();
    const tryAdd = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const size = len[left]! + len[right]!;
      const id = this.ids.get(text.slice(start[left]!, start[left]! + size));
      if (id === undefined) return;
      queue.push(-this.scores[id]!, left, right, size);
    };
    for (let i = 1; i < count; i++) tryAdd(i - 1, i);

    while (queue.length > 0) {
      const [left, right, size] = queue.pop();
      // Skip pairs whose symbols have since been merged into something else.
      if (len[left] === 0 || len[right] === 0 || len[left]! + len[right]! !== size) continue;
      len[left] = size;
      len[right] = 0;
      next[left] = next[right]!;
      if (next[right]! >= 0) prev[next[right]!] = left;
      tryAdd(prev[left]!, left);
      tryAdd(left, next[left]!);
    }

    // Every merged symbol is a token; a symbol left as one code point may not be.
    // (llama.cpp's rev_merge resegmentation can never apply to valid UTF-8: a single code point is
    // never the concatenation of two symbols.)
    for (let i = 0; i !== -1; i = next[i]!) {
      const piece = text.slice(start[i]!, start[i]! + len[i]!);
      const id = this.ids.get(piece);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      const bytes = utf8.encode(piece);
      if (bytes.every((b) => this.byteTokens[b]! >= 0)) {
        for (const b of bytes) out.push(this.byteTokens[b]!);
      } else if (this.unkFallback) {
        out.push(this.unk!);
      } else {
        const b = bytes.find((x) => this.byteTokens[x]! < 0)!;
        const name = `<0x${HEX[b >> 4]}${HEX[b & 15]}>`;
        throw new TokenizeError(
          `cannot tokenize ${quote(piece.replaceAll(SPACE_MARK, " "))}: it is not in the vocabulary and its byte 0x${HEX[b >> 4]}${HEX[b & 15]} has no byte token ${name}${b > 0 && b < 0x80 ? ` nor a token ${quote(String.fromCharCode(b))}` : ""}`,
        );
      }
    }
  }
}

const EMPTY = new Uint8Array(0);

/** What a Detokenizer needs of a tokenizer (SpmTokenizer, HfTokenizer). */
export interface PieceSource {
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly addSpacePrefix: boolean;
  piece(id: number, special?: boolean): Uint8Array;
}

/** All of `ids` as text: what a Detokenizer streams, joined. */
export function decodeAll(source: PieceSource, ids: readonly number[], options: DecodeOptions = {}): string {
  const d = new Detokenizer(source, options);
  let s = "";
  for (const id of ids) s += d.push(id);
  return s + d.flush();
}

/**
 * Token ids → text one token at a time, for streaming: `push` returns the text that became
 * complete, never part of a multi-byte character; `flush` returns what is left (an incomplete
 * character at the end becomes U+FFFD). The pushes and the flush together give exactly
 * `tokenizer.decode(ids, options)`.
 */
export class Detokenizer {
  private readonly tokenizer: PieceSource;
  private readonly special: boolean;
  private readonly removeSpecial: boolean;
  private decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  private first = true;
  private removeSpace: boolean;
  /** A trailing EOS that `removeSpecial` drops if nothing follows it. */
  private heldEos = false;

  constructor(tokenizer: PieceSource, options: DecodeOptions = {}) {
    this.tokenizer = tokenizer;
    this.special = options.unparseSpecial ?? false;
    this.removeSpecial = options.removeSpecial ?? false;
    this.removeSpace = tokenizer.addSpacePrefix && !(options.keepLeadingSpace ?? false);
  }

  push(id: number): string {
    const tok = this.tokenizer;
    tok.piece(id); // range check
    let out = "";
    if (this.first) {
      this.first = false;
      if (this.removeSpecial && tok.addBos && id === tok.bos) {
        this.removeSpace = false;
        return "";
      }
    }
    if (this.heldEos) {
      this.heldEos = false;
      out += this.emit(tok.eos!);
    }
    if (this.removeSpecial && tok.addEos && id === tok.eos) {
      this.heldEos = true;
      return out;
    }
    return out + this.emit(id);
  }

  flush(): string {
    this.heldEos = false;
    const rest = this.decoder.decode();
    this.decoder = new TextDecoder("utf-8", { ignoreBOM: true });
    return rest;
  }

  private emit(id: number): string {
    let bytes = this.tokenizer.piece(id, this.special);
    if (this.removeSpace && bytes.length > 0 && bytes[0] === 0x20) bytes = bytes.subarray(1);
    this.removeSpace = false;
    return this.decoder.decode(bytes, { stream: true });
  }
}
