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
