// llama.cpp's tokenizer test vocabularies (`models/ggml-vocab-*.gguf` with their `.inp`/`.out` cases), taken
// from the llama.cpp source node-llama-cpp ships as a git bundle. They are not committed: the first test
// that needs them clones the bundle (a few seconds) and keeps the vocabulary files under
// node_modules/.cache, keyed by the bundle's size and time, for the other test files and later runs.
import { execFileSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import { join } from "node:path";
import { openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import { type GgufValue, gv } from "../../runtime/checkpoint/gguf-value.ts";

const ROOT = join(import.meta.dirname, "../..");
const BUNDLE = join(ROOT, "node_modules/node-llama-cpp/llama/gitRelease.bundle");

/** The folder holding the ggml-vocab-* files, extracting them first if needed. */
export function llamaVocabDir(): string {
  if (!existsSync(BUNDLE)) {
    throw new Error(
      `${BUNDLE} is missing: run npm install (scripts/ensure-llama.mjs installs node-llama-cpp)`,
    );
  }
  const st = statSync(BUNDLE);
  const cache = join(ROOT, "node_modules/.cache/moec-llama-vocab");
  const dir = join(cache, `${st.size}-${Math.floor(st.mtimeMs)}`);
  if (existsSync(dir)) return dir;
  mkdirSync(cache, { recursive: true });
  const tmp = mkdtempSync(join(cache, "tmp-"));
  try {
    const src = join(tmp, "src");
    execFileSync("git", ["clone", "--quiet", "--no-checkout", BUNDLE, src], { stdio: "pipe" });
    execFileSync("git", ["-C", src, "checkout", "--quiet", "HEAD", "--", "models"], { stdio: "pipe" });
    const out = join(tmp, "vocab");
    mkdirSync(out);
    for (const f of readdirSync(join(src, "models"))) {
      if (f.startsWith("ggml-vocab-")) cpSync(join(src, "models", f), join(out, f));
    }
    try {
      renameSync(out, dir);
    } catch (e) {
      if (!existsSync(dir)) throw e; // another test file extracted it first
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}

/** The vocabulary names (`ggml-vocab-NAME.gguf`) that come with `.inp`/`.out` test cases. */
export function vocabsWithCases(dir: string): string[] {
  const files = new Set(readdirSync(dir));
  return [...files]
    .filter((f) => /^ggml-vocab-.*\.gguf$/.test(f) && files.has(`${f}.inp`) && files.has(`${f}.out`))
    .map((f) => f.slice("ggml-vocab-".length, -".gguf".length))
    .sort();
}

/**
 * The tokenizer.* metadata of a byte-level BPE vocabulary file cut to its first `n` tokens (plus its
 * end-of-text token, moved to id n when it lies beyond), with only the merges whose parts and result are
 * kept: the family's own pre-tokenizer, byte alphabet and merge order, at a size a small test model's
 * embedding table can afford. Both engines read the same cut vocabulary.
 */
export function truncatedVocabulary(path: string, n: number): [string, GgufValue][] {
  const file = openGguf(path);
  try {
    const md = file.metadata;
    const array = (key: string) => {
      const v = md.get(key);
      if (v?.type !== "array") throw new Error(`${path}: no array ${key}`);
      return v;
    };
    const tokens = array("tokenizer.ggml.tokens").value as string[];
    const types = array("tokenizer.ggml.token_type").value as number[];
    const eosV = md.get("tokenizer.ggml.eos_token_id");
    const eos = eosV?.type === "u32" ? eosV.value : undefined;
    const kept = tokens.slice(0, n);
    const keptTypes = types.slice(0, n);
    let eosId = eos;
    if (eos !== undefined && eos >= n) {
      eosId = kept.length;
      kept.push(tokens[eos]!);
      keptTypes.push(types[eos]!);
    }
    const have = new Set(kept);
    const merges = (array("tokenizer.ggml.merges").value as string[]).filter((m) => {
      const [a, b] = m.split(" ");
      return have.has(a!) && have.has(b!) && have.has(a! + b!);
    });
    const out: [string, GgufValue][] = [];
    for (const [key, v] of md) {
      if (!key.startsWith("tokenizer.") || key === "tokenizer.chat_template") continue;
      if (key === "tokenizer.ggml.tokens") out.push([key, gv.strings(kept)]);
      else if (key === "tokenizer.ggml.token_type") out.push([key, gv.i32s(keptTypes)]);
      else if (key === "tokenizer.ggml.merges") out.push([key, gv.strings(merges)]);
      else if (key.endsWith("_token_id")) {
        const id = v.type === "u32" ? v.value : undefined;
        if (id === eos && eosId !== undefined) out.push([key, gv.u32(eosId)]);
        else if (id !== undefined && id < n) out.push([key, v]);
      } else out.push([key, v]);
    }
    // Said outright, so that neither engine's default for a missing key decides (these families' own
    // GGUF files add no BOS).
    if (!md.has("tokenizer.ggml.add_bos_token")) out.push(["tokenizer.ggml.add_bos_token", gv.bool(false)]);
    return out;
  } finally {
    file.close();
  }
}
