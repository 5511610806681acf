// A Hugging Face `tokenizer.json` loader for the SentencePiece-style BPE models Mistral and Mixtral
// ship (and Llama 1/2): `model.type` "BPE" with `byte_fallback`, merges ranked by their order, and
// either the normalizer Sequence[Prepend "▁", Replace " " → "▁"] (the "legacy" conversion) or the
// pre-tokenizer Metaspace (replacement "▁", prepend_scheme always/first/never). It gives the same
// ids as the `tokenizers` library for these models:
//
// encode
//   1. Added tokens are cut out of the text, longest first: non-special ones always, special ones
//      (`<s>`, `[INST]` …) only with `parseSpecial` (transformers parses them by default; llama.cpp's
//      `moec run` prompt does not, so neither do we unless asked). lstrip/rstrip eat the whitespace
//      beside a token.
//   2. Each remaining segment is normalized: "▁" put in front (Prepend on every segment; Metaspace
//      "first" only on a segment at the very start of the text), spaces replaced by "▁".
//   3. BPE: the segment (or with Metaspace split, each "▁"-word) starts as one symbol per character;
//      a character outside the vocabulary becomes its UTF-8 bytes `<0xXX>` (byte_fallback) or the
//      unknown token (runs fused with fuse_unk). Adjacent pairs merge, lowest merge rank first,
//      leftmost first on ties, as `tokenizers`' Word::merge_all.
//
// decode (the decoder these models ship: Replace "▁" → " ", ByteFallback, Fuse, Strip one leading
// space): byte tokens become their byte, special added tokens render as nothing (their text with
// `unparseSpecial`), and one leading space of the first token is dropped when a "▁" was prepended.
// It goes through the same streaming Detokenizer as the GGUF tokenizer (runtime/tokenizer/spm.ts).
//
// BOS/EOS come from `tokenizer_config.json` beside the file when present (bos_token, eos_token,
// add_bos_token, add_eos_token, chat_template), else from the post-processor's template
// (`<s> $A`), else `<s>`/`</s>` when the vocabulary has them. Every problem in the files is a
// CheckpointError naming the file and the key (`model.vocab`, `model.merges[12]`, `added_tokens[3]`).
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { CheckpointError, printableName } from "../checkpoint/errors.ts";
import type { BpeTokenizer } from "./bpe.ts";
import { hfByteLevelTokenizer, isByteLevelJson } from "./hf-bpe.ts";
import { MergeQueue } from "./merge-queue.ts";
import { type DecodeOptions, decodeAll, type EncodeOptions, type PieceSource } from "./spm.ts";
import { TokenizeError } from "./tokenizer.ts";

const SPACE_MARK = "\u2581";
const HEX = "0123456789ABCDEF";
const MAX_TOKENIZER_BYTES = 256 * 1024 * 1024;
const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);

export interface HfAddedToken {
  readonly id: number;
  readonly content: string;
  readonly special: boolean;
  readonly lstrip: boolean;
  readonly rstrip: boolean;
}

/** What a tokenizer needs from `tokenizer.json` and `tokenizer_config.json`, already checked. */
export interface HfTokenizerData {
  /** Token text by id (every id from 0 has one). */
  readonly tokens: readonly string[];
  /** Merge pairs in rank order, as token texts. */
  readonly merges: readonly (readonly [string, string])[];
  readonly added: readonly HfAddedToken[];
  readonly byteFallback: boolean;
  readonly unk: number | undefined;
  readonly fuseUnk: boolean;
  readonly ignoreMerges: boolean;
  /** Where "▁" is put in front of text: every segment, only the first, or never. */
  readonly prepend: "always" | "first" | "never";
  /** Metaspace split: BPE runs on each "▁"-word alone. */
  readonly splitWords: boolean;
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  readonly addBos: boolean;
  readonly addEos: boolean;
  /** More end-of-generation ids (generation_config.json's eos_token_id). */
  readonly extraEog?: readonly number[];
  readonly chatTemplate?: string | undefined;
}

