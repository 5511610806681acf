// The WordPiece tokenizer llama.cpp uses for GGUF vocabularies whose `tokenizer.ggml.model` is "bert"
// (BERT-style embedding models), written to give the same ids as llama.cpp's `llm_tokenizer_wpm_session`:
//
//   1. Special-token partition, as for the other vocabularies (special.ts).
//   2. Each fragment is normalized and split into words: code points are lowercased and their accents
//      stripped (llama.cpp's one-code-point NFD, then marks dropped) unless the file says otherwise;
//      whitespace separates words; NUL, U+FFFD and control characters vanish; punctuation, ASCII symbols
//      and CJK ideographs are words of their own.
//   3. Each word gets "▁" in front and is cut greedily into the longest tokens from the left; a word with
//      a piece no token covers becomes the unknown token.
//
// With BOS added (llama.cpp's add_special), [CLS] goes first and [SEP] last. Decoding renders "▁" as a
// space and applies llama.cpp's clean_spaces.
import { cleanSpaces } from "./bpe.ts";
import {
  codePoints,
  cptFlags,
  F_ACCENT,
  F_CONTROL,
  F_PUNCT,
  F_SYMBOL,
  F_WHITESPACE,
  fromCodePoints,
} from "./pretokenize.ts";
import {
  ATTR,
  ATTR_OF_TYPE,
  markSpecialTexts,
  partitionSpecial,
  perModelAttributes,
  sortSpecials,
} from "./special.ts";
import {
  type DecodeOptions,
  Detokenizer,
  type EncodeOptions,
  SPM_TOKEN_TYPE,
  TokenizerDataError,
} from "./spm.ts";
import { TokenizeError, type Tokenizer } from "./tokenizer.ts";
import { LOWERCASE, NFD_RANGES } from "./unicode-data.ts";

export interface WpmTokenizerData {
  readonly tokens: readonly string[];
  readonly types?: readonly number[] | undefined;
  /** [CLS] (llama.cpp's default 101). */
  readonly bos?: number | undefined;
  readonly eos?: number | undefined;
  /** llama.cpp's default 100. */
  readonly unk?: number | undefined;
  /** [SEP], put last with BOS (llama.cpp's default 102). */
  readonly sep?: number | undefined;
  /** Default true. */
  readonly addBos?: boolean | undefined;
  readonly addSpacePrefix?: boolean | undefined;
  /** tokenizer.ggml.normalizer.lowercase (default true). */
  readonly lowercase?: boolean | undefined;
  /** tokenizer.ggml.normalizer.strip_accents (default: lowercase). */
  readonly stripAccents?: boolean | undefined;
  readonly modelName?: string | undefined;
  readonly pre?: string | undefined;
  readonly architecture?: string | undefined;
}

const SPACE_MARK = "\u2581";
const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);
const quote = (s: string) => JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);

let lowerMap: Map<number, number> | undefined;
function toLower(c: number): number {
  lowerMap ??= new Map(
    LOWERCASE.split(",").map((p) => p.split(":").map((x) => Number.parseInt(x, 36)) as [number, number]),
  );
  return lowerMap.get(c) ?? c;
}

let nfdStarts: Int32Array | undefined;
let nfdRows: number[][] | undefined;
/** llama.cpp's unicode_cpts_normalize_nfd for one code point (its first decomposed code point). */
function nfd(c: number): number {
  if (nfdStarts === undefined) {
    nfdRows = NFD_RANGES.split(",").map((r) => r.split(":").map((x) => Number.parseInt(x, 36)));
    nfdStarts = Int32Array.from(nfdRows, (r) => r[0]!);
  }
  let lo = 0;
  let hi = nfdStarts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (nfdStarts[mid]! <= c) lo = mid;
    else hi = mid - 1;
  }
  const [first, last, to] = nfdRows![lo]!;
  return first! <= c && c <= last! ? to! : c;
}

function isChinese(c: number): boolean {
  return (
    (c >= 0x4e00 && c <= 0x9fff) ||
    (c >= 0x3400 && c <= 0x4dbf) ||
    (c >= 0x20000 && c <= 0x2a6df) ||
    (c >= 0x2a700 && c <= 0x2b73f) ||
    (c >= 0x2b740 && c <= 0x2b81f) ||
    (c >= 0x2b920 && c <= 0x2ceaf) ||
    (c >= 0xf900 && c <= 0xfaff) ||
    (c >= 0x2f800 && c <= 0x2fa1f)
  );
}

