// The byte-level BPE tokenizer llama.cpp uses for GGUF vocabularies whose `tokenizer.ggml.model` is "gpt2"
// (Llama 3, Qwen2/3, DeepSeek, OLMoE, GPT-2, Falcon, StarCoder …) and "gemma4", written to give the same
// ids as llama.cpp's `llm_tokenizer_bpe_session` and the same text as its `llama_vocab::detokenize`:
//
// encode
//   1. Special-token partition, as for SentencePiece (llama.cpp `tokenizer_st_partition`): user-defined
//      tokens are always cut out of the text, control and unknown ones only with `parseSpecial`; longest
//      text first; a token marked lstrip/rstrip eats the ASCII whitespace beside it.
//   2. Each fragment is split by the pre-tokenizer named by `tokenizer.ggml.pre` (pretokenize.ts), and each
//      piece's UTF-8 bytes are written with GPT-2's byte map ("gemma4": spaces become "▁", pieces are
//      lines, no byte map).
//   3. A piece starts as one symbol per character; the adjacent pair with the lowest merge rank is merged
//      (leftmost first on ties) until no pair has a rank. With `ignore_merges` (Llama 3) a piece that is a
//      token is taken whole.
//   4. A final symbol that is a token is emitted; otherwise each byte of it that is a one-character token
//      (gemma4: `<0xXX>`) is, and the others are dropped, as llama.cpp drops them.
//
// decode
//   control and unknown tokens render as nothing (as their text with `unparseSpecial`), user-defined
//   tokens as their text, normal tokens through GPT-2's byte map back to bytes (a character outside the
//   map renders as `[UNK_BYTE_0x…]` as in llama.cpp), byte tokens as their byte. `decode` then applies
//   llama.cpp's clean_spaces where the pre-tokenizer has it (" ." → "." …); streaming (Detokenizer) does
//   not, as llama.cpp's piece-by-piece output does not.

import { MergeQueue } from "./merge-queue.ts";
import {
  byteEncode,
  CHAR_TO_BYTE,
  codePoints,
  fromCodePoints,
  type PreTokenizer,
  preTokenizer,
  splitText,
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

/** The plain data a BPE tokenizer is built from (as read from GGUF metadata). */
export interface BpeTokenizerData {
  readonly tokens: readonly string[];
  /** One SPM_TOKEN_TYPE per token (absent: every token normal). */
  readonly types?: readonly number[] | undefined;
  /** Merges in rank order, each "left right". */
  readonly merges: readonly string[];
  /** `tokenizer.ggml.pre` (absent: llama.cpp's "default"). */
  readonly pre?: string | undefined;
  /** "gemma4": SentencePiece-style BPE (spaces as "▁", `<0xXX>` byte tokens, no byte map). */
  readonly model?: "gpt2" | "gemma4";
  readonly bos?: number | undefined;
  readonly eos?: number | undefined;
  readonly unk?: number | undefined;
  /** An end-of-turn / end-of-message id from the file, if it names one. */
  readonly eot?: number | undefined;
  readonly eom?: number | undefined;
  /** Absent: what llama.cpp does for this pre-tokenizer (Llama 3: add BOS). */
  readonly addBos?: boolean | undefined;
  readonly addEos?: boolean | undefined;
  readonly addSpacePrefix?: boolean | undefined;
  /** `general.name`, which llama.cpp looks at for a few per-model token attributes (Phi-3). */
  readonly modelName?: string | undefined;
  /** `general.architecture`, likewise. */
  readonly architecture?: string | undefined;
  /**
   * A Hugging Face tokenizer.json's pre-tokenizer (hf-bpe.ts), used instead of llama.cpp's for `pre`:
   * text → pieces before the byte map. With it, llama.cpp's text-based token fix-ups are not applied.
   */
  readonly split?: ((text: string) => string[]) | undefined;
  /** Take a piece that is a token whole (tokenizer.json's `ignore_merges`); default: the pre-tokenizer's. */
  readonly ignoreMerges?: boolean | undefined;
  /** Added tokens that eat the whitespace before (lstrip) or after (rstrip) them. */
  readonly strip?: ReadonlyMap<number, { readonly lstrip: boolean; readonly rstrip: boolean }> | undefined;
  /** More end-of-generation ids (generation_config.json's eos_token_id). */
  readonly extraEog?: readonly number[] | undefined;
  readonly chatTemplate?: string | undefined;
}

const SPACE_MARK = "\u2581";
const HEX = "0123456789ABCDEF";
const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);

