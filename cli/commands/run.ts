import { availableParallelism } from "node:os";
import { renderChat } from "../../runtime/chat-template.ts";
import { generate } from "../../runtime/generate.ts";
import { GpuError } from "../../runtime/gpu/backend.ts";
import { generateAsync } from "../../runtime/gpu/generate.ts";
import { GpuModel, isGpuModule } from "../../runtime/gpu/model.ts";
import { HEAP_LIMIT } from "../../runtime/heap.ts";
import { isKvType, KV_TYPES, type KvType } from "../../runtime/kv-type.ts";
import { formatMemoryStats } from "../../runtime/memory/memory-stats.ts";
import { policyNames, UnknownPolicyError } from "../../runtime/memory/policy.ts";
import { ModelInstance } from "../../runtime/model.ts";
import { Sampler } from "../../runtime/sampler.ts";
import { Detokenizer } from "../../runtime/tokenizer/spm.ts";
import { formatBytes, parseSize } from "../../runtime/units.ts";
import { err } from "../color.ts";
import { loadForRun } from "../model-source.ts";
import { slowProgress } from "../progress.ts";
import { isCheckpointPath } from "../spec-argument.ts";
import { UserError } from "../user-error.ts";

export interface RunOptions {
  weights?: string;
  prompt: string;
  tokens: string;
  temperature: string;
  topK: string;
  topP: string;
  minP: string;
  repeatPenalty: string;
  seed: string;
  context?: string;
  stop?: string[];
  json?: boolean;
  /** The prompt is the user's message, rendered with the model's chat template. */
  chat?: boolean;
  /** Scheme of every matrix for a safetensors checkpoint (default f32). */
  quant?: string;
  /** Threads for the kernels (default: the machine's cores). */
  threads?: string;
  /** Device memory budget (a size); experts that do not fit go to an expert cache. */
  vram?: string;
  /** Host memory for offloaded experts (a size); beyond it they are read from the GGUF file. */
  hostMemory?: string;
  /** Print the memory stats line. */
  stats?: boolean;
  /** Expert cache eviction policy: lru or lfu. */
  policy?: string;
  /** false with --no-prefetch. */
  prefetch?: boolean;
  /** cpu (default), webgpu or gpujs. */
  backend?: string;
  /** f32, f16 or q8_0: the KV caches' element type (default: the backend's, f16 where it can). */
  kvType?: string;
  /** More fields for the --json object (`moec demo` adds its own). */
  jsonExtra?: Record<string, unknown>;
}

export const BACKENDS = ["cpu", "webgpu", "gpujs"];

/** `--backend`: one of BACKENDS. */
export function backendOption(text: string | undefined): string | undefined {
  if (text !== undefined && !BACKENDS.includes(text)) {
    throw new UserError(`--backend: unknown backend \`${text}\` (backends: ${BACKENDS.join(", ")})`);
  }
  return text;
}

/** `--kv-type`: one of KV_TYPES. */
export function kvTypeOption(text: string | undefined): KvType | undefined {
  if (text !== undefined && !isKvType(text)) {
    throw new UserError(`--kv-type: unknown KV cache type \`${text}\` (types: ${KV_TYPES.join(", ")})`);
  }
  return text;
}

/** `--vram` / `--host-memory`: a size with a unit or a number of bytes, more than zero. */
export function sizeOption(name: string, text: string): number {
  const b = parseSize(text);
  if (b === undefined) {
    throw new UserError(`${name}: \`${text}\` is not a size (try 512MiB, 24GiB, 80GB or a number of bytes)`);
  }
  if (b <= 0) throw new UserError(`${name}: the budget must be more than 0 bytes, found \`${text}\``);
  return b;
}