export class WpmTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  readonly unk: number | undefined;
  readonly sep: number | undefined;
  readonly addBos: boolean;
  readonly addEos = false;
  readonly addSpacePrefix: boolean;
  readonly eogIds: ReadonlySet<number>;

  private readonly texts: readonly string[];
  private readonly attrs: Uint16Array;
  private readonly ids = new Map<string, number>();
  private readonly maxTokenBytes: number;
  private readonly lowercase: boolean;
  private readonly stripAccents: boolean;
  private readonly specialTokens: readonly number[];
  private readonly pieces: readonly Uint8Array[];

  constructor(data: WpmTokenizerData) {
    const { tokens, types } = data;
    if (!Array.isArray(tokens) || tokens.length === 0) {
      throw new TokenizerDataError("tokens", "the token list is missing or empty");
    }
    const n = tokens.length;
    this.vocabSize = n;
    if (types !== undefined && (!Array.isArray(types) || types.length !== n)) {
      throw new TokenizerDataError(
        "types",
        `${Array.isArray(types) ? types.length : "no"} token types for ${n} tokens`,
      );
    }
    const texts: string[] = [];
    this.attrs = new Uint16Array(n);
    let maxBytes = 0;
    for (let i = 0; i < n; i++) {
      let t = tokens[i];
      if (typeof t !== "string") throw new TokenizerDataError("tokens", `token ${i} is not a string`);
      if (t === "") t = `[EMPTY_${i}]`;
      const prev = this.ids.get(t);
      if (prev !== undefined)
        throw new TokenizerDataError("tokens", `duplicate token ${quote(t)} has ids ${prev} and ${i}`);
      this.ids.set(t, i);
      texts.push(t);
      maxBytes = Math.max(maxBytes, utf8.encode(t).length);
      const ty = types === undefined ? SPM_TOKEN_TYPE.normal : types[i];
      if (typeof ty !== "number" || !Number.isInteger(ty)) {
        throw new TokenizerDataError("types", `type ${i} (token ${quote(t)}) is not an integer`);
      }
      this.attrs[i] = ATTR_OF_TYPE[ty] ?? ATTR.undefined;
    }
    this.texts = texts;
    this.maxTokenBytes = maxBytes;
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
    this.sep = data.sep !== undefined && data.sep >= 0 && data.sep < n ? data.sep : undefined;
    this.addBos = data.addBos ?? true;
    this.addSpacePrefix = data.addSpacePrefix ?? false;
    this.lowercase = data.lowercase ?? true;
    this.stripAccents = data.stripAccents ?? this.lowercase;
    if (this.addBos && this.bos === undefined) {
      throw new TokenizerDataError(
        "bos",
        "BOS is added to every prompt (add_bos_token) but there is no BOS token id",
      );
    }
    this.eogIds = markSpecialTexts({ ids: this.ids, attrs: this.attrs, eos: this.eos });
    this.specialTokens = sortSpecials(texts, this.attrs);
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < n; i++) pieces.push(this.renderPiece(i));
    this.pieces = pieces;
    perModelAttributes(this.ids, this.attrs, this.specialTokens, data);
  }

  tokenText(id: number): string {
    this.checkId(id);
    return this.texts[id]!;
  }

  tokenId(text: string): number | undefined {
    return this.ids.get(text);
  }

  isEog(id: number): boolean {
    return this.eogIds.has(id);
  }

  /** Text → ids as llama.cpp's `llama_tokenize`; with BOS, [SEP] is added last (llama.cpp's add_special). */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const addSpecial = options.addBos ?? this.addBos;
    const out: number[] = [];
    if (addSpecial) {
      if (this.bos === undefined) throw new TokenizeError("cannot add BOS: the vocabulary has no BOS token");
      out.push(this.bos);
    }
    text = fromCodePoints(codePoints(text));
    const fragments =
      text === ""
        ? []
        : partitionSpecial(text, this.specialTokens, this.texts, this.attrs, options.parseSpecial ?? false);
    for (const f of fragments) {
      if (f.text === undefined) out.push(f.token!);
      else this.tokenizeFragment(f.text, out);
    }
    if (addSpecial) {
      if (this.sep === undefined)
        throw new TokenizeError("cannot add [SEP]: the vocabulary has no separator token");
      out.push(this.sep);
    }
    return out;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const d = new Detokenizer(this, options);
    let s = "";
    for (const id of ids) s += d.push(id);
    return cleanSpaces(s + d.flush());
  }

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
    return EMPTY;
  }

  /** llama.cpp's llm_tokenizer_wpm_session::preprocess. */
  private words(text: string): string[] {
    const words: number[][] = [[]];
    for (let c of codePoints(text)) {
      if (this.stripAccents) c = nfd(c);
      const f = cptFlags(c);
      if (f & F_WHITESPACE) {
        if (words.at(-1)!.length > 0) words.push([]);
        continue;
      }
      if (c === 0 || c === 0xfffd || f & F_CONTROL) continue;
      if (this.stripAccents && f & F_ACCENT) continue;
      const cc = this.lowercase ? toLower(c) : c;
      if (f & F_PUNCT || (c < 0x7f && f & F_SYMBOL) || isChinese(c)) {
        if (words.at(-1)!.length > 0) words.push([]);
        words[words.length - 1] = [cc];
        words.push([]);
      } else words.at(-1)!.push(cc);
    }
    return words.filter((w) => w.length > 0).map((w) => fromCodePoints(w));
  }

  /** Greedy longest match from the left of "▁" + word; a word with an uncovered piece is unk. */
  private tokenizeFragment(text: string, out: number[]): void {
    for (const word of this.words(text)) {
      const chars = Array.from(SPACE_MARK + word);
      const bytes = chars.map((c) => utf8.encode(c).length);
      const start = out.length;
      let ok = true;
      for (let i = 0; i < chars.length; ) {
        let matched = false;
        let len = 0;
        let ends = 0;
        for (let k = i; k < chars.length && len + bytes[k]! <= this.maxTokenBytes + 1; k++) {
          len += bytes[k]!;
          ends = k + 1;
        }
        for (let j = ends; j > i; j--) {
          const id = this.ids.get(chars.slice(i, j).join(""));
          if (id !== undefined) {
            out.push(id);
            i = j;
            matched = true;
            break;
          }
        }
        if (!matched) {
          ok = false;
          break;
        }
      }
      if (!ok) out.length = start;
      if (out.length === start) {
        if (this.unk === undefined)
          throw new TokenizeError(
            `cannot tokenize ${quote(word)}: no token covers it and there is no unknown token`,
          );
        out.push(this.unk);
      }
    }
  }
}
