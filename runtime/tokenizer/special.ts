// What SentencePiece and BPE vocabularies share in llama.cpp: token attributes, the text-based fix-ups
// of special tokens, per-model attributes, and the special-token partition of text.

// llama.cpp's llama_token_attr bits.
export const ATTR = {
  undefined: 0,
  unknown: 1 << 0,
  unused: 1 << 1,
  normal: 1 << 2,
  control: 1 << 3,
  userDefined: 1 << 4,
  byte: 1 << 5,
  normalized: 1 << 6,
  lstrip: 1 << 7,
  rstrip: 1 << 8,
  singleWord: 1 << 9,
} as const;

export const ATTR_OF_TYPE: readonly number[] = [
  ATTR.undefined,
  ATTR.normal,
  ATTR.unknown,
  ATTR.control,
  ATTR.userDefined,
  ATTR.unused,
  ATTR.byte,
];

/** Token texts llama.cpp takes for end-of-generation (and makes control tokens). */
export const EOG_TEXTS: ReadonlySet<string> = new Set([
  "<|eot_id|>",
  "<|im_end|>",
  "<|end|>",
  "<|return|>",
  "<|call|>",
  "<|flush|>",
  "<|calls|>",
  "<end_of_turn>",
  "<|endoftext|>",
  "</s>",
  "<|eom_id|>",
  "<EOT>",
  "_<EOT>",
  "[EOT]",
  "[EOS]",
  "<|end_of_text|>",
  "<end_of_utterance>",
  "<eos>",
  "<turn|>",
  "<|tool_response>",
  "<｜end▁of▁sentence｜>",
  "[e~[",
]);

/** Texts llama.cpp recognises as end-of-turn, fill-in-the-middle … tokens and makes control tokens. */
export const EOT_TEXTS = [
  "<|eot_id|>",
  "<|im_end|>",
  "<|end|>",
  "<end_of_turn>",
  "<|endoftext|>",
  "<|end_of_text|>",
  "<EOT>",
  "_<EOT>",
  "[EOT]",
  "<｜end▁of▁sentence｜>",
  "<end_of_utterance>",
];
export const FIM_TEXTS: readonly (readonly string[])[] = [
  [
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
  ],
  [
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
  ],
  [
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
  ],
  ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
  ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
  ["<|file_sep|>"],
];

/** C `isspace` in the C locale, on one UTF-16 unit (only ASCII can match). */
const isSpace = (c: number) => c === 0x20 || (c >= 0x09 && c <= 0x0d);

export interface Fragment {
  readonly text?: string;
  readonly token?: number;
}

/**
 * llama.cpp's tokenizer_st_partition: cuts the given special tokens (longest first) out of the text;
 * control and unknown tokens only when `parseSpecial`. lstrip/rstrip tokens eat ASCII whitespace beside them.
 */
export function partitionSpecial(
  text: string,
  specials: readonly number[],
  texts: readonly string[],
  attrs: Uint16Array,
  parseSpecial: boolean,
): Fragment[] {
  let buffer: Fragment[] = [{ text }];
  for (const id of specials) {
    const attr = attrs[id]!;
    if (!parseSpecial && attr & (ATTR.control | ATTR.unknown)) continue;
    const t = texts[id]!;
    const next: Fragment[] = [];
    for (const f of buffer) {
      if (f.text === undefined) {
        next.push(f);
        continue;
      }
      let rest = f.text;
      for (;;) {
        const at = rest.indexOf(t);
        if (at < 0) break;
        let left = rest.slice(0, at);
        if (attr & ATTR.lstrip) {
          let n = left.length;
          while (n > 0 && isSpace(left.charCodeAt(n - 1))) n--;
          left = left.slice(0, n);
        }
        if (left !== "") next.push({ text: left });
        next.push({ token: id });
        rest = rest.slice(at + t.length);
        if (attr & ATTR.rstrip) {
          let n = 0;
          while (n < rest.length && isSpace(rest.charCodeAt(n))) n++;
          rest = rest.slice(n);
        }
      }
      if (rest !== "") next.push({ text: rest });
    }
    buffer = next;
  }
  return buffer;
}

/** What llama.cpp's vocabulary fix-ups look at. */
export interface SpecialContext {
  readonly ids: ReadonlyMap<string, number>;
  /** llama_token_attr per token; changed in place. */
  readonly attrs: Uint16Array;
  readonly eos: number | undefined;
  /** End-of-turn / end-of-message ids the file names, if any. */
  readonly eot?: number | undefined;
  readonly eom?: number | undefined;
}

