// What `moec run` runs: a compiled directory, a spec compiled in memory, or, given only a
// checkpoint, a spec imported from it and compiled in memory.
//
// GGUF (`--weights model.gguf`): each weight's scheme is its type in the file; the tokenizer and
// chat template come from the file's metadata.
//
// Hugging Face (`--weights FOLDER`, a `.safetensors` file, or a `model.safetensors.index.json`):
// the model is imported from the folder's config.json (`importHfConfig`, which names the Hugging
// Face tensors and writes `style: half` RoPE, the pairing these checkpoints are laid out for) unless
// a SPEC, compiled DIR or another Hugging Face folder is given. The spec is compiled in memory with
// `--quant` applied to every matrix (default f32: exact for F32/F16/BF16 checkpoints; f16, bf16,
// q8_0 … trade accuracy for memory), and the checkpoint's tensors are converted to it as they load.
// A spec whose rope is interleaved gets its q/k rows permuted from the half-split layout (llama.cpp's
// convert script does the same). The tokenizer is the folder's tokenizer.json, the chat template
// tokenizer_config.json's.
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { type Compiled, compileModel } from "../compiler/compile.ts";
import { importGguf, importHfConfig } from "../compiler/import.ts";
import type { CheckedModel, CheckedQuant, CheckedSpec } from "../compiler/lang/check.ts";
import { compileSource, loadSpec } from "../compiler/lang/frontend.ts";
import { pickModel } from "../compiler/select.ts";
import { type ChatTemplateSource, chatTemplateFromGguf } from "../runtime/chat-template.ts";
import { CheckpointError } from "../runtime/checkpoint/errors.ts";
import type { GgufFile } from "../runtime/checkpoint/gguf-read.ts";
import { openGguf } from "../runtime/checkpoint/gguf-read.ts";
import { GgufWeights, perExpertTensorNames } from "../runtime/checkpoint/gguf-weights.ts";
import { SafetensorsCheckpoint } from "../runtime/checkpoint/safetensors.ts";
import { SafetensorsWeights } from "../runtime/checkpoint/safetensors-weights.ts";
import type { KvType } from "../runtime/kv-type.ts";
import { type Manifest, tensorName } from "../runtime/manifest.ts";
import { type CompiledModule, importModuleDir, importModuleSource } from "../runtime/model.ts";
import { findScheme, schemeNames } from "../runtime/quant/registry.ts";
import { tokenizerFromGguf } from "../runtime/tokenizer/from-gguf.ts";
import { loadHfTokenizer } from "../runtime/tokenizer/hf-json.ts";
import type { Tokenizer } from "../runtime/tokenizer/tokenizer.ts";
import type { WeightSource } from "../runtime/weights.ts";
import { UserError } from "./user-error.ts";

export type RunTokenizer = Tokenizer;

export interface Loaded {
  module: CompiledModule;
  weights: WeightSource;
  tokenizer: RunTokenizer;
  /** The model's chat template, if it ships one. */
  chatTemplate: ChatTemplateSource | undefined;
  /** How the model was obtained, for --json and the banner. */
  origin: string;
  format: "gguf" | "safetensors";
  /** Closes the checkpoint file(s). */
  close(): void;
}

export interface LoadOptions {
  maxContext?: number | undefined;
  /** Scheme of every matrix when compiling for a safetensors checkpoint (default f32). */
  quant?: string | undefined;
  /** `--backend`: what a spec compiled here is compiled for (default: the cpu). */
  backend?: string | undefined;
  /** `--kv-type`: the KV caches' element type of a spec compiled here (default: the backend's). */
  kvType?: KvType | undefined;
}

/** A quantization that gives each weight the type its tensor has in the file. */
function fromFile(m: CheckedModel, file: GgufFile): CheckedQuant {
  return {
    decl: {
      kind: "quantization",
      name: "from_file",
      loc: m.decl.loc,
      model: { name: m.name, loc: m.decl.loc },
      rules: [],
    },
    name: "from_file",
    model: m.name,
    schemeFor(key, layer) {
      const w = m.weights.get(key)!;
      const index = w.group ? m.groups.get(w.group)!.index : undefined;
      const name = tensorName({ ...w, index, layers: 0, scheme: "" }, w.group ? (layer ?? 0) : undefined);
      // A file with one tensor per expert (`blk.N.ffn_gate.E.weight`) has no merged tensor: expert 0 gives
      // the type (GgufWeights checks the others). A tensor missing from the file is reported with its name
      // by GgufWeights; f32 keeps compiling until then.
      const split = w.shape.length === 3 ? perExpertTensorNames(name, w.shape[0]!)?.[0] : undefined;
      const t = file.findTensor(name) ?? (split === undefined ? undefined : file.findTensor(split));
      return t?.scheme.name ?? "f32";
    },
  };
}