const quote = (s: string) => JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);

export class BpeTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  readonly unk: number | undefined;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly addSpacePrefix: boolean;
  readonly eogIds: ReadonlySet<number>;
  /** The pre-tokenizer's llama.cpp type ("llama3", "qwen2", "gpt2" …), or "tokenizer.json". */
  readonly preType: string;
  /** The chat template of a Hugging Face folder (tokenizer_config.json), if any. */
  readonly chatTemplate: string | undefined;

  private readonly texts: readonly string[];
  private readonly attrs: Uint16Array;
  private readonly ids = new Map<string, number>();
  /** "left right" → rank (the first of duplicates wins, as in llama.cpp). */
  private readonly ranks = new Map<string, number>();
  private readonly pre: PreTokenizer;
  private readonly split: ((text: string) => string[]) | undefined;
  private readonly byteLevel: boolean;
  private readonly escapeSpaces: boolean;
  private readonly specialTokens: readonly number[];
  /** Each token's piece (special = true), rendered on first use. */
  private readonly pieces: (Uint8Array | undefined)[];

  constructor(data: BpeTokenizerData) {
    const { tokens } = data;
    if (!Array.isArray(tokens) || tokens.length === 0) {
      throw new TokenizerDataError("tokens", "the token list is missing or empty");
    }
    const n = tokens.length;
    this.vocabSize = n;
    const gemma = data.model === "gemma4";
    const pre = preTokenizer(gemma ? "default" : data.pre);
    if (pre === undefined) {
      throw new TokenizerDataError(
        "pre",
        `pre-tokenizer ${quote(data.pre ?? "")} is not one moec knows (it knows ${listNames()})`,
      );
    }
    this.pre = gemma ? { ...pre, type: "gemma4", exprs: ["[^\\n]+|[\\n]+"], ignoreMerges: false } : pre;
    this.split = data.split;
    if (data.split) {
      this.pre = {
        type: "tokenizer.json",
        exprs: [],
        cleanSpaces: false,
        ignoreMerges: false,
        addBos: false,
      };
    }
    if (data.ignoreMerges !== undefined) this.pre = { ...this.pre, ignoreMerges: data.ignoreMerges };
    this.chatTemplate = data.chatTemplate;
    this.preType = this.pre.type;
    this.byteLevel = !gemma;
    this.escapeSpaces = gemma;

    const types = data.types;
    if (types !== undefined && (!Array.isArray(types) || types.length !== n)) {
      throw new TokenizerDataError(
        "types",
        `${Array.isArray(types) ? types.length : "no"} token types for ${n} tokens`,
      );
    }
    const texts: string[] = [];
    this.attrs = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      let t = tokens[i];
      if (typeof t !== "string") throw new TokenizerDataError("tokens", `token ${i} is not a string`);
      if (t === "") t = `[EMPTY_${i}]`;
      const prev = this.ids.get(t);
      if (prev !== undefined) {
        throw new TokenizerDataError("tokens", `duplicate token ${quote(t)} has ids ${prev} and ${i}`);
      }
      this.ids.set(t, i);
      texts.push(t);
      const ty = types === undefined ? SPM_TOKEN_TYPE.normal : types[i];
      if (typeof ty !== "number" || !Number.isInteger(ty)) {
        throw new TokenizerDataError("types", `type ${i} (token ${quote(t)}) is not an integer`);
      }
      this.attrs[i] = ATTR_OF_TYPE[ty] ?? ATTR.undefined;
    }
    this.texts = texts;

    // Merges: each "left right" must name two tokens whose concatenation is a token.
    data.merges.forEach((m, rank) => {
      if (typeof m !== "string") throw new TokenizerDataError("merges", `merge ${rank} is not a string`);
      const at = m.indexOf(" ", 1);
      if (at < 0) throw new TokenizerDataError("merges", `merge ${rank} ${quote(m)} is not "left right"`);
      const a = m.slice(0, at);
      const b = m.slice(at + 1);
      for (const [what, t] of [
        ["names", a],
        ["names", b],
        ["makes", a + b],
      ] as const) {
        if (!this.ids.has(t)) {
          throw new TokenizerDataError(
            "merges",
            `merge ${rank} ${quote(m)} ${what} ${quote(t)}, which is not in the vocabulary`,
          );
        }
      }
      if (!this.ranks.has(m)) this.ranks.set(m, rank);
    });

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
    this.addBos = data.addBos ?? this.pre.addBos;
    if (gemma) this.addBos = true;
    this.addEos = data.addEos ?? false;
    this.addSpacePrefix = data.addSpacePrefix ?? false;
    if (this.addBos && this.bos === undefined) {
      throw new TokenizerDataError(
        "bos",
        "BOS is added to every prompt (add_bos_token) but there is no BOS token id",
      );
    }
    if (this.addEos && this.eos === undefined) {
      throw new TokenizerDataError(
        "eos",
        "EOS is added to every prompt (add_eos_token) but there is no EOS token id",
      );
    }

    if (data.split) {
      const eog = new Set<number>(data.extraEog ?? []);
      if (this.eos !== undefined) eog.add(this.eos);
      this.eogIds = eog;
      for (const [id, st] of data.strip ?? []) {
        this.attrs[id]! |= (st.lstrip ? ATTR.lstrip : 0) | (st.rstrip ? ATTR.rstrip : 0);
      }
    } else {
      this.eogIds = markSpecialTexts({
        ids: this.ids,
        attrs: this.attrs,
        eos: this.eos,
        eot: data.eot,
        eom: data.eom,
      });
    }

    this.specialTokens = sortSpecials(texts, this.attrs);

    this.pieces = new Array<Uint8Array | undefined>(n);

    if (!data.split) perModelAttributes(this.ids, this.attrs, this.specialTokens, data);
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

  /** Text → token ids, as llama.cpp's `llama_tokenize`. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const addBos = options.addBos ?? this.addBos;
    const addEos = options.addEos ?? this.addEos;
    const out: number[] = [];
    if (addBos) {
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
      else this.tokenizeFragment(this.escapeSpaces ? f.text.replaceAll(" ", SPACE_MARK) : f.text, out);
    }
    if (addEos) {
      if (this.eos === undefined) throw new TokenizeError("cannot add EOS: the vocabulary has no EOS token");
      out.push(this.eos);
    }
    return out;
  }

  /** Token ids → text, as llama.cpp's `llama_detokenize` (clean_spaces included). */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const d = new Detokenizer(this, options);
    let s = "";
    for (const id of ids) s += d.push(id);
    s += d.flush();
    return this.pre.cleanSpaces ? cleanSpaces(s) : s;
  }

  /** The bytes of one token as llama.cpp's `token_to_piece` gives them. Shared: do not modify. */
  piece(id: number, special = false): Uint8Array {
    this.checkId(id);
    if (!special && this.attrs[id]! & (ATTR.unknown | ATTR.control)) return EMPTY;
    let p = this.pieces[id];
    if (p === undefined) p = this.pieces[id] = this.renderPiece(id);
    return p;
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
    if (attr & ATTR.normal) {
      if (this.escapeSpaces) return utf8.encode(text.replaceAll(SPACE_MARK, " "));
      const bytes: number[] = [];
      for (const ch of text) {
        const b = CHAR_TO_BYTE.get(ch);
        if (b !== undefined) bytes.push(b);
        else {
          // llama.cpp's llama_decode_text writes characters outside the byte map like this.
          const hex = [...utf8.encode(ch)].map((x) => x.toString(16).padStart(2, "0")).join("");
          bytes.push(...utf8.encode(`[UNK_BYTE_0x${hex}${text}]`));
        }
      }
      return Uint8Array.from(bytes);
    }
    if (attr & ATTR.byte) {
      const m = /^\s*([+-]?)(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]*)/.exec(text.slice(3, 5))!;
      const v = m[2] === "" ? 0 : Number.parseInt(m[2]!, 16);
      return Uint8Array.of((m[1] === "-" ? -v : v) & 0xff);
    }
    return EMPTY;
  }

  /** llama.cpp's llm_tokenizer_bpe_session::tokenize on one fragment. */
  private tokenizeFragment(text: string, out: number[]): void {
    for (const raw of this.split ? this.split(text) : splitText(text, this.pre.exprs)) {
      const word = this.byteLevel ? byteEncode(raw) : raw;
      if (word === "") continue;
      if (this.pre.ignoreMerges) {
        const id = this.ids.get(word);
        if (id !== undefined) {
          out.push(id);
          continue;
        }
      }
      if (this.preType === "gemma4" && /^\n+$/.test(word)) {
        const id = this.ids.get(word);
        if (id !== undefined) {
          out.push(id);
          continue;
        }
      }
      for (const sym of this.merge(word)) {
        const id = this.ids.get(sym);
        if (id !== undefined) {
          out.push(id);
          continue;
        }
        for (const b of utf8.encode(sym)) {
          const t = this.byteLevel
            ? b < 0x80
              ? this.ids.get(String.fromCharCode(b))
              : undefined
            : this.ids.get(`<0x${HEX[b >> 4]}${HEX[b & 15]}>`);
          if (t !== undefined) out.push(t);
        }
      }
    }
  }

  /** The symbols of a word after merging by rank. */
  private merge(word: string): string[] {
    const sym = Array.from(word);
    const count = sym.length;
    if (count < 2) return sym;
    const prev = new Int32Array(count);
    const next = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < count ? i + 1 : -1;
    }
    const queue = new MergeQueue<string>();
    const add = (l: number, r: number) => {
      if (l < 0 || r < 0) return;
      const key = `${sym[l]} ${sym[r]}`;
      const rank = this.ranks.get(key);
      if (rank !== undefined) queue.push(rank, l, r, sym[l]! + sym[r]!);
    };
    for (let i = 1; i < count; i++) add(i - 1, i);
    while (queue.length > 0) {
      const [l, r, text] = queue.pop();
      if (sym[l] === "" || sym[r] === "" || sym[l]! + sym[r]! !== text) continue;
      sym[l] = text;
      sym[r] = "";
      next[l] = next[r]!;
      if (next[r]! >= 0) prev[next[r]!] = l;
      add(prev[l]!, l);
      add(l, next[l]!);
    }
    return sym.filter((s) => s !== "");
  }
}