interface Fragment {
  readonly text?: string;
  readonly token?: number;
  /** Offset of the text in the original input. */
  readonly at: number;
}

/** Bad tokenizer data; `key` is the JSON path the problem is at. The loader adds the file name. */
export class HfTokenizerDataError extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(message);
  }
}

export class HfTokenizer implements PieceSource {
  readonly vocabSize: number;
  readonly bos: number | undefined;
  readonly eos: number | undefined;
  readonly unk: number | undefined;
  readonly addBos: boolean;
  readonly addEos: boolean;
  /** A "▁" is put in front of the text, so decoding drops one leading space. */
  readonly addSpacePrefix: boolean;
  readonly eogIds: ReadonlySet<number>;
  readonly chatTemplate: string | undefined;

  private readonly texts: readonly string[];
  private readonly ids = new Map<string, number>();
  /** "leftId rightId" → [rank, new id]. */
  private readonly merges = new Map<number, Map<number, [number, number]>>();
  private readonly byteTokens = new Int32Array(256).fill(-1);
  private readonly specialIds = new Set<number>();
  /** Added tokens, longest content first. */
  private readonly added: readonly HfAddedToken[];
  private readonly pieces: readonly Uint8Array[];
  private readonly data: HfTokenizerData;

  constructor(data: HfTokenizerData) {
    this.data = data;
    const n = data.tokens.length;
    if (n === 0) throw new HfTokenizerDataError("model.vocab", "the vocabulary is empty");
    this.vocabSize = n;
    this.texts = data.tokens;
    for (let i = 0; i < n; i++) {
      const t = data.tokens[i]!;
      if (!this.ids.has(t)) this.ids.set(t, i);
    }
    data.merges.forEach(([a, b], rank) => {
      const key = `model.merges[${rank}]`;
      const l = this.ids.get(a);
      const r = this.ids.get(b);
      const m = this.ids.get(a + b);
      if (l === undefined || r === undefined) {
        throw new HfTokenizerDataError(key, `${quote(l === undefined ? a : b)} is not in the vocabulary`);
      }
      if (m === undefined)
        throw new HfTokenizerDataError(key, `the merged token ${quote(a + b)} is not in the vocabulary`);
      let row = this.merges.get(l);
      if (!row) this.merges.set(l, (row = new Map()));
      if (!row.has(r)) row.set(r, [rank, m]);
    });
    // Byte tokens: a missing one only matters to text that needs it (tokenizers then uses unk).
    if (data.byteFallback) {
      for (let b = 0; b < 256; b++) {
        const id = this.ids.get(`<0x${HEX[b >> 4]}${HEX[b & 15]}>`);
        if (id !== undefined) this.byteTokens[b] = id;
      }
    }
    for (const a of data.added) if (a.special) this.specialIds.add(a.id);
    this.added = [...data.added]
      .filter((a) => a.content !== "")
      .sort((x, y) => y.content.length - x.content.length || x.id - y.id);
    this.unk = data.unk;
    this.bos = data.bos;
    this.eos = data.eos;
    this.addBos = data.addBos;
    this.addEos = data.addEos;
    this.addSpacePrefix = data.prepend !== "never";
    this.chatTemplate = data.chatTemplate;
    if (this.addBos && this.bos === undefined) {
      throw new HfTokenizerDataError("bos_token", "BOS is added to every prompt but there is no BOS token");
    }
    const eog = new Set<number>(data.extraEog ?? []);
    if (this.eos !== undefined) eog.add(this.eos);
    this.eogIds = eog;
    const pieces: Uint8Array[] = [];
    const addedIds = new Set(data.added.map((a) => a.id));
    for (let i = 0; i < n; i++) {
      const t = this.texts[i]!;
      if (addedIds.has(i)) pieces.push(utf8.encode(t));
      else if (data.byteFallback && /^<0x[0-9A-F]{2}>$/.test(t))
        pieces.push(Uint8Array.of(Number.parseInt(t.slice(3, 5), 16)));
      else pieces.push(utf8.encode(t.replaceAll(SPACE_MARK, " ")));
    }
    this.pieces = pieces;
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

  /** The text of BOS/EOS (for chat templates). */
  get bosText(): string | undefined {
    return this.bos === undefined ? undefined : this.texts[this.bos];
  }
  get eosText(): string | undefined {
    return this.eos === undefined ? undefined : this.texts[this.eos];
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const addBos = options.addBos ?? this.addBos;
    const addEos = options.addEos ?? this.addEos;
    const out: number[] = [];
    if (addBos) {
      if (this.bos === undefined) throw new Error("cannot add BOS: the tokenizer has no BOS token");
      out.push(this.bos);
    }
    const wellFormed = text.replace(
      /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g,
      "\uFFFD",
    );
    for (const f of this.partition(wellFormed, options.parseSpecial ?? false)) {
      if (f.text === undefined) {
        out.push(f.token!);
        continue;
      }
      const prepend = this.data.prepend === "always" || (this.data.prepend === "first" && f.at === 0);
      const normal = (prepend ? SPACE_MARK : "") + f.text.replaceAll(" ", SPACE_MARK);
      if (this.data.splitWords) {
        // Metaspace split: each word starts at a "▁" (which stays with the word after it).
        for (const w of normal.split(/(?=\u2581)/)) if (w !== "") this.bpe(w, out);
      } else this.bpe(normal, out);
    }
    if (addEos) {
      if (this.eos === undefined) throw new Error("cannot add EOS: the tokenizer has no EOS token");
      out.push(this.eos);
    }
    return out;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    return decodeAll(this, ids, options);
  }

  /** A token's bytes; special added tokens are empty unless `special`. Shared: do not modify. */
  piece(id: number, special = false): Uint8Array {
    this.checkId(id);
    if (!special && this.specialIds.has(id)) return EMPTY;
    return this.pieces[id]!;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
  }

  /** Cuts added tokens out of the text: longest first, leftmost occurrences. */
  private partition(text: string, parseSpecial: boolean): Fragment[] {
    let buffer: Fragment[] = text === "" ? [] : [{ text, at: 0 }];
    for (const a of this.added) {
      if (a.special && !parseSpecial) continue;
      const next: Fragment[] = [];
      for (const f of buffer) {
        if (f.text === undefined) {
          next.push(f);
          continue;
        }
        let rest = f.text;
        let at = f.at;
        for (;;) {
          const i = rest.indexOf(a.content);
          if (i < 0) break;
          let before = rest.slice(0, i);
          if (a.lstrip) before = before.trimEnd();
          if (before !== "") next.push({ text: before, at });
          next.push({ token: a.id, at: at + i });
          let skip = i + a.content.length;
          if (a.rstrip) while (skip < rest.length && /\s/.test(rest[skip]!)) skip++;
          rest = rest.slice(skip);
          at += skip;
        }
        if (rest !== "") next.push({ text: rest, at });
      }
      buffer = next;
    }
    return buffer;
  }

  /** tokenizers' BPE on one word: characters (or their bytes) → merged by rank. */
  private bpe(word: string, out: number[]): void {
    if (this.data.ignoreMerges) {
      const whole = this.ids.get(word);
      if (whole !== undefined) {
        out.push(whole);
        return;
      }
    }
    const sym: number[] = [];
    let lastUnk = false;
    for (const c of word) {
      const id = this.ids.get(c);
      if (id !== undefined) {
        sym.push(id);
        lastUnk = false;
        continue;
      }
      if (this.data.byteFallback) {
        const bytes = utf8.encode(c);
        if (bytes.every((b) => this.byteTokens[b]! >= 0)) {
          for (const b of bytes) sym.push(this.byteTokens[b]!);
          lastUnk = false;
          continue;
        }
        // As tokenizers does: a character whose byte tokens are not all there becomes unk.
        if (this.unk === undefined) {
          const b = bytes.find((x) => this.byteTokens[x]! < 0)!;
          throw new TokenizeError(
            `cannot tokenize ${quote(c)}: it is not in the vocabulary, byte_fallback has no byte token <0x${HEX[b >> 4]}${HEX[b & 15]}> for it, and there is no unknown token`,
          );
        }
      }
      if (this.unk === undefined) {
        throw new TokenizeError(
          `cannot tokenize ${quote(c)}: it is not in the vocabulary and there is no unknown token`,
        );
      }
      if (!(this.data.fuseUnk && lastUnk)) sym.push(this.unk);
      lastUnk = true;
    }
    const count = sym.length;
    const prev = new Int32Array(count);
    const next = new Int32Array(count);
    const alive = new Uint8Array(count).fill(1);
    for (let i = 0; i < count; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < count ? i + 1 : -1;
    }
    const queue = new MergeQueue<number>();
    const consider = (l: number) => {
      const r = next[l]!;
      if (l < 0 || r < 0) return;
      const m = this.merges.get(sym[l]!)?.get(sym[r]!);
      if (m) queue.push(m[0], l, l, m[1]);
    };
    for (let i = 0; i + 1 < count; i++) consider(i);
    while (queue.length > 0) {
      const [pos, , id] = queue.pop();
      if (!alive[pos] || next[pos]! < 0) continue;
      const r = next[pos]!;
      const m = this.merges.get(sym[pos]!)?.get(sym[r]!);
      if (!m || m[1] !== id) continue; // this pair has changed since it was queued
      sym[pos] = id;
      alive[r] = 0;
      next[pos] = next[r]!;
      if (next[r]! >= 0) prev[next[r]!] = pos;
      if (prev[pos]! >= 0) consider(prev[pos]!);
      consider(pos);
    }
    for (let i = 0; i >= 0 && i < count; i = next[i]!) out.push(sym[i]!);
  }
}

function quote(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);
}

