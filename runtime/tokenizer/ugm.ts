// The Unigram tokenizer llama.cpp uses for GGUF vocabularies whose `tokenizer.ggml.model` is "t5" (T5,
// XLM-R style), written to give the same ids as llama.cpp's `llm_tokenizer_ugm_session`:
//
//   1. Special-token partition, as for the other vocabularies (special.ts).
//   2. Normalization on UTF-8 bytes: user-defined tokens pass as they are; otherwise the longest prefix in
//      the precompiled charsmap (SentencePiece's XOR-compressed double array) is replaced by its string;
//      spaces become "▁", one is put in front (add_space_prefix), runs of them merged
//      (remove_extra_whitespaces).
//   3. Viterbi over byte offsets: every token (normal, user-defined at score 0, unused) that starts at a
//      code point competes by summed score; a code point no token covers is unk at the lowest score − 10.
//      Consecutive unknowns become one.
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

export interface UgmTokenizerData {
  readonly tokens: readonly string[];
  readonly scores?: readonly number[] | undefined;
  readonly types?: readonly number[] | undefined;
  /** tokenizer.ggml.precompiled_charsmap, as bytes. */
  readonly charsmap?: Uint8Array | undefined;
  readonly bos?: number | undefined;
  /** llama.cpp's defaults: eos 1, unk 2. */
  readonly eos?: number | undefined;
  readonly unk?: number | undefined;
  /** Default false. */
  readonly addBos?: boolean | undefined;
  /** Default true. */
  readonly addEos?: boolean | undefined;
  /** Default false (llama.cpp's default for this vocabulary type). */
  readonly addSpacePrefix?: boolean | undefined;
  /** tokenizer.ggml.remove_extra_whitespaces (default false). */
  readonly removeExtraSpaces?: boolean | undefined;
  readonly modelName?: string | undefined;
  readonly pre?: string | undefined;
  readonly architecture?: string | undefined;
}

const SPACE = [0xe2, 0x96, 0x81]; // "▁"
const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);
const quote = (s: string) => JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);
/** A byte string as a JS string of the same code units (keys for exact byte matching). */
const bin = (b: Uint8Array | readonly number[]) => {
  let s = "";
  for (const x of b) s += String.fromCharCode(x);
  return s;
};
const lenUtf8 = (b: number) => [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4][b >> 4]!;

