// Byte-level BPE from a Hugging Face `tokenizer.json` (GPT-2, Llama 3, Qwen2/3, DeepSeek, OLMoE …): the
// `ByteLevel` pre-tokenizer, alone or after `Split` regexes / `Digits` in a `Sequence`, an optional Unicode
// normalizer (NFC for Qwen2), merges by rank with `ignore_merges`, added tokens with lstrip/rstrip. The
// tokenizer itself is bpe.ts's; only the pre-tokenizer comes from the file instead of llama.cpp's table.
//
// The file's regexes are Rust (Oniguruma) syntax; they are rewritten for JavaScript's `u` mode: `(?i:…)`
// becomes explicit case classes, `\s` Rust's Unicode whitespace (with U+0085, without U+FEFF), `\d` any
// decimal digit, possessive quantifiers (`?+`, `++`) greedy ones (as llama.cpp does for them).
import { BpeTokenizer } from "./bpe.ts";
import { HfTokenizerDataError, hfTokenizerData } from "./hf-json.ts";
import { SPM_TOKEN_TYPE } from "./spm.ts";

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v);
const own = (o: Record<string, unknown>, k: string): unknown => (Object.hasOwn(o, k) ? o[k] : undefined);
const quote = (s: string) => JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);

/** The GPT-2 expression HF's ByteLevel pre-tokenizer splits with (use_regex). */
const BYTE_LEVEL_REGEX = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/** Whether a tokenizer.json is byte-level BPE: a ByteLevel pre-tokenizer (alone or in a Sequence). */
export function isByteLevelJson(json: unknown): boolean {
  if (!isObject(json)) return false;
  const has = (p: unknown): boolean =>
    isObject(p) &&
    (own(p, "type") === "ByteLevel" ||
      (own(p, "type") === "Sequence" &&
        Array.isArray(own(p, "pretokenizers")) &&
        (own(p, "pretokenizers") as unknown[]).some(has)));
  return has(own(json, "pre_tokenizer"));
}

type Step = (pieces: string[]) => string[];

/** Builds the tokenizer from a parsed byte-level tokenizer.json (and its folder's configs). */
export function hfByteLevelTokenizer(
  json: unknown,
  config?: unknown,
  generationConfig?: unknown,
): BpeTokenizer {
  const data = hfTokenizerData(json, config, generationConfig, true);
  const root = json as Record<string, unknown>;
  const model = own(root, "model") as Record<string, unknown>;
  const normalize = normalizer(own(root, "normalizer"), "normalizer");
  const steps: Step[] = [];
  preTokenizerSteps(own(root, "pre_tokenizer"), "pre_tokenizer", steps);
  const split = (text: string): string[] => {
    let pieces = [normalize(text)];
    for (const step of steps) pieces = step(pieces);
    return pieces;
  };
  const types = data.tokens.map(() => SPM_TOKEN_TYPE.normal as number);
  const strip = new Map<number, { lstrip: boolean; rstrip: boolean }>();
  for (const a of data.added) {
    types[a.id] = a.special ? SPM_TOKEN_TYPE.control : SPM_TOKEN_TYPE.userDefined;
    if (a.lstrip || a.rstrip) strip.set(a.id, { lstrip: a.lstrip, rstrip: a.rstrip });
  }
  try {
    return new BpeTokenizer({
      tokens: data.tokens,
      types,
      merges: data.merges.map(([a, b]) => `${a} ${b}`),
      bos: data.bos,
      eos: data.eos,
      unk: data.unk,
      addBos: data.addBos,
      addEos: data.addEos,
      split,
      ignoreMerges: own(model, "ignore_merges") === true,
      strip,
      extraEog: data.extraEog,
      chatTemplate: data.chatTemplate,
    });
  } catch (e) {
    // bpe.ts names fields by GGUF meaning; here they are tokenizer.json keys.
    if (e instanceof Error && "field" in e) {
      const field = (e as { field: string }).field;
      const key =
        field === "merges"
          ? "model.merges"
          : field === "tokens"
            ? "model.vocab"
            : field === "bos"
              ? "tokenizer_config.bos_token"
              : field === "eos"
                ? "tokenizer_config.eos_token"
                : `model.${field}`;
      throw new HfTokenizerDataError(key, e.message);
    }
    throw e;
  }
}