/** The memory flags of `moec run`, checked before anything loads. */
export function memoryOptions(o: Pick<RunOptions, "vram" | "hostMemory" | "policy" | "prefetch">) {
  const cacheFlags = [
    o.hostMemory !== undefined ? "--host-memory" : "",
    o.policy !== undefined ? "--policy" : "",
    o.prefetch === false ? "--no-prefetch" : "",
  ].filter(Boolean);
  if (o.vram === undefined && cacheFlags.length) {
    throw new UserError(
      `${cacheFlags.join(", ")} ${cacheFlags.length === 1 ? "applies" : "apply"} to the expert cache, which --vram SIZE sets up: give --vram too`,
    );
  }
  // A mistake in a flag: exit 1, like the other flags (the runtime's UnknownPolicyError alone would exit 2).
  if (o.policy !== undefined && !policyNames.includes(o.policy.toLowerCase())) {
    throw new UserError(`--policy: ${new UnknownPolicyError(o.policy).message}`);
  }
  return {
    deviceBudget: o.vram === undefined ? undefined : sizeOption("--vram", o.vram),
    hostBudget: o.hostMemory === undefined ? undefined : sizeOption("--host-memory", o.hostMemory),
    policy: o.policy,
    prefetch: o.prefetch ?? true,
  };
}

/** `--threads`: a whole number from 1 to 256; the default is every core this process may use. */
export function threadCount(text: string | undefined): number {
  if (text === undefined) return availableParallelism();
  const n = number("--threads", text, true);
  if (n < 1 || n > 256) throw new UserError(`--threads: expected 1 to 256, found ${n}`);
  return n;
}

function number(name: string, text: string, integer = false): number {
  const v = Number(text);
  if (text.trim() === "" || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new UserError(`${name}: expected ${integer ? "a whole number" : "a number"}, found \`${text}\``);
  }
  return v;
}

