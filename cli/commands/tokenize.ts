// `moec tokenize MODEL --prompt TEXT [--json]`: the token ids a model's tokenizer gives the prompt (BOS
// added as the model adds it), each with its piece. MODEL is a GGUF file (a vocabulary-only one needs no
// tensors) or a Hugging Face folder (its tokenizer.json), so a vocabulary can be checked without running.
import { existsSync } from "node:fs";
import { openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import { tokenizerFromGguf } from "../../runtime/tokenizer/from-gguf.ts";
import { loadHfTokenizer } from "../../runtime/tokenizer/hf-json.ts";
import type { Tokenizer } from "../../runtime/tokenizer/tokenizer.ts";
import { out } from "../color.ts";
import { isSafetensorsPath } from "../model-source.ts";
import { UserError } from "../user-error.ts";

export interface TokenizeOptions {
  prompt: string;
  json?: boolean;
}

/** The tokenizer of a GGUF file or a Hugging Face folder (or its tokenizer.json). */
export function loadTokenizer(path: string): Tokenizer {
  if (!existsSync(path)) throw new UserError(`${path}: no such file`, 2);
  if (isSafetensorsPath(path) || path.endsWith(".json")) return loadHfTokenizer(path);
  const file = openGguf(path);
  try {
    return tokenizerFromGguf(file.metadata, path);
  } finally {
    file.close();
  }
}

const strict = new TextDecoder("utf-8", { fatal: true });

/** A token's piece as text, or its bytes as <0xXX> when they are not whole UTF-8 characters. */
function shownPiece(tok: Tokenizer, id: number): string {
  const bytes = tok.piece(id, true);
  try {
    return JSON.stringify(strict.decode(bytes));
  } catch {
    return [...bytes].map((b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`).join("");
  }
}

export function tokenizeCommand(model: string, opts: TokenizeOptions): void {
  const tok = loadTokenizer(model);
  const ids = tok.encode(opts.prompt, { addBos: tok.addBos });
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ tokens: ids })}\n`);
    return;
  }
  const width = Math.max(1, ...ids.map((id) => String(id).length));
  const lines = ids.map((id) => `${String(id).padStart(width)}  ${shownPiece(tok, id)}`);
  lines.push(out.dim(`${ids.length} token${ids.length === 1 ? "" : "s"}`));
  process.stdout.write(`${lines.join("\n")}\n`);
}