export class UgmTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  readonly unk: number | undefined;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly addSpacePrefix: boolean;
  readonly eogIds: ReadonlySet<number>;

  private readonly texts: readonly string[];
  private readonly scores: Float32Array;
  private readonly attrs: Uint16Array;
  private readonly ids = new Map<string, number>();
  /** Token bytes (as a binary string) → id, for normal, user-defined and unused tokens. */
  private readonly matcher = new Map<string, number>();
  private readonly userDefined = new Set<string>();
  private readonly maxBytes: number;
  private readonly maxUserBytes: number;
  private readonly unknownScore: number;
  private readonly mergeSpaces: boolean;
  private readonly xcda: Uint32Array;
  private readonly replacements: Uint8Array;
  private readonly specialTokens: readonly number[];
  private readonly pieces: readonly Uint8Array[];

  constructor(data: UgmTokenizerData) {
    const { tokens } = data;
    if (!Array.isArray(tokens) || tokens.length === 0) {
      throw new TokenizerDataError("tokens", "the token list is missing or empty");
    }
    const n = tokens.length;
    this.vocabSize = n;
    const scores = data.scores ?? new Array<number>(n).fill(0);
    const types = data.types ?? new Array<number>(n).fill(SPM_TOKEN_TYPE.normal);
    if (scores.length !== n)
      throw new TokenizerDataError("scores", `${scores.length} scores for ${n} tokens`);
    if (types.length !== n)
      throw new TokenizerDataError("types", `${types.length} token types for ${n} tokens`);
    const texts: string[] = [];
    this.scores = new Float32Array(n);
    this.attrs = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      let t = tokens[i];
      if (typeof t !== "string") throw new TokenizerDataError("tokens", `token ${i} is not a string`);
      if (t === "") t = `[EMPTY_${i}]`;
      const prev = this.ids.get(t);
      if (prev !== undefined)
        throw new TokenizerDataError("tokens", `duplicate token ${quote(t)} has ids ${prev} and ${i}`);
      this.ids.set(t, i);
      texts.push(t);
      this.scores[i] = scores[i]!;
      this.attrs[i] = ATTR_OF_TYPE[types[i]!] ?? ATTR.undefined;
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
    this.addBos = data.addBos ?? false;
    this.addEos = data.addEos ?? true;
    this.addSpacePrefix = data.addSpacePrefix ?? false;
    this.mergeSpaces = data.removeExtraSpaces ?? false;
    if (this.addBos && this.bos === undefined)
      throw new TokenizerDataError("bos", "BOS is added to every prompt but there is no BOS token id");
    if (this.addEos && this.eos === undefined)
      throw new TokenizerDataError("eos", "EOS is added to every prompt but there is no EOS token id");

    this.eogIds = markSpecialTexts({ ids: this.ids, attrs: this.attrs, eos: this.eos });
    this.specialTokens = sortSpecials(texts, this.attrs);
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < n; i++) pieces.push(this.renderPiece(i));
    this.pieces = pieces;
    perModelAttributes(this.ids, this.attrs, this.specialTokens, data);

    // The tokenizer's own tables (llm_tokenizer_ugm), from the attributes as they stand now.
    let minScore = Math.fround(3.4028234663852886e38);
    let maxBytes = 0;
    let maxUser = 0;
    for (let i = 0; i < n; i++) {
      const a = this.attrs[i]!;
      if (a & ATTR.normal) minScore = Math.min(minScore, this.scores[i]!);
      if (a & (ATTR.normal | ATTR.userDefined | ATTR.unused)) {
        const b = bin(utf8.encode(texts[i]!));
        this.matcher.set(b, i);
        maxBytes = Math.max(maxBytes, b.length);
      }
      if (a & ATTR.userDefined) {
        const b = bin(utf8.encode(texts[i]!));
        this.userDefined.add(b);
        maxUser = Math.max(maxUser, b.length);
      }
    }
    this.maxBytes = maxBytes;
    this.maxUserBytes = maxUser;
    this.unknownScore = Math.fround(minScore - 10);

    const cm = data.charsmap ?? EMPTY;
    if (cm.length > 0) {
      if (cm.length < 4)
        throw new TokenizerDataError("tokens", "precompiled_charsmap is too small for its header");
      const size = new DataView(cm.buffer, cm.byteOffset, cm.byteLength).getUint32(0, true);
      if (size + 4 >= cm.length)
        throw new TokenizerDataError("tokens", "precompiled_charsmap's array runs past its end");
      this.xcda = new Uint32Array(size / 4);
      const dv = new DataView(cm.buffer, cm.byteOffset + 4, size);
      for (let i = 0; i < this.xcda.length; i++) this.xcda[i] = dv.getUint32(i * 4, true);
      this.replacements = cm.subarray(4 + size);
    } else {
      this.xcda = new Uint32Array(0);
      this.replacements = EMPTY;
    }
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

  encode(text: string, options: EncodeOptions = {}): number[] {
    const addBos = options.addBos ?? this.addBos;
    const addEos = options.addEos ?? this.addEos;
    const out: number[] = [];
    if (addBos) {
      if (this.bos === undefined) throw new TokenizeError("cannot add BOS: the vocabulary has no BOS token");
      out.push(this.bos);
    }
    const fragments =
      text === ""
        ? []
        : partitionSpecial(text, this.specialTokens, this.texts, this.attrs, options.parseSpecial ?? false);
    for (const f of fragments) {
      if (f.text === undefined) out.push(f.token!);
      else this.tokenizeFragment(utf8.encode(f.text), out);
    }
    if (addEos) {
      if (this.eos === undefined) throw new TokenizeError("cannot add EOS: the vocabulary has no EOS token");
      out.push(this.eos);
    }
    return out;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const d = new Detokenizer(this, options);
    let s = "";
    for (const id of ids) s += d.push(id);
    return s + d.flush();
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
    if (attr & ATTR.normal) return utf8.encode(text.replaceAll("\u2581", " "));
    if (attr & ATTR.byte) return Uint8Array.of(Number.parseInt(text.slice(3, 5), 16) & 0xff);
    return EMPTY;
  }

  /** llama.cpp's normalize_prefix: [replacement bytes, input bytes consumed]. */
  private normalizePrefix(input: Uint8Array, at: number): [ArrayLike<number>, number] {
    for (let len = Math.min(this.maxUserBytes, input.length - at); len > 0; len--) {
      if (this.userDefined.has(bin(input.subarray(at, at + len)))) return [input.subarray(at, at + len), len];
    }
    let longest = 0;
    let offset = 0;
    const x = this.xcda;
    if (x.length > 0) {
      const node = (i: number) => {
        if (i >= x.length)
          throw new TokenizeError("the vocabulary's precompiled_charsmap is damaged (index out of bounds)");
        return x[i]!;
      };
      const base = (i: number) => {
        const p = node(i);
        return ((p >>> 10) << ((p & (1 << 9)) >>> 6)) >>> 0;
      };
      let idx = base(0);
      for (let p = at; p < input.length; p++) {
        const c = input[p]!;
        if (c === 0) break;
        idx = (idx ^ c) >>> 0;
        if ((node(idx) & (0x80000000 | 0xff)) >>> 0 !== c) break;
        const leaf = ((node(idx) >>> 8) & 1) === 1;
        idx = (idx ^ base(idx)) >>> 0;
        if (leaf) {
          longest = p - at + 1;
          offset = node(idx) & 0x7fffffff;
        }
      }
    }
    if (longest > 0) {
      const r = this.replacements;
      if (offset >= r.length)
        throw new TokenizeError(
          "the vocabulary's precompiled_charsmap is damaged (replacement out of bounds)",
        );
      let end = offset;
      while (end < r.length && r[end] !== 0) end++;
      if (end === r.length)
        throw new TokenizeError("the vocabulary's precompiled_charsmap is damaged (unterminated string)");
      return [r.subarray(offset, end), longest];
    }
    // A valid UTF-8 sequence passes as it is (the input came from a JS string, so it always is).
    const n = Math.min(lenUtf8(input[at]!), input.length - at);
    return [input.subarray(at, at + n), n];
  }

  private normalize(input: Uint8Array): Uint8Array {
    const out: number[] = [];
    let prepended = false;
    let inWord = false;
    for (let at = 0; at < input.length; ) {
      const [rep, used] = this.normalizePrefix(input, at);
      for (let i = 0; i < rep.length; i++) {
        const c = rep[i]!;
        if (c !== 0x20) {
          if (!inWord) {
            inWord = true;
            if ((this.addSpacePrefix && !prepended) || this.mergeSpaces) {
              out.push(...SPACE);
              prepended = true;
            }
          }
          out.push(c);
        } else {
          inWord = false;
          if (!this.mergeSpaces) out.push(...SPACE);
        }
      }
      at += used;
    }
    return Uint8Array.from(out);
  }

  /** llama.cpp's llm_tokenizer_ugm_session::tokenize: Viterbi over the normalized bytes. */
  private tokenizeFragment(text: Uint8Array, out: number[]): void {
    const s = this.normalize(text);
    const n = s.length;
    if (n === 0) return;
    const key = bin(s);
    const unk = this.unk ?? -1;
    const bestId = new Int32Array(n + 1).fill(unk);
    const bestFrom = new Int32Array(n + 1);
    const bestScore = new Float64Array(n + 1).fill(-Number.MAX_VALUE);
    bestScore[0] = 0;
    for (let at = 0; at < n; ) {
      const cp = Math.min(lenUtf8(s[at]!), n - at);
      const here = bestScore[at]!;
      let whole = false;
      for (let len = 1; len <= Math.min(this.maxBytes, n - at); len++) {
        const id = this.matcher.get(key.slice(at, at + len));
        if (id === undefined) continue;
        if (len === cp) whole = true;
        const score = here + (this.attrs[id]! & ATTR.userDefined ? 0 : this.scores[id]!);
        if (score > bestScore[at + len]!) {
          bestScore[at + len] = score;
          bestId[at + len] = id;
          bestFrom[at + len] = at;
        }
      }
      if (!whole) {
        const score = here + this.unknownScore;
        if (score > bestScore[at + cp]!) {
          bestScore[at + cp] = score;
          bestId[at + cp] = unk;
          bestFrom[at + cp] = at;
        }
      }
      at += cp;
    }
    const rev: number[] = [];
    let prevUnknown = false;
    for (let p = n; ; p = bestFrom[p]!) {
      const id = bestId[p]!;
      const isUnknown = id === unk;
      if (!(prevUnknown && isUnknown)) rev.push(id);
      if (bestFrom[p] === 0) break;
      prevUnknown = isUnknown;
    }
    if (rev.includes(-1))
      throw new TokenizeError(
        `cannot tokenize ${quote(new TextDecoder().decode(text))}: a character no token covers, and there is no unknown token`,
      );
    for (let i = rev.length - 1; i >= 0; i--) out.push(rev[i]!);
  }
}