/** Compiles SPEC (or, without one, the architecture in the file's metadata) with each weight in its file type. */
export function compileForGguf(
  source: string | undefined,
  file: GgufFile,
  weightsPath: string,
  maxContext?: number,
  backend?: string,
  kvType?: KvType,
): { compiled: Compiled; origin: string } {
  const spec =
    source === undefined
      ? compileSource(importGguf(file).source, `${weightsPath} (imported)`)
      : loadSpec(source);
  const model = pickModel(spec);
  const compiled = compileModel(spec, model, {
    quant: fromFile(model, file),
    maxContext,
    backend,
    kvType,
  });
  return { compiled, origin: source ?? `imported from ${weightsPath}` };
}

const isDir = (p: string) => existsSync(p) && statSync(p).isDirectory();

/** Whether `--weights` names a Hugging Face checkpoint rather than a GGUF file. */
export function isSafetensorsPath(path: string): boolean {
  return isDir(path) || /\.safetensors$/i.test(path) || /\.safetensors\.index\.json$/i.test(path);
}

export async function loadForRun(
  source: string | undefined,
  weightsPath: string,
  opts: LoadOptions = {},
): Promise<Loaded> {
  if (!existsSync(weightsPath)) throw new UserError(`${weightsPath}: no such file`, 2);
  if (isSafetensorsPath(weightsPath)) return loadSafetensors(source, weightsPath, opts);
  if (opts.quant !== undefined) {
    throw new UserError(
      "--quant applies to Hugging Face (safetensors) checkpoints; a GGUF file's weights run in the types they have",
    );
  }
  const file = openGguf(weightsPath);
  try {
    let module: CompiledModule;
    let origin: string;
    if (source !== undefined && isDir(source)) {
      module = await importModuleDir(source);
      origin = `compiled ${source}`;
    } else {
      const c = compileForGguf(source, file, weightsPath, opts.maxContext, opts.backend, opts.kvType);
      origin = c.origin;
      module = await importModuleSource(c.compiled.files["model.js"]!);
    }
    const weights = new GgufWeights(file, module.manifest);
    return {
      module,
      weights,
      tokenizer: tokenizerFromGguf(file.metadata, weightsPath),
      chatTemplate: chatTemplateFromGguf(file.metadata, weightsPath),
      origin,
      format: "gguf",
      close: () => file.close(),
    };
  } catch (e) {
    file.close();
    throw e;
  }
}

const MAX_CONFIG_BYTES = 1 << 20;

/** A spec from a Hugging Face folder's config.json, compiled in memory. */
function importHfFolder(dir: string): CheckedSpec {
  const path = join(dir, "config.json");
  if (!existsSync(path)) {
    throw new CheckpointError({
      file: dir,
      problem: "a Hugging Face checkpoint folder needs its config.json",
    });
  }
  const size = statSync(path).size;
  if (size > MAX_CONFIG_BYTES)
    throw new CheckpointError({ file: path, problem: `is ${size} bytes; a config.json is at most 1 MiB` });
  const imported = importHfConfig(readFileSync(path, "utf8"), path);
  return compileSource(imported.source, `${path} (imported)`);
}

/**
 * The weights that feed an interleaved-pair RoPE (weight key → heads), found in the lowered graph:
 * `rope(linear(x, W), heads: h)` with the default style. Hugging Face rows must be permuted for them.
 */