// ---------------------------------------------------------------- reading the files

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v);
const own = (o: Record<string, unknown>, k: string): unknown => (Object.hasOwn(o, k) ? o[k] : undefined);

function readJson(path: string, what: string): unknown {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    throw new CheckpointError({ file: path, problem: `cannot open ${what}: ${(e as Error).message}` });
  }
  if (size > MAX_TOKENIZER_BYTES) {
    throw new CheckpointError({
      file: path,
      problem: `is ${size} bytes; ${what} is at most ${MAX_TOKENIZER_BYTES}`,
    });
  }
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new CheckpointError({ file: path, problem: `not valid JSON: ${(e as Error).message}` });
  }
}

/** An added-token reference in tokenizer_config.json: "<s>" or {"content": "<s>", …}. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (isObject(v) && typeof own(v, "content") === "string") return own(v, "content") as string;
  return undefined;
}

interface Normalization {
  prepend: "always" | "first" | "never";
  splitWords: boolean;
}

function normalization(root: Record<string, unknown>): Normalization {
  let prepend: Normalization["prepend"] = "never";
  let replaced = false;
  let splitWords = false;
  const walkNormalizer = (n: unknown, key: string): void => {
    if (n === null || n === undefined) return;
    if (!isObject(n)) throw new HfTokenizerDataError(key, "must be an object or null");
    const type = own(n, "type");
    if (type === "Sequence") {
      const list = own(n, "normalizers");
      if (!Array.isArray(list))
        throw new HfTokenizerDataError(`${key}.normalizers`, "missing: a Sequence needs its list");
      list.forEach((x, i) => walkNormalizer(x, `${key}.normalizers[${i}]`));
      return;
    }
    if (type === "Prepend") {
      if (own(n, "prepend") !== SPACE_MARK)
        throw new HfTokenizerDataError(`${key}.prepend`, 'only Prepend "▁" is supported');
      prepend = "always";
      return;
    }
    if (type === "Replace") {
      const pattern = own(n, "pattern");
      const from = isObject(pattern) ? own(pattern, "String") : undefined;
      if (from !== " " || own(n, "content") !== SPACE_MARK) {
        throw new HfTokenizerDataError(`${key}`, 'only Replace " " → "▁" is supported');
      }
      replaced = true;
      return;
    }
    throw new HfTokenizerDataError(
      `${key}.type`,
      `normalizer ${quote(String(type))} is not supported (Prepend, Replace, Sequence)`,
    );
  };
  walkNormalizer(own(root, "normalizer"), "normalizer");
  const pre = own(root, "pre_tokenizer");
  if (pre !== null && pre !== undefined) {
    if (!isObject(pre) || own(pre, "type") !== "Metaspace") {
      throw new HfTokenizerDataError(
        "pre_tokenizer.type",
        `pre-tokenizer ${quote(String(isObject(pre) ? own(pre, "type") : pre))} is not supported (Metaspace, or none)`,
      );
    }
    if ((own(pre, "replacement") ?? SPACE_MARK) !== SPACE_MARK) {
      throw new HfTokenizerDataError("pre_tokenizer.replacement", 'only "▁" is supported');
    }
    const scheme = own(pre, "prepend_scheme");
    const legacyAdd = own(pre, "add_prefix_space");
    if (scheme === "always" || scheme === "first" || scheme === "never") prepend = scheme;
    else if (scheme === undefined) prepend = legacyAdd === false ? "never" : "always";
    else
      throw new HfTokenizerDataError(
        "pre_tokenizer.prepend_scheme",
        `${quote(String(scheme))} is not always, first or never`,
      );
    splitWords = own(pre, "split") !== false;
    replaced = true;
  }
  if (!replaced && prepend !== "never") {
    throw new HfTokenizerDataError("normalizer", 'Prepend "▁" without Replace " " → "▁" is not supported');
  }
  if (!replaced) {
    throw new HfTokenizerDataError(
      "normalizer",
      'no Replace " " → "▁" normalizer nor Metaspace pre-tokenizer: only SentencePiece-style (Mistral, Llama 2) tokenizers are supported',
    );
  }
  return { prepend, splitWords };
}

/** Builds the data from the parsed tokenizer.json (and tokenizer_config.json, if any). */
export function hfTokenizerData(
  json: unknown,
  config?: unknown,
  generationConfig?: unknown,
  /** A byte-level BPE tokenizer.json (hf-bpe.ts reads its pre-tokenizer): no SentencePiece normalization. */
  byteLevel = false,
): HfTokenizerData {
  if (!isObject(json)) throw new HfTokenizerDataError("(root)", "tokenizer.json must hold one object");
  const model = own(json, "model");
  if (!isObject(model)) throw new HfTokenizerDataError("model", "missing: the file has no tokenizer model");
  const type = own(model, "type");
  if (type !== undefined && type !== "BPE") {
    throw new HfTokenizerDataError("model.type", `${quote(String(type))} is not supported (only BPE)`);
  }
  for (const k of ["continuing_subword_prefix", "end_of_word_suffix"]) {
    const v = own(model, k);
    if (v !== undefined && v !== null && v !== "")
      throw new HfTokenizerDataError(`model.${k}`, "is not supported");
  }
  const vocab = own(model, "vocab");
  if (!isObject(vocab)) throw new HfTokenizerDataError("model.vocab", "missing: the file has no vocabulary");
  const byId = new Map<number, string>();
  for (const text of Object.keys(vocab)) {
    const id = vocab[text];
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0 || id > 0x7fffffff) {
      throw new HfTokenizerDataError(`model.vocab.${text}`, `id ${JSON.stringify(id)} is not a whole number`);
    }
    const prev = byId.get(id);
    if (prev !== undefined)
      throw new HfTokenizerDataError(`model.vocab.${text}`, `id ${id} is also ${quote(prev)}`);
    byId.set(id, text);
  }
  const addedRaw = own(json, "added_tokens") ?? [];
  if (!Array.isArray(addedRaw)) throw new HfTokenizerDataError("added_tokens", "must be an array");
  const added: HfAddedToken[] = addedRaw.map((a, i) => {
    const key = `added_tokens[${i}]`;
    if (!isObject(a)) throw new HfTokenizerDataError(key, "must be an object");
    const id = own(a, "id");
    const content = own(a, "content");
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0 || id > 0x7fffffff) {
      throw new HfTokenizerDataError(`${key}.id`, "missing or not a whole number");
    }
    if (typeof content !== "string")
      throw new HfTokenizerDataError(`${key}.content`, "missing or not a string");
    const prev = byId.get(id);
    if (prev !== undefined && prev !== content) {
      throw new HfTokenizerDataError(
        `${key}.content`,
        `id ${id} is ${quote(prev)} in the vocabulary, not ${quote(content)}`,
      );
    }
    byId.set(id, content);
    return {
      id,
      content,
      special: own(a, "special") === true,
      lstrip: own(a, "lstrip") === true,
      rstrip: own(a, "rstrip") === true,
    };
  });
  let size = 0; // not Math.max(...ids): a spread of 150k ids overflows the stack
  for (const id of byId.keys()) if (id >= size) size = id + 1;
  const tokens: string[] = [];
  for (let i = 0; i < size; i++) {
    const t = byId.get(i);
    if (t === undefined)
      throw new HfTokenizerDataError("model.vocab", `no token has id ${i} (ids must run 0..${size - 1})`);
    tokens.push(t);
  }
  const mergesRaw = own(model, "merges");
  if (!Array.isArray(mergesRaw))
    throw new HfTokenizerDataError("model.merges", "missing: a BPE model needs its merges");
  const merges = mergesRaw.map((m, i): [string, string] => {
    if (typeof m === "string") {
      const parts = m.split(" ");
      if (parts.length === 2 && parts[0] !== "" && parts[1] !== "") return [parts[0]!, parts[1]!];
    } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string") {
      return [m[0], m[1]];
    }
    throw new HfTokenizerDataError(`model.merges[${i}]`, 'must be "left right" or ["left", "right"]');
  });
  const ids = new Map(tokens.map((t, i) => [t, i]));
  const unkText = own(model, "unk_token");
  let unk: number | undefined;
  if (typeof unkText === "string") {
    unk = ids.get(unkText);
    if (unk === undefined)
      throw new HfTokenizerDataError("model.unk_token", `${quote(unkText)} is not in the vocabulary`);
  }
  const { prepend, splitWords } = byteLevel
    ? { prepend: "never" as const, splitWords: false }
    : normalization(json);

  // BOS/EOS: tokenizer_config.json, else the post-processor's template, else <s> and </s>.
  const cfg = isObject(config) ? config : {};
  const specialId = (key: string, fallback: string | undefined): number | undefined => {
    const raw = own(cfg, key);
    const text = raw === undefined || raw === null ? fallback : tokenContent(raw);
    if (raw !== undefined && raw !== null && text === undefined) {
      throw new HfTokenizerDataError(`tokenizer_config.${key}`, "must be a token's text or {content}");
    }
    if (text === undefined) return undefined;
    const id = ids.get(text);
    if (id === undefined && raw !== undefined && raw !== null) {
      throw new HfTokenizerDataError(`tokenizer_config.${key}`, `${quote(text)} is not in the vocabulary`);
    }
    return id;
  };
  let templateBos: string | undefined;
  let templateEos: string | undefined;
  const post = own(json, "post_processor");
  // A Sequence of processors (Llama 3: ByteLevel then TemplateProcessing) has its template inside.
  const processors =
    isObject(post) && Array.isArray(own(post, "processors"))
      ? (own(post, "processors") as unknown[])
      : [post];
  const template = processors.find((p) => isObject(p) && own(p, "type") === "TemplateProcessing");
  if (isObject(template) && Array.isArray(own(template, "single"))) {
    let seenA = false;
    for (const piece of own(template, "single") as unknown[]) {
      if (!isObject(piece)) continue;
      if (isObject(own(piece, "Sequence"))) seenA = true;
      const sp = own(piece, "SpecialToken");
      if (isObject(sp) && typeof own(sp, "id") === "string") {
        if (seenA) templateEos = own(sp, "id") as string;
        else templateBos = own(sp, "id") as string;
      }
    }
  }
  const bos = specialId("bos_token", templateBos ?? (ids.has("<s>") ? "<s>" : undefined));
  const eos = specialId("eos_token", templateEos ?? (ids.has("</s>") ? "</s>" : undefined));
  const flag = (key: string, fallback: boolean): boolean => {
    const v = own(cfg, key);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "boolean")
      throw new HfTokenizerDataError(`tokenizer_config.${key}`, "must be true or false");
    return v;
  };
  const addBos = flag("add_bos_token", isObject(post) ? templateBos !== undefined : bos !== undefined);
  const addEos = flag("add_eos_token", templateEos !== undefined);

  let chatTemplate: string | undefined;
  const tpl = own(cfg, "chat_template");
  if (typeof tpl === "string") chatTemplate = tpl;
  else if (Array.isArray(tpl)) {
    const named = tpl.find((t) => isObject(t) && own(t, "name") === "default");
    const t = isObject(named) ? own(named, "template") : undefined;
    if (typeof t !== "string")
      throw new HfTokenizerDataError(
        "tokenizer_config.chat_template",
        'a list of templates needs one named "default"',
      );
    chatTemplate = t;
  } else if (tpl !== undefined && tpl !== null) {
    throw new HfTokenizerDataError("tokenizer_config.chat_template", "must be a string");
  }

  const extraEog: number[] = [];
  if (isObject(generationConfig)) {
    const e = own(generationConfig, "eos_token_id");
    for (const id of Array.isArray(e) ? e : [e]) {
      if (typeof id === "number" && Number.isInteger(id) && id >= 0 && id < tokens.length) extraEog.push(id);
    }
  }

  const fuse = own(model, "fuse_unk");
  const bf = own(model, "byte_fallback");
  return {
    tokens,
    merges,
    added,
    byteFallback: bf === true,
    unk,
    fuseUnk: fuse === true,
    ignoreMerges: own(model, "ignore_merges") === true,
    prepend,
    splitWords,
    bos,
    eos,
    addBos,
    addEos,
    extraEog,
    chatTemplate,
  };
}

