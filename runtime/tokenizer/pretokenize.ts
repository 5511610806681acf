// llama.cpp's pre-tokenizers for byte-level BPE vocabularies (`tokenizer.ggml.pre`), written to split text
// exactly as llama.cpp's `unicode_regex_split` does, which is not always what the regex text says:
//
// - Code points are classified with llama.cpp's own tables (unicode-data.ts, generated from its source),
//   not with the Unicode version of Node's ICU.
// - The common expressions (GPT-2's, Llama 3's, Qwen2's, Qwen3.5's, "[^\n]+|[\n]+") run through
//   hand-written splitters, ported here step by step, whose edge cases differ from the regex (a lone
//   "'" before a letter, whitespace before a final character …).
// - The other expressions run through C++ std::regex (ECMAScript) on a "collapsed" text when they use
//   `\p{..}`: every code point ≥ 128 becomes one byte for its category (0xD1 number, 0xD2 letter, 0xD3
//   punctuation, 0xD4 mark, 0xD5 symbol, 0xD0 other, 0x0B whitespace) and `\p{L}` becomes
//   `[\xD2A-Za-z]` and so on; without `\p{..}`, on the code points with non-ASCII whitespace replaced by
//   0x0B, where `\s` is ASCII whitespace only. Each expression splits every piece the previous one made,
//   keeping the unmatched gaps as pieces.
// - Byte-level vocabularies then map each UTF-8 byte of a piece to GPT-2's printable code point.
import { FLAG_RUNS, WHITESPACE } from "./unicode-data.ts";

export const F_UNDEFINED = 0x1;
export const F_NUMBER = 0x2;
export const F_LETTER = 0x4;
export const F_SEPARATOR = 0x8;
export const F_ACCENT = 0x10;
export const F_PUNCT = 0x20;
export const F_SYMBOL = 0x40;
export const F_CONTROL = 0x80;
export const F_WHITESPACE = 0x100;

const MAX_CODEPOINTS = 0x110000;
let flagTable: Uint16Array | undefined;

/** llama.cpp's `unicode_cpt_flags_from_cpt` (categories and whitespace only). */
export function cptFlags(cpt: number): number {
  if (flagTable === undefined) {
    const t = new Uint16Array(MAX_CODEPOINTS);
    const runs = FLAG_RUNS.split(",").map((r) => r.split(":").map((x) => Number.parseInt(x, 36)));
    for (let i = 0; i < runs.length; i++) {
      const end = i + 1 < runs.length ? runs[i + 1]![0]! : MAX_CODEPOINTS;
      t.fill(runs[i]![1]!, runs[i]![0]!, end);
    }
    for (const c of WHITESPACE) t[c]! |= F_WHITESPACE;
    flagTable = t;
  }
  return cpt < MAX_CODEPOINTS ? flagTable[cpt]! : F_UNDEFINED;
}

/** The code points of `text` (lone surrogates become U+FFFD, as when the text is sent as UTF-8). */
export function codePoints(text: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        out.push(((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000);
        i++;
        continue;
      }
    }
    out.push(c >= 0xd800 && c <= 0xdfff ? 0xfffd : c);
  }
  return out;
}

/** The string of `cpts[start..end)`, in chunks (a spread of a long text would overflow the stack). */
export function fromCodePoints(cpts: readonly number[], start = 0, end = cpts.length): string {
  let s = "";
  for (let i = start; i < end; i += 4096)
    s += String.fromCodePoint(...cpts.slice(i, Math.min(end, i + 4096)));
  return s;
}

// ---------------------------------------------------------------- the expressions per pre-tokenizer

const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const CONTRACTIONS = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
const LLAMA3 = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;
const QWEN2 = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;
const QWEN35 = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;
const NEWLINES = "[^\\n]+|[\\n]+";
const DEEPSEEK_CJK = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+";