export function interleavedRopeWeights(c: Compiled): Map<string, number> {
  const out = new Map<string, number>();
  const visit = (nodes: Compiled["graph"]["nodes"]) => {
    const byId = new Map(nodes.map((n) => [n.id, n]));
    for (const n of nodes) {
      if (n.body) visit(n.body.nodes);
      if (n.op !== "rope" || (n.attrs.style ?? "interleaved") !== "interleaved") continue;
      const src = byId.get(n.inputs[0]!);
      const w = src?.op === "linear" ? src.weights.w : undefined;
      if (w !== undefined) out.set(w, n.attrs.heads as number);
    }
  };
  visit(c.stages[0]!.graph.nodes);
  return out;
}

/** Hugging Face's input embedding and output head: the two tensors `tie_word_embeddings` makes one. */
const TIED_TENSORS = ["model.embed_tokens.weight", "lm_head.weight"] as const;

/** Whether the folder's config.json says `tie_word_embeddings: true` (false without one, or if unreadable). */
function tiesEmbeddings(folder: string): boolean {
  const path = join(folder, "config.json");
  try {
    if (!existsSync(path) || statSync(path).size > MAX_CONFIG_BYTES) return false;
    return (
      (JSON.parse(readFileSync(path, "utf8")) as { tie_word_embeddings?: unknown }).tie_word_embeddings ===
      true
    );
  } catch {
    return false;
  }
}

/**
 * With tied embeddings a checkpoint may store either `model.embed_tokens.weight` or `lm_head.weight` (or
 * both): a weight naming the one that is absent reads the other instead.
 */
export function tiedManifest<M extends Pick<Manifest, "weights">>(
  manifest: M,
  checkpoint: Pick<SafetensorsCheckpoint, "findTensor">,
  folder: string,
): M {
  if (!tiesEmbeddings(folder)) return manifest;
  const weights = manifest.weights.map((w) => {
    const i = (TIED_TENSORS as readonly string[]).indexOf(w.tensor);
    if (i < 0 || w.layers !== 0 || checkpoint.findTensor(w.tensor)) return w;
    const other = TIED_TENSORS[1 - i]!;
    return checkpoint.findTensor(other) ? { ...w, tensor: other } : w;
  });
  return { ...manifest, weights };
}

async function loadSafetensors(
  source: string | undefined,
  weightsPath: string,
  opts: LoadOptions,
): Promise<Loaded> {
  const folder = isDir(weightsPath) ? weightsPath : dirname(weightsPath);
  const quant = opts.quant ?? "f32";
  if (!findScheme(quant)) {
    throw new UserError(`--quant: unknown scheme \`${quant}\` (known: ${schemeNames().join(", ")})`);
  }
  // The checkpoint's headers and the tokenizer are checked first: a bad file fails before compiling.
  const checkpoint = SafetensorsCheckpoint.open(weightsPath);
  try {
    const tokenizer = loadHfTokenizer(folder);
    let module: CompiledModule;
    let origin: string;
    let rope = new Map<string, number>();
    if (source !== undefined && isDir(source) && existsSync(join(source, "model.js"))) {
      // A compiled module says nothing about its rope; it is taken to be what `moec import` writes (half).
      module = await importModuleDir(source);
      origin = `compiled ${source}`;
    } else {
      let spec: CheckedSpec;
      if (source === undefined || isDir(source)) {
        const from = source ?? folder;
        spec = importHfFolder(from);
        origin = `imported from ${join(from, "config.json")}, ${quant}`;
      } else {
        spec = loadSpec(source);
        origin = `${source}, ${quant}`;
      }
      const c = compileModel(spec, pickModel(spec), {
        quant,
        maxContext: opts.maxContext,
        backend: opts.backend,
        kvType: opts.kvType,
      });
      rope = interleavedRopeWeights(c);
      module = await importModuleSource(c.files["model.js"]!);
    }
    const weights = new SafetensorsWeights(checkpoint, tiedManifest(module.manifest, checkpoint, folder), {
      interleavedRope: rope,
    });
    const chatTemplate: ChatTemplateSource | undefined =
      tokenizer.chatTemplate === undefined
        ? undefined
        : {
            template: tokenizer.chatTemplate,
            file: join(folder, "tokenizer_config.json"),
            key: "chat_template",
          };
    return {
      module,
      weights,
      tokenizer,
      chatTemplate,
      origin,
      format: "safetensors",
      close: () => checkpoint.close(),
    };
  } catch (e) {
    checkpoint.close();
    throw e;
  }
}