function normalizer(n: unknown, key: string): (s: string) => string {
  if (n === null || n === undefined) return (s) => s;
  if (!isObject(n)) throw new HfTokenizerDataError(key, "must be an object or null");
  const type = own(n, "type");
  if (type === "NFC" || type === "NFD" || type === "NFKC" || type === "NFKD") return (s) => s.normalize(type);
  if (type === "Sequence") {
    const list = own(n, "normalizers");
    if (!Array.isArray(list))
      throw new HfTokenizerDataError(`${key}.normalizers`, "missing: a Sequence needs its list");
    const fs = list.map((x, i) => normalizer(x, `${key}.normalizers[${i}]`));
    return (s) => fs.reduce((t, f) => f(t), s);
  }
  throw new HfTokenizerDataError(
    `${key}.type`,
    `normalizer ${quote(String(type))} is not supported with a ByteLevel pre-tokenizer (NFC, NFD, NFKC, NFKD, Sequence)`,
  );
}

function preTokenizerSteps(p: unknown, key: string, out: Step[]): void {
  if (!isObject(p)) throw new HfTokenizerDataError(key, "must be an object");
  const type = own(p, "type");
  if (type === "Sequence") {
    const list = own(p, "pretokenizers");
    if (!Array.isArray(list))
      throw new HfTokenizerDataError(`${key}.pretokenizers`, "missing: a Sequence needs its list");
    list.forEach((x, i) => preTokenizerSteps(x, `${key}.pretokenizers[${i}]`, out));
    return;
  }
  if (type === "ByteLevel") {
    if (own(p, "add_prefix_space") === true)
      out.push((pieces) => pieces.map((s) => (s.startsWith(" ") ? s : ` ${s}`)));
    if (own(p, "use_regex") !== false) out.push(splitStep(jsRegex(BYTE_LEVEL_REGEX, key), "Isolated"));
    return;
  }
  if (type === "Split") {
    const pattern = own(p, "pattern");
    const behavior = own(p, "behavior") ?? "Isolated";
    if (own(p, "invert") === true)
      throw new HfTokenizerDataError(`${key}.invert`, "an inverted Split is not supported");
    if (typeof behavior !== "string" || !BEHAVIORS.includes(behavior)) {
      throw new HfTokenizerDataError(
        `${key}.behavior`,
        `${quote(String(behavior))} is not one of ${BEHAVIORS.join(", ")}`,
      );
    }
    let re: RegExp;
    if (isObject(pattern) && typeof own(pattern, "Regex") === "string")
      re = jsRegex(own(pattern, "Regex") as string, `${key}.pattern.Regex`);
    else if (isObject(pattern) && typeof own(pattern, "String") === "string") {
      re = new RegExp((own(pattern, "String") as string).replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&"), "gu");
    } else throw new HfTokenizerDataError(`${key}.pattern`, 'must be {"Regex": …} or {"String": …}');
    out.push(splitStep(re, behavior as Behavior));
    return;
  }
  if (type === "Digits") {
    const individual = own(p, "individual_digits") === true;
    // tokenizers' Digits splits on char::is_numeric: every Unicode number (½ too), not only 0-9.
    out.push(splitStep(/\p{N}/gu, individual ? "Isolated" : "Contiguous"));
    return;
  }
  throw new HfTokenizerDataError(
    `${key}.type`,
    `pre-tokenizer ${quote(String(type))} is not supported with byte-level BPE (ByteLevel, Split, Digits, Sequence)`,
  );
}

const BEHAVIORS = ["Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"];
type Behavior = "Isolated" | "Removed" | "MergedWithPrevious" | "MergedWithNext" | "Contiguous";

/** HF's split of each piece on the matches of `re`, with its delimiter behaviour. */
function splitStep(re: RegExp, behavior: Behavior): Step {
  return (pieces) => {
    const out: string[] = [];
    for (const s of pieces) {
      // Matches and the gaps between them, in order.
      const parts: { text: string; match: boolean }[] = [];
      let at = 0;
      re.lastIndex = 0;
      for (let m = re.exec(s); m !== null; m = re.exec(s)) {
        if (m[0] === "") {
          re.lastIndex += (s.codePointAt(re.lastIndex) ?? 0) > 0xffff ? 2 : 1;
          continue;
        }
        if (m.index > at) parts.push({ text: s.slice(at, m.index), match: false });
        parts.push({ text: m[0], match: true });
        at = m.index + m[0].length;
      }
      if (at < s.length) parts.push({ text: s.slice(at), match: false });
      const pieceOut: string[] = [];
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i]!;
        if (behavior === "Isolated") pieceOut.push(p.text);
        else if (behavior === "Removed") {
          if (!p.match) pieceOut.push(p.text);
        } else if (behavior === "MergedWithPrevious") {
          if (p.match && pieceOut.length > 0 && !parts[i - 1]!.match) pieceOut[pieceOut.length - 1] += p.text;
          else pieceOut.push(p.text);
        } else if (behavior === "MergedWithNext") {
          if (p.match && i + 1 < parts.length && !parts[i + 1]!.match) {
            pieceOut.push(p.text + parts[i + 1]!.text);
            i++;
          } else pieceOut.push(p.text);
        } else {
          if (p.match && i > 0 && parts[i - 1]!.match) pieceOut[pieceOut.length - 1] += p.text;
          else pieceOut.push(p.text);
        }
      }
      for (const t of pieceOut) if (t !== "") out.push(t);
    }
    return out;
  };
}

