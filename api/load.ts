// loadModel: what `moec run` does to get a model (cli/model-source.ts: a GGUF, a Hugging Face folder,
// a compiled directory, or a spec with weights; then the CPU runtime or a GPU backend), with the
// options checked first and every failure a typed error.
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { loadForRun } from "../cli/model-source.ts";
import { isCheckpointPath } from "../cli/spec-argument.ts";
import { SpecError, SpecErrors } from "../compiler/lang/errors.ts";
import type { ChatTemplateSource } from "../runtime/chat-template.ts";
import { GpuModel, isGpuModule } from "../runtime/gpu/model.ts";
import { isKvType, KV_TYPES } from "../runtime/kv-type.ts";
import { DeviceBudgetError } from "../runtime/memory/device-plan.ts";
import { policyNames } from "../runtime/memory/policy.ts";
import { ModelInstance } from "../runtime/model.ts";
import { parseSize } from "../runtime/units.ts";
import { AbortError, InvalidOptionError, ModelLoadError } from "./errors.ts";
import { Model } from "./model.ts";
import { type Backend, checkNumber, DEFAULT_MAX_QUEUE, type LoadOptions } from "./options.ts";
import { Scheduler, type Stepper } from "./scheduler.ts";

const BACKENDS: readonly Backend[] = ["cpu", "webgpu", "gpujs"];

function size(option: string, v: number | string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const b = typeof v === "number" ? v : typeof v === "string" ? parseSize(v) : undefined;
  if (b === undefined || !Number.isSafeInteger(b) || b <= 0) {
    throw new InvalidOptionError(
      option,
      `expected a size above 0 (bytes, or such as "512MiB"), found ${JSON.stringify(v)}`,
    );
  }
  return b;
}

function checkLoad(o: LoadOptions) {
  if (o.backend !== undefined && !BACKENDS.includes(o.backend)) {
    throw new InvalidOptionError(
      "backend",
      `expected one of ${BACKENDS.join(", ")}, found ${JSON.stringify(o.backend)}`,
    );
  }
  if (o.kvType !== undefined && !isKvType(o.kvType)) {
    throw new InvalidOptionError(
      "kvType",
      `expected one of ${KV_TYPES.join(", ")}, found ${JSON.stringify(o.kvType)}`,
    );
  }
  if (o.policy !== undefined && !policyNames.includes(o.policy)) {
    throw new InvalidOptionError(
      "policy",
      `expected one of ${policyNames.join(", ")}, found ${JSON.stringify(o.policy)}`,
    );
  }
  const cache = (["hostMemory", "policy", "prefetch"] as const).filter((k) => o[k] !== undefined);
  if (o.vram === undefined && cache.length) {
    throw new InvalidOptionError(cache[0]!, "applies to the expert cache, which vram sets up: give vram too");
  }
  for (const k of ["weights", "quant", "chatTemplate"] as const) {
    if (o[k] !== undefined && typeof o[k] !== "string") throw new InvalidOptionError(k, "expected a string");
  }
  const parallel = checkNumber("parallel", o.parallel ?? 1, { integer: true, min: 1, max: 256 });
  return {
    context:
      o.context === undefined ? undefined : checkNumber("context", o.context, { integer: true, min: 2 }),
    threads: checkNumber("threads", o.threads ?? availableParallelism(), { integer: true, min: 1, max: 256 }),
    parallel,
    maxQueue: checkNumber("maxQueue", o.maxQueue ?? DEFAULT_MAX_QUEUE, { integer: true, min: 0 }),
    memory: {
      deviceBudget: size("vram", o.vram),
      hostBudget: size("hostMemory", o.hostMemory),
      policy: o.policy,
      prefetch: o.prefetch ?? true,
    },
  };
}

/** A load failure the user can act on (a file, a spec, a budget) as ModelLoadError; bugs pass through. */
function loadError(e: unknown): unknown {
  if (e instanceof SpecError) return new ModelLoadError(new SpecErrors([e]).format(), e);
  if (e instanceof SpecErrors) return new ModelLoadError(e.format(), e);
  const known = e instanceof Error && (e.constructor.name === "UserError" || "exitCode" in e);
  return known ? new ModelLoadError((e as Error).message, e) : e;
}

/**
 * Loads a model: `path` is a .gguf file or a Hugging Face folder (its spec imported), or a compiled
 * directory or .moe spec with `weights`. Options and defaults are `moec run`'s.
 */