export async function runCommand(source: string | undefined, o: RunOptions): Promise<void> {
  // `moec run model.gguf`: a checkpoint given where the spec goes is the weights, its spec imported.
  if (source !== undefined && o.weights === undefined && isCheckpointPath(source)) {
    o = { ...o, weights: source };
    source = undefined;
  }
  if (!o.weights) {
    throw new UserError(
      "--weights is required: the checkpoint to run (a .gguf file, or a Hugging Face folder with config.json, tokenizer.json and safetensors)",
    );
  }
  const maxTokens = number("-n", o.tokens, true);
  const sampler = {
    temperature: number("--temperature", o.temperature),
    topK: number("--top-k", o.topK, true),
    topP: number("--top-p", o.topP),
    minP: number("--min-p", o.minP),
    repetitionPenalty: number("--repeat-penalty", o.repeatPenalty),
    seed: number("--seed", o.seed, true),
  };
  const context = o.context === undefined ? undefined : number("--context", o.context, true);
  const threads = threadCount(o.threads);
  const memory = memoryOptions(o);
  const backend = backendOption(o.backend);
  const kvType = kvTypeOption(o.kvType);
  const started = performance.now();
  const loaded = await loadForRun(source, o.weights, {
    maxContext: context,
    quant: o.quant,
    backend,
    kvType,
  });
  const compiledKv = loaded.module.manifest.kvType ?? "f32";
  if (kvType !== undefined && kvType !== compiledKv) {
    loaded.close();
    throw new UserError(
      `${source} was compiled with a ${compiledKv} KV cache; compile it again with --kv-type ${kvType}, or run it without --kv-type`,
    );
  }
  const gpuModule = isGpuModule(loaded.module) ? loaded.module : undefined;
  const compiledFor = gpuModule?.backend ?? "cpu";
  if (backend !== undefined && backend !== compiledFor) {
    loaded.close();
    throw new UserError(
      `${source} was compiled for the ${compiledFor} backend; compile it again with --backend ${backend}, or run it with --backend ${compiledFor}`,
    );
  }
  let model: ModelInstance | undefined;
  let gpu: GpuModel | undefined;
  try {
    const tokenizer = loaded.tokenizer;
    let prompt: number[];
    if (o.chat) {
      if (!loaded.chatTemplate) {
        throw new UserError(
          `--chat: ${o.weights} has no chat template (${loaded.format === "gguf" ? "no tokenizer.chat_template in its metadata" : "no chat_template in tokenizer_config.json"}); run without --chat and write the prompt in the model's format`,
          2,
        );
      }
      const text = (id: number | undefined) => (id === undefined ? undefined : tokenizer.tokenText(id));
      const rendered = renderChat(loaded.chatTemplate, [{ role: "user", content: o.prompt }], {
        bosToken: text(tokenizer.bos),
        eosToken: text(tokenizer.eos),
        addGenerationPrompt: true,
      });
      // The template writes its own special tokens (BOS, [INST] …): parse them, and add BOS only if it did not.
      const bos = text(tokenizer.bos);
      const hasBos = bos !== undefined && bos !== "" && rendered.startsWith(bos);
      prompt = tokenizer.encode(rendered, { addBos: tokenizer.addBos && !hasBos, parseSpecial: true });
    } else {
      prompt = tokenizer.encode(o.prompt, { addBos: tokenizer.addBos });
    }
    const progress = o.json ? undefined : slowProgress("loading weights");
    try {
      if (gpuModule) {
        // A GPU backend either runs or says why; it never falls back to the CPU by itself.
        gpu = await GpuModel.load(gpuModule, loaded.weights, {
          onProgress: progress?.update,
          ...memory,
          prefetch: false,
          expertFile: loaded.format === "gguf" ? o.weights : undefined,
        }).catch((e) => {
          if (e instanceof GpuError) {
            throw new UserError(
              /--backend cpu/.test(e.message) ? e.message : `${e.message}; run with --backend cpu instead`,
              e.exitCode,
            );
          }
          throw e;
        });
      } else
        model = new ModelInstance(loaded.module, loaded.weights, {
          onProgress: progress?.update,
          threads,
          ...memory,
          // Offloaded experts beyond --host-memory are read from the file itself: only a GGUF has them as is.
          expertFile: loaded.format === "gguf" ? o.weights : undefined,
        });
    } finally {
      progress?.stop();
    }
    const loadMs = performance.now() - started;
    const m = loaded.module.manifest;
    if (!o.json) {
      process.stderr.write(err.dim(`${m.model} (${loaded.origin}), loaded in ${loadMs.toFixed(0)} ms\n`));
      if (gpu) process.stderr.write(err.dim(`${gpu.backend.name} backend on ${gpu.backend.device}\n`));
      if (!gpu && memory.deviceBudget !== undefined && memory.deviceBudget > HEAP_LIMIT) {
        process.stderr.write(
          err.dim(
            `--vram ${o.vram}: the CPU backend's device is its heap, which holds at most ${formatBytes(HEAP_LIMIT)}\n`,
          ),
        );
      }
      const placed = gpu ? { ...gpu.placed, origin: gpu.placed.origin } : model!.rt.placed;
      const cached = placed.caches.map((c) => `${c.slotsPerLayer} of ${c.experts}`).join(", ");
      if (cached) {
        process.stderr.write(
          err.dim(
            `expert cache: ${cached} experts per layer on the device, the rest ${placed.origin === "file" ? `read from ${o.weights}` : "in host memory"} (${placed.caches[0]!.policyName}${memory.prefetch && !gpu ? ", prefetch" : ""})\n`,
          ),
        );
      }
    }
    if (!o.json && !o.chat) process.stdout.write(o.prompt);
    const generation = {
      maxTokens,
      sampler: new Sampler(m.vocab, { ...sampler, topK: sampler.topK }),
      stopTokens: [...tokenizer.eogIds],
      stopStrings: o.stop ?? [],
      // Generated text continues the prompt, so its first space is kept (as llama.cpp streams it).
      text: new Detokenizer(tokenizer, { keepLeadingSpace: true }),
      onText: o.json ? undefined : (s: string) => process.stdout.write(s),
    };
    const result = gpu ? await generateAsync(gpu, prompt, generation) : generate(model!, prompt, generation);
    const t = result.timings;
    if (o.json) {
      const out = {
        prompt_tokens: prompt,
        tokens: result.tokens,
        text: result.text,
        stop: result.stop,
        timings: { prefill_tok_s: t.prefill_tok_s, decode_tok_s: t.decode_tok_s, load_ms: loadMs },
        memory: (gpu ?? model!).memory(),
        ...o.jsonExtra,
      };
      process.stdout.write(`${JSON.stringify(out)}\n`);
    } else {
      process.stdout.write("\n");
      process.stderr.write(
        err.dim(
          `${prompt.length} prompt tokens at ${t.prefill_tok_s.toFixed(1)} tok/s, ${result.tokens.length} generated at ${t.decode_tok_s.toFixed(1)} tok/s (stop: ${result.stop})\n`,
        ),
      );
    }
    if (o.stats) process.stderr.write(`${formatMemoryStats((gpu ?? model!).memory())}\n`);
  } finally {
    model?.close();
    gpu?.close();
    loaded.close();
  }
}