/** Rust regex `\s`: Unicode White_Space. */
const WS = "\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/** A tokenizer.json (Rust/Oniguruma) expression as a JavaScript `u` regex. */
export function jsRegex(src: string, key = "pattern"): RegExp {
  let out = "";
  let inside = false;
  let ci = 0; // depth of (?i: … ) groups
  const groups: boolean[] = [];
  for (let i = 0; i < src.length; i++) {
    const ch = src[i]!;
    if (ch === "\\" && i + 1 < src.length) {
      const next = src[i + 1]!;
      i++;
      if (next === "s") out += inside ? WS : `[${WS}]`;
      else if (next === "S") {
        if (inside) throw new HfTokenizerDataError(key, "\\S inside a character class is not supported");
        out += `[^${WS}]`;
      } else if (next === "d") out += "\\p{Nd}";
      else if (next === "D") {
        if (inside) throw new HfTokenizerDataError(key, "\\D inside a character class is not supported");
        out += "\\P{Nd}";
      } else if (next === "p" || next === "P") {
        const close = src.indexOf("}", i);
        out += `\\${next}${src.slice(i + 1, close + 1)}`;
        i = close;
      } else out += `\\${next}`;
      continue;
    }
    if (inside) {
      if (ch === "]") inside = false;
      if (ch === "[") out += "\\[";
      else out += ci > 0 && /[a-z]/i.test(ch) ? ch.toLowerCase() + ch.toUpperCase() : ch;
      continue;
    }
    if (ch === "[") {
      inside = true;
      out += ch;
      if (src[i + 1] === "^") {
        out += "^";
        i++;
      }
      if (src[i + 1] === "]") {
        out += "\\]";
        i++;
      }
      continue;
    }
    if (ch === "(") {
      if (src.startsWith("(?i:", i)) {
        groups.push(true);
        ci++;
        out += "(?:";
        i += 3;
        continue;
      }
      groups.push(false);
      out += ch;
      continue;
    }
    if (ch === ")") {
      if (groups.pop()) ci--;
      out += ch;
      continue;
    }
    if ((ch === "+" || ch === "?" || ch === "*" || ch === "}") && src[i + 1] === "+") {
      out += ch; // possessive → greedy
      i++;
      continue;
    }
    if (ci > 0 && /[a-z]/i.test(ch)) {
      out += `[${ch.toLowerCase()}${ch.toUpperCase()}]`;
      continue;
    }
    out += ch;
  }
  try {
    return new RegExp(out, "gu");
  } catch (e) {
    throw new HfTokenizerDataError(key, `cannot use the expression ${quote(src)}: ${(e as Error).message}`);
  }
}