export async function loadModel(path: string, options: LoadOptions = {}): Promise<Model> {
  if (typeof path !== "string" || path === "")
    throw new InvalidOptionError("path", "expected a file or folder");
  const o = checkLoad(options);
  const signal = options.signal;
  if (signal?.aborted) throw new AbortError(signal.reason);
  if (!existsSync(path)) throw new ModelLoadError(`${path}: no such file or folder`);
  let source: string | undefined = path;
  let weights = options.weights;
  if (weights === undefined && isCheckpointPath(path)) {
    weights = path;
    source = undefined;
  }
  if (weights === undefined) {
    throw new InvalidOptionError(
      "weights",
      `${path} is a spec or compiled directory: give the checkpoint to run it with (a .gguf file or a Hugging Face folder)`,
    );
  }
  const loaded = await loadForRun(source, weights, {
    maxContext: o.context,
    quant: options.quant,
    backend: options.backend,
    kvType: options.kvType,
  }).catch((e) => {
    throw loadError(e);
  });
  const close: (() => void)[] = [() => loaded.close()];
  const dispose = () => {
    for (const f of close.splice(0).reverse()) f();
  };
  try {
    const gpuModule = isGpuModule(loaded.module) ? loaded.module : undefined;
    const compiledFor = gpuModule?.backend ?? "cpu";
    if (options.backend !== undefined && options.backend !== compiledFor) {
      throw new ModelLoadError(
        `${path} was compiled for the ${compiledFor} backend; compile it again for ${options.backend}, or load it with backend ${compiledFor}`,
      );
    }
    const compiledKv = loaded.module.manifest.kvType ?? "f32";
    if (options.kvType !== undefined && options.kvType !== compiledKv) {
      throw new ModelLoadError(
        `${path} was compiled with a ${compiledKv} KV cache; compile it again with kv type ${options.kvType}, or load it without kvType`,
      );
    }
    const m = loaded.module.manifest;
    // A budget that cannot hold every slot's KV caches: say so, since --parallel is what multiplies them.
    const parallelError = (le: unknown, e: unknown) =>
      le instanceof ModelLoadError && o.parallel > 1 && e instanceof DeviceBudgetError
        ? new ModelLoadError(
            `${le.message} (the KV cache is ${o.parallel} sequences' caches: parallel ${o.parallel} × context ${m.maxContext}; fewer slots or a shorter context need less)`,
            e,
          )
        : le;
    const expertFile = loaded.format === "gguf" ? weights : undefined;
    let stepper: Stepper;
    let memory: () => ReturnType<ModelInstance["memory"]>;
    if (gpuModule) {
      const gpu = await GpuModel.load(gpuModule, loaded.weights, {
        ...o.memory,
        prefetch: false,
        expertFile,
        sequences: o.parallel,
      }).catch((e) => {
        throw parallelError(loadError(e), e);
      });
      close.push(() => gpu.close());
      // With parallel slots and a batch program (webgpu), every decoding step goes through it, a lone one
      // too: a sequence then gets the same logits alone or among others (the per-token program sums in
      // another order). Without one (gpujs), the sequences step one by one.
      const batched = o.parallel > 1 && gpu.decodeBatch > 1;
      stepper = {
        sequences: o.parallel,
        maxContext: m.maxContext,
        prefillChunk: Math.max(16, gpu.prefillBatch),
        prefill: (s, tokens, pos0) => {
          gpu.useSequence(s);
          return gpu.prefill(tokens, pos0);
        },
        step: batched
          ? async (s, token, pos) => (await gpu.stepBatch([token], [pos], [s]))[0]!
          : (s, token, pos) => {
              gpu.useSequence(s);
              return gpu.step(token, pos);
            },
        ...(batched
          ? { stepBatch: (seqs, tokens, positions) => gpu.stepBatch(tokens, positions, seqs) }
          : {}),
      };
      memory = () => gpu.memory();
    } else {
      let cpu: ModelInstance;
      try {
        cpu = new ModelInstance(loaded.module, loaded.weights, {
          threads: o.threads,
          sequences: o.parallel,
          ...o.memory,
          expertFile,
        });
      } catch (e) {
        throw parallelError(loadError(e), e);
      }
      close.push(() => cpu.close());
      stepper = {
        sequences: o.parallel,
        maxContext: m.maxContext,
        prefillChunk: Math.max(16, loaded.module.prefill ? (m.prefill?.tokens ?? 1) : 1),
        prefill: (s, tokens, pos0) => {
          cpu.useSequence(s);
          return cpu.prefill(tokens, pos0);
        },
        step: (s, token, pos) => {
          cpu.useSequence(s);
          return cpu.step(token, pos);
        },
        stepBatch: (seqs, tokens, positions) => cpu.stepBatch(tokens, positions, seqs),
      };
      memory = () => cpu.memory();
    }
    if (signal?.aborted) throw new AbortError(signal.reason);
    const chatTemplate: ChatTemplateSource | undefined =
      options.chatTemplate !== undefined
        ? { template: options.chatTemplate, file: "the chatTemplate option", key: "template" }
        : loaded.chatTemplate;
    return new Model({
      info: {
        name: m.model,
        origin: loaded.origin,
        contextLength: m.maxContext,
        vocabSize: m.vocab,
        parallel: o.parallel,
        backend: compiledFor,
        hasChatTemplate: chatTemplate !== undefined,
      },
      tokenizer: loaded.tokenizer,
      chatTemplate,
      scheduler: new Scheduler(stepper, o.maxQueue),
      memory,
      dispose,
    });
  } catch (e) {
    dispose();
    throw e;
  }
}