function listNames(): string {
  return "llama-bpe, qwen2, qwen35, gpt-2, deepseek-llm, deepseek-coder, deepseek-v3, falcon, starcoder, refact, command-r, mpt, olmo, dbrx, smaug-bpe, stablelm2, … (see runtime/tokenizer/pretokenize.ts)";
}

/** llama.cpp's clean_spaces passes over detokenized text. */
export function cleanSpaces(text: string): string {
  const pass = (s: string, f: (s: string, i: number, out: string[]) => number | undefined): string => {
    if (s.length === 0) return s;
    const out: string[] = [s[0]!];
    for (let i = 1; i < s.length; i++) {
      const skip = f(s, i, out);
      out.push(s[i]!);
      if (skip !== undefined) i += skip;
    }
    return out.join("");
  };
  // " ?", " !", " .", " ," lose their space.
  let s = pass(text, (s, i, out) => {
    if (s[i - 1] === " " && "?!.,".includes(s[i]!)) out.pop();
    return undefined;
  });
  // " ' " becomes "'" (llama.cpp blanks the space it skips, so it is not a space for the next check).
  let blanked = -1;
  s = pass(s, (s, i, out) => {
    const before = i - 1 === blanked ? "\0" : s[i - 1];
    if (s[i] === "'" && i + 1 < s.length && before === " " && s[i + 1] === " ") {
      out.pop();
      blanked = i + 1;
      return 1;
    }
    return undefined;
  });
  // " 's", " 'm", " 're", " 've" lose their space.
  s = pass(s, (s, i, out) => {
    if (s[i - 1] === " " && s[i] === "'" && i + 1 < s.length) {
      const x1 = s[i + 1];
      if (x1 === "s" || x1 === "m") out.pop();
      else if (i + 2 < s.length && ((x1 === "r" && s[i + 2] === "e") || (x1 === "v" && s[i + 2] === "e")))
        out.pop();
    }
    return undefined;
  });
  return s;
}