/** What a pre-tokenizer does: its expressions, and whether pieces are byte-encoded (GPT-2's byte map). */
export interface PreTokenizer {
  /** llama.cpp's pre-tokenizer type this name maps to. */
  readonly type: string;
  readonly exprs: readonly string[];
  /** Decoded text is cleaned of spaces before punctuation (llama.cpp's clean_spaces). */
  readonly cleanSpaces: boolean;
  /** When a whole piece is a token, it is that token without merging (llama.cpp's ignore_merges). */
  readonly ignoreMerges: boolean;
  /** The pre-tokenizer makes llama.cpp add BOS unless the file says otherwise. */
  readonly addBos: boolean;
}

const TYPES: Readonly<Record<string, { exprs: readonly string[]; names: readonly string[] }>> = {
  default: {
    names: ["default"],
    exprs: ["[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2, "\\p{N}+", "[0-9][0-9][0-9]"],
  },
  llama3: {
    names: [
      "llama3",
      "llama-v3",
      "llama-bpe",
      "falcon3",
      "falcon-h1",
      "pixtral",
      "midm-2.0",
      "lfm2",
      "jina-v5-nano",
      "dbrx",
      "smaug-bpe",
    ],
    exprs: [LLAMA3],
  },
  "deepseek-llm": {
    names: ["deepseek-llm"],
    exprs: [
      "[\r\n]",
      "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+",
      "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
      "\\s+$",
      DEEPSEEK_CJK,
      "\\p{N}+",
    ],
  },
  "deepseek-coder": {
    names: ["deepseek-coder"],
    exprs: ["[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", DEEPSEEK_CJK, "\\p{N}"],
  },
  "deepseek3-llm": {
    names: ["deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"],
    exprs: [
      "\\p{N}{1,3}",
      "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    ],
  },
  falcon: {
    names: ["falcon"],
    exprs: ["[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2, "[0-9][0-9][0-9]"],
  },
  starcoder: {
    names: ["starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2"],
    exprs: ["\\p{N}", GPT2],
  },
  gpt2: {
    names: [
      "gpt-2",
      "phi-2",
      "jina-es",
      "jina-de",
      "gigachat",
      "jina-v2-es",
      "jina-v2-de",
      "a.x-4.0",
      "mellum",
      "modern-bert",
      "jina-v1-en",
      "jina-v2-code",
      "roberta-bpe",
      "mpt",
      "olmo",
      "jais",
      "trillion",
      "granite-docling",
      "exaone4",
    ],
    exprs: [GPT2],
  },
  qwen2: {
    names: ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open"],
    exprs: [QWEN2],
  },
  qwen35: { names: ["qwen35"], exprs: [QWEN35] },
  chatglm4: { names: ["glm4", "chatglm-bpe"], exprs: [LLAMA3] },
  "seed-coder": {
    names: ["seed-coder"],
    exprs: [
      `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`,
    ],
  },
  grok2: { names: ["grok-2"], exprs: [QWEN2] },
  ufakzeka: {
    names: ["ufakzeka"],
    exprs: [
      "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    ],
  },
  minicpm5: {
    names: ["minicpm5"],
    exprs: [
      "\\p{N}{1,3}",
      `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`,
    ],
  },
  laguna: { names: ["laguna"], exprs: [NEWLINES, QWEN2] },
  bailingmoe: {
    names: ["bailingmoe", "bailingmoe2", "llada-moe"],
    exprs: [
      "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    ],
  },
};

/** Pre-tokenizer names whose llama.cpp settings differ from the BPE defaults (clean_spaces on, the rest off). */
const NO_CLEAN_SPACES = new Set([
  "deepseek-llm",
  "deepseek-coder",
  "deepseek-v3",
  "command-r",
  "qwen2",
  "deepseek-r1-qwen",
  "kormo",
  "f2llmv2",
  "qwen35",
  "smollm",
  "seed-coder",
  "hunyuan",
  "hunyuan-dense",
  "hy_v4",
  "joyai-llm",
  "ufakzeka",
  "grok-2",
  "laguna",
  "solar-open",
  "trillion",
  "granite-docling",
  "bailingmoe",
  "bailingmoe2",
  "llada-moe",
]);
const IGNORE_MERGES = new Set(["minicpm5", ...TYPES.llama3!.names.slice(0, 9)]);
const ADDS_BOS = new Set(TYPES.llama3!.names.slice(0, 9));

const BY_NAME = new Map<string, string>();
for (const [type, t] of Object.entries(TYPES)) for (const n of t.names) BY_NAME.set(n, type);

/** The names `tokenizer.ggml.pre` may have for a byte-level BPE vocabulary that moec splits. */
export const PRE_TOKENIZER_NAMES: readonly string[] = [...BY_NAME.keys()].sort();

/** The pre-tokenizer for a `tokenizer.ggml.pre` name (absent: llama.cpp's "default"), or undefined if unknown. */
export function preTokenizer(name: string | undefined): PreTokenizer | undefined {
  const key = name === undefined || name === "" ? "default" : name;
  const type = BY_NAME.get(key);
  if (type === undefined) return undefined;
  return {
    type,
    exprs: TYPES[type]!.exprs,
    cleanSpaces: !NO_CLEAN_SPACES.has(key),
    ignoreMerges: IGNORE_MERGES.has(key),
    addBos: ADDS_BOS.has(key),
  };
}

// ---------------------------------------------------------------- splitting

type Splitter = (cpts: readonly number[], offsets: readonly number[]) => number[];

/** Splits `text` into pieces as llama.cpp's unicode_regex_split does (without the byte encoding). */
export function splitText(text: string, exprs: readonly string[]): string[] {
  const cpts = codePoints(text);
  let offsets = [cpts.length];
  let collapsed: string | undefined;
  for (const expr of exprs) {
    const custom = CUSTOM.get(expr);
    if (custom) {
      offsets = custom(cpts, offsets);
      continue;
    }
    if (usesCategories(expr)) {
      collapsed ??= collapse(cpts);
      offsets = splitRegex(collapsed, compileCollapsed(expr), offsets, false);
    } else {
      offsets = splitRegex(wideText(cpts), compileWide(expr), offsets, true);
    }
  }
  const words: string[] = [];
  let start = 0;
  for (const n of offsets) {
    words.push(fromCodePoints(cpts, start, start + n));
    start += n;
  }
  return words;
}

const CATEGORY_NAMES = [
  "\\p{N}",
  "\\p{L}",
  "\\p{P}",
  "\\p{M}",
  "\\p{S}",
  "\\p{Lu}",
  "\\p{Ll}",
  "\\p{Lt}",
  "\\p{Lm}",
  "\\p{Lo}",
];
const usesCategories = (expr: string) => CATEGORY_NAMES.some((c) => expr.includes(c));

/** llama.cpp's collapsed representation: one char (0..255) per code point. */
function collapse(cpts: readonly number[]): string {
  let s = "";
  for (const c of cpts) {
    if (c < 128) {
      s += String.fromCharCode(c);
      continue;
    }
    const f = cptFlags(c);
    if (f & F_WHITESPACE) s += "\x0b";
    else s += String.fromCharCode(COLLAPSED_CATEGORY.get(f & 0xff) ?? 0xd0);
  }
  return s;
}

const COLLAPSED_CATEGORY = new Map([
  [F_NUMBER, 0xd1],
  [F_LETTER, 0xd2],
  [F_PUNCT, 0xd3],
  [F_ACCENT, 0xd4],
  [F_SYMBOL, 0xd5],
]);

/** For each category, its collapsed byte and the ASCII characters in it, as llama.cpp writes them. */
const CATEGORY_CLASS: Readonly<Record<string, string>> = {
  N: "\xd10-9",
  L: "\xd2A-Za-z",
  P: "\xd3!-#%-*,-/:-;?-@\\[-\\]_\\{\\}",
  M: "\xd4",
  S: "\xd5\\$\\+<-><^`\\|~".replace("<-><", "<->"),
};

const regexCache = new Map<string, RegExp>();

/** The expression rewritten for the collapsed text, as llama.cpp rewrites it. */
function compileCollapsed(expr: string): RegExp {
  const key = `c${expr}`;
  let re = regexCache.get(key);
  if (re) return re;
  let out = "";
  let inside = false;
  for (let i = 0; i < expr.length; i++) {
    const ch = expr[i]!;
    if (ch === "[" && (i === 0 || expr[i - 1] !== "\\")) {
      out += "[";
      inside = true;
      continue;
    }
    if (inside && ch === "]" && expr[i - 1] !== "\\") {
      out += "]";
      inside = false;
      continue;
    }
    if (ch === "\\" && expr[i + 1] === "p" && expr[i + 2] === "{") {
      const close = expr.indexOf("}", i + 3);
      const name = expr.slice(i + 3, close);
      if (close >= 0 && CATEGORY_NAMES.includes(`\\p{${name}}`)) {
        const cls = CATEGORY_CLASS[name[0]!]!;
        out += inside ? cls : `[${cls}]`;
        i = close;
        continue;
      }
    }
    out += ch;
  }
  re = new RegExp(out, "g");
  regexCache.set(key, re);
  return re;
}

/** The code points with non-ASCII whitespace as 0x0B, as llama.cpp feeds std::wregex. */
function wideText(cpts: readonly number[]): string {
  return fromCodePoints(cpts.map((c) => (c > 0x7f && cptFlags(c) & F_WHITESPACE ? 0x0b : c)));
}

/** The expression for the wide text: `\s` is ASCII whitespace only, as in std::wregex. */
function compileWide(expr: string): RegExp {
  const key = `w${expr}`;
  let re = regexCache.get(key);
  if (re) return re;
  let out = "";
  let inside = false;
  for (let i = 0; i < expr.length; i++) {
    const ch = expr[i]!;
    if (ch === "\\" && i + 1 < expr.length) {
      const next = expr[i + 1]!;
      if (next === "s") out += inside ? "\\t-\\r " : "[\\t-\\r ]";
      else if (next === "S") out += inside ? "\\S" : "[^\\t-\\r ]";
      else out += ch + next;
      i++;
      continue;
    }
    if (ch === "[") inside = true;
    else if (ch === "]") inside = false;
    out += ch;
  }
  re = new RegExp(out, "gu");
  regexCache.set(key, re);
  return re;
}

/**
 * llama.cpp's unicode_regex_split_stl: within each piece, every match and every gap between matches
 * becomes a piece. `wide` strings are indexed by code point (the JS string by UTF-16 unit).
 */
function splitRegex(text: string, re: RegExp, offsets: readonly number[], wide: boolean): number[] {
  const out: number[] = [];
  // UTF-16 index of each code point (wide text) so pieces can be cut by code point.
  let unitAt: number[] | undefined;
  if (wide) {
    unitAt = [];
    for (let i = 0; i < text.length; ) {
      unitAt.push(i);
      i += text.codePointAt(i)! > 0xffff ? 2 : 1;
    }
    unitAt.push(text.length);
  }
  const toUnit = (cp: number) => (unitAt ? unitAt[cp]! : cp);
  let start = 0;
  for (const n of offsets) {
    const piece = text.slice(toUnit(start), toUnit(start + n));
    const cpOf = wide ? cpIndexer(piece) : (u: number) => u;
    let at = 0;
    re.lastIndex = 0;
    for (let m = re.exec(piece); m !== null; m = re.exec(piece)) {
      const pos = cpOf(m.index);
      const len = cpOf(m.index + m[0].length) - pos;
      if (pos > at) out.push(pos - at);
      out.push(len);
      at = pos + len;
      if (m[0].length === 0) re.lastIndex += wide && (piece.codePointAt(re.lastIndex) ?? 0) > 0xffff ? 2 : 1;
    }
    if (at < n) out.push(n - at);
    start += n;
  }
  return out;
}

function cpIndexer(s: string): (unit: number) => number {
  const cp = new Int32Array(s.length + 1);
  let k = 0;
  for (let i = 0; i < s.length; ) {
    cp[i] = k;
    const w = s.codePointAt(i)! > 0xffff ? 2 : 1;
    if (w === 2) cp[i + 1] = k;
    i += w;
    k++;
  }
  cp[s.length] = k;
  return (u) => cp[u]!;
}

// ---------------------------------------------------------------- llama.cpp's hand-written splitters

const OUT_OF_RANGE = -1;

function segments(
  cpts: readonly number[],
  offsets: readonly number[],
  body: (
    ini: number,
    end: number,
    cpt: (pos: number) => number,
    flags: (pos: number) => number,
    add: (end: number) => number,
  ) => void,
): number[] {
  const out: number[] = [];
  let start = 0;
  for (const offset of offsets) {
    const ini = start;
    const end = start + offset;
    start = end;
    const cpt = (pos: number) => (ini <= pos && pos < end ? cpts[pos]! : OUT_OF_RANGE);
    const flags = (pos: number) => (ini <= pos && pos < end ? cptFlags(cpts[pos]!) : 0);
    let prevEnd = ini;
    const add = (e: number): number => {
      const len = e - prevEnd;
      if (len > 0) out.push(len);
      prevEnd = e;
      return len;
    };
    body(ini, end, cpt, flags, add);
  }
  return out;
}

const C = (s: string) => s.charCodeAt(0);
const APOS = C("'");
const CR = C("\r");
const LF = C("\n");
const SPACE = C(" ");
const lower = (c: number) => (c >= 0x41 && c <= 0x5a ? c + 32 : c);

/** "'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)" */
const splitGpt2: Splitter = (cpts, offsets) =>
  segments(cpts, offsets, (ini, end, cpt, flags, add) => {
    for (let pos = ini; pos < end; ) {
      const c = cpt(pos);
      const f = flags(pos);
      if (c === APOS && pos + 1 < end) {
        const n = cpt(pos + 1);
        if (n === C("s") || n === C("t") || n === C("m") || n === C("d")) {
          pos += add(pos + 2);
          continue;
        }
        if (pos + 2 < end) {
          const nn = cpt(pos + 2);
          if (
            (n === C("r") && nn === C("e")) ||
            (n === C("v") && nn === C("e")) ||
            (n === C("l") && nn === C("l"))
          ) {
            pos += add(pos + 3);
            continue;
          }
        }
      }
      let f2 = c === SPACE ? flags(pos + 1) : f;
      if (f2 & F_LETTER) {
        pos += c === SPACE ? 1 : 0;
        while (f2 & F_LETTER) f2 = flags(++pos);
        add(pos);
        continue;
      }
      if (f2 & F_NUMBER) {
        pos += c === SPACE ? 1 : 0;
        while (f2 & F_NUMBER) f2 = flags(++pos);
        add(pos);
        continue;
      }
      if (!(f2 & (F_WHITESPACE | F_LETTER | F_NUMBER)) && f2) {
        pos += c === SPACE ? 1 : 0;
        while (!(f2 & (F_WHITESPACE | F_LETTER | F_NUMBER)) && f2) f2 = flags(++pos);
        add(pos);
        continue;
      }
      let ws = 0;
      while (flags(pos + ws) & F_WHITESPACE) ws++;
      if (ws > 1 && cpt(pos + ws) !== OUT_OF_RANGE) {
        pos += ws - 1;
        add(pos);
        continue;
      }
      if (ws > 0) {
        pos += ws;
        add(pos);
        continue;
      }
      add(++pos);
    }
  });

/**
 * Llama 3's, Qwen2's and Qwen3.5's splitters: contractions (any case), an optional non-letter before a
 * run of letters (Qwen3.5: letters and marks), digits in runs of at most `digits`, punctuation runs with
 * trailing newlines, whitespace ending in newlines, whitespace.
 */
function llama3Like(digits: number, marks: boolean): Splitter {
  const wordMask = marks ? F_LETTER | F_ACCENT : F_LETTER;
  return (cpts, offsets) =>
    segments(cpts, offsets, (ini, end, cpt, flags, add) => {
      for (let pos = ini; pos < end; ) {
        const c = cpt(pos);
        const f = flags(pos);
        if (c === APOS && pos + 1 < end) {
          const n = lower(cpt(pos + 1));
          if (n === C("s") || n === C("t") || n === C("m") || n === C("d")) {
            pos += add(pos + 2);
            continue;
          }
          if (pos + 2 < end) {
            const nn = lower(cpt(pos + 2));
            if (
              (n === C("r") && nn === C("e")) ||
              (n === C("v") && nn === C("e")) ||
              (n === C("l") && nn === C("l"))
            ) {
              pos += add(pos + 3);
              continue;
            }
          }
        }
        if (!(c === CR || c === LF || f & F_NUMBER)) {
          if (f & wordMask || flags(pos + 1) & wordMask) {
            pos++;
            while (flags(pos) & wordMask) pos++;
            add(pos);
            continue;
          }
        }
        if (f & F_NUMBER) {
          let first = pos;
          while (flags(pos) & F_NUMBER) {
            if (++pos - first >= digits) {
              add(pos);
              first = pos;
            }
          }
          add(pos);
          continue;
        }
        const notWord = F_WHITESPACE | wordMask | F_NUMBER;
        let f2 = c === SPACE ? flags(pos + 1) : f;
        if (!(f2 & notWord) && f) {
          pos += c === SPACE ? 1 : 0;
          while (!(f2 & notWord) && f2) f2 = flags(++pos);
          let c2 = cpt(pos);
          while (c2 === CR || c2 === LF) c2 = cpt(++pos);
          add(pos);
          continue;
        }
        let ws = 0;
        let lastNl = 0;
        while (flags(pos + ws) & F_WHITESPACE) {
          const c2 = cpt(pos + ws);
          if (c2 === CR || c2 === LF) lastNl = pos + ws + 1;
          ws++;
        }
        if (lastNl > 0) {
          pos = lastNl;
          add(pos);
          continue;
        }
        if (ws > 1 && cpt(pos + ws) !== OUT_OF_RANGE) {
          pos += ws - 1;
          add(pos);
          continue;
        }
        if (ws > 0) {
          pos += ws;
          add(pos);
          continue;
        }
        add(++pos);
      }
    });
}

/** "[^\n]+|[\n]+": runs of newlines and runs of everything else. */
const splitNewlines: Splitter = (cpts, offsets) => {
  const out: number[] = [];
  let start = 0;
  for (const offset of offsets) {
    const end = start + offset;
    let pos = start;
    while (pos < end) {
      const nl = cpts[pos] === LF;
      const runStart = pos;
      while (pos < end && (cpts[pos] === LF) === nl) pos++;
      out.push(pos - runStart);
    }
    start = end;
  }
  return out;
};

const CUSTOM = new Map<string, Splitter>([
  [GPT2, splitGpt2],
  [LLAMA3, llama3Like(3, false)],
  [
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    llama3Like(3, false),
  ],
  [QWEN2, llama3Like(1, false)],
  [QWEN35, llama3Like(1, true)],
  [NEWLINES, splitNewlines],
]);

// ---------------------------------------------------------------- GPT-2's byte map

/** Byte → the printable code point GPT-2's byte-level BPE writes it as. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const map: string[] = new Array(256);
  const keep = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let n = 0;
  for (let b = 0; b < 256; b++) map[b] = String.fromCodePoint(keep(b) ? b : 256 + n++);
  return map;
})();

/** The printable code point → its byte. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

const utf8 = new TextEncoder();

/** A piece's UTF-8 bytes written with GPT-2's byte map. */
export function byteEncode(piece: string): string {
  let s = "";
  for (const b of utf8.encode(piece)) s += BYTE_TO_CHAR[b];
  return s;
}