/**
 * Loads `tokenizer.json` (a path to it, or the folder holding it) with `tokenizer_config.json` and
 * `generation_config.json` from the same folder when they exist. Problems are CheckpointErrors
 * naming the file and key.
 */
export function loadHfTokenizer(path: string): HfTokenizer | BpeTokenizer {
  let file = path;
  try {
    if (statSync(path).isDirectory()) file = join(path, "tokenizer.json");
  } catch (e) {
    throw new CheckpointError({ file: path, problem: `cannot open: ${(e as Error).message}` });
  }
  if (!existsSync(file)) {
    throw new CheckpointError({
      file,
      problem: "missing: a Hugging Face folder needs its tokenizer.json to run",
    });
  }
  const dir = dirname(file);
  const configPath = join(dir, "tokenizer_config.json");
  const genPath = join(dir, "generation_config.json");
  const json = readJson(file, "tokenizer.json");
  const config = existsSync(configPath) ? readJson(configPath, "tokenizer_config.json") : undefined;
  const gen = existsSync(genPath) ? readJson(genPath, "generation_config.json") : undefined;
  try {
    if (isByteLevelJson(json)) return hfByteLevelTokenizer(json, config, gen);
    return new HfTokenizer(hfTokenizerData(json, config, gen));
  } catch (e) {
    if (e instanceof HfTokenizerDataError) {
      const inConfig = e.key.startsWith("tokenizer_config.");
      throw new CheckpointError({
        file: inConfig ? configPath : file,
        what: printableName(inConfig ? e.key.slice("tokenizer_config.".length) : e.key, 120),
        whatKind: "key",
        problem: e.message,
      });
    }
    throw e;
  }
}