/**
 * llama.cpp's text-based fix-ups (llama_vocab::load): end-of-turn, fill-in-the-middle and end-of-generation
 * tokens recognised by their text become control tokens, gpt-oss's channel tokens user-defined; returns
 * the end-of-generation set.
 */
export function markSpecialTexts(ctx: SpecialContext): Set<number> {
  const data = ctx;
  const self = { attrs: ctx.attrs, ids: ctx.ids, eos: ctx.eos };
  const control = (id: number | undefined) => {
    if (id !== undefined) self.attrs[id]! |= ATTR.control;
  };
  let eot = data.eot;
  if (eot === undefined) {
    for (const t of EOT_TEXTS) {
      const id = self.ids.get(t);
      if (id !== undefined) {
        eot = id;
        control(id);
        break;
      }
    }
  }
  let eom = data.eom;
  if (eom === undefined && self.ids.has("<|eom_id|>")) {
    eom = self.ids.get("<|eom_id|>");
    control(eom);
  }
  const fim: (number | undefined)[] = [];
  for (const list of FIM_TEXTS) {
    let id: number | undefined;
    for (const t of list) {
      id = self.ids.get(t);
      if (id !== undefined) break;
    }
    control(id);
    fim.push(id);
  }
  // llama.cpp also marks control tokens containing "unused" as unused (no effect on text).
  const eog = new Set<number>();
  for (const id of fim.slice(3)) if (id !== undefined) eog.add(id);
  for (const t of EOG_TEXTS) {
    const id = self.ids.get(t);
    if (id !== undefined) {
      eog.add(id);
      control(id);
    }
  }
  for (const t of ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"]) {
    const id = self.ids.get(t);
    if (id !== undefined) self.attrs[id] = ATTR.userDefined;
  }
  for (const id of [self.eos, eot, eom]) if (id !== undefined) eog.add(id);
  const has = (t: string) => {
    const id = self.ids.get(t);
    return id !== undefined && eog.has(id);
  };
  if (((has("<|return|>") && has("<|call|>")) || (has("<|calls|>") && has("<|flush|>"))) && has("<|end|>")) {
    const id = self.ids.get("<|end|>")!;
    eog.delete(id);
    self.attrs[id] = ATTR.userDefined;
  }
  if (has("<|tool_response>") && has("</s>")) {
    const id = self.ids.get("</s>")!;
    eog.delete(id);
    self.attrs[id] = ATTR.normal;
  }
  return eog;
}

/** Names llama.cpp looks at for per-model token attributes. */
export interface ModelNames {
  readonly modelName?: string | undefined;
  readonly pre?: string | undefined;
  readonly architecture?: string | undefined;
}

/** llama.cpp's per-model token attributes (set after its special-token cache is built). */
export function perModelAttributes(
  ids: ReadonlyMap<string, number>,
  attrs: Uint16Array,
  specialTokens: readonly number[],
  data: ModelNames,
): void {
  const self = { ids, attrs, specialTokens };
  const name = (data.modelName ?? "").toLowerCase();
  const pre = data.pre ?? "";
  const arch = data.architecture ?? "";
  const set = (text: string, attr: number, on: boolean) => {
    const id = self.ids.get(text);
    if (id !== undefined) self.attrs[id] = on ? self.attrs[id]! | attr : self.attrs[id]! & ~attr;
  };
  if (
    ["jina-v2-de", "jina-v2-es", "jina-v2-code"].some((p) => pre.includes(p)) ||
    ["nomic-bert-moe", "jina-bert-v3"].some((a) => arch.includes(a))
  ) {
    set("<mask>", ATTR.lstrip, true);
  } else if (name.includes("phi-3") || name.includes("phi3")) {
    for (const id of self.specialTokens) self.attrs[id]! |= ATTR.rstrip;
    set("</s>", ATTR.rstrip, true);
    for (const t of ["<unk>", "<s>", "<|endoftext|>"]) set(t, ATTR.rstrip, false);
  } else if (name.includes("modern-bert")) {
    set("[MASK]", ATTR.lstrip, true);
  }
}

/** llama.cpp's special-token cache: control, user-defined and unknown tokens, longest text (in bytes) first. */
export function sortSpecials(texts: readonly string[], attrs: Uint16Array): number[] {
  const specials: number[] = [];
  for (let i = 0; i < texts.length; i++) {
    if (attrs[i]! & (ATTR.control | ATTR.userDefined | ATTR.unknown)) specials.push(i);
  }
  const lengths = new Map(specials.map((i) => [i, utf8.encode(texts[i]!).length]));
  return specials.sort((a, b) => lengths.get(b)! - lengths.get(a)! || a - b);
}

const utf8 = new TextEncoder();
