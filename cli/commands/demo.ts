import { existsSync, mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeDirAtomic } from "../../runtime/atomic.ts";
import { openGguf } from "../../runtime/checkpoint/gguf-read.ts";
import { type UpcycleOptions, upcycleGguf } from "../../runtime/checkpoint/upcycle.ts";
import { measureDevice, slotsFor } from "../../runtime/memory/device-plan.ts";
import { formatBytes } from "../../runtime/units.ts";
import { err } from "../color.ts";
import { compileForGguf } from "../model-source.ts";
import { runCommand } from "./run.ts";

/** llama2.c's stories260K, trained on TinyStories (MIT; models/README.md), shipped with moec. */
export const STORIES260K = fileURLToPath(new URL("../../models/stories260K.gguf", import.meta.url));

/**
 * The demo model: stories260K upcycled to a Mixtral-architecture MoE, 8 experts top-2 (the same file as the
 * 8-expert f32 case of test/llama/stories.test.ts, which checks it against llama.cpp).
 */
export const DEMO_UPCYCLE: UpcycleOptions & { seed: number } = {
  experts: 8,
  topK: 2,
  seed: 7,
  name: "stories260K upcycled to 8 experts top-2",
};
/** Experts per layer kept on the device: the rest go through the expert cache. */
const DEMO_SLOTS = 3;
const DEMO_CONTEXT = 512;

export interface DemoOptions {
  prompt: string;
  tokens: string;
  /** Print run's JSON object, with a `demo` object: the checkpoint, experts, top-k, slots, budget. */
  json?: boolean;
}

/** The cache folder (`$XDG_CACHE_HOME/moec`, else `~/.cache/moec`). */
export function demoCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "moec");
}

/** The upcycled checkpoint in the cache folder, written once. */
export function demoCheckpoint(): string {
  const dir = demoCacheDir();
  const u = DEMO_UPCYCLE;
  const file = join(dir, `demo-stories260K-e${u.experts}-top${u.topK}-s${u.seed}.gguf`);
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    process.stderr.write(err.dim(`upcycling stories260K to ${u.experts} experts, top-${u.topK}: ${file}\n`));
    upcycleGguf(STORIES260K, file, u);
  }
  return file;
}

/**
 * Upcycles the shipped stories260K to an MoE (once, cached), compiles it, and generates greedily with only
 * DEMO_SLOTS experts per layer on the device, so that the router's picks go through the expert cache.
 */
export async function demoCommand(o: DemoOptions): Promise<void> {
  const file = demoCheckpoint();
  // Compiled here rather than by `run`, to size the device budget from the plan: DEMO_SLOTS experts per layer.
  const gguf = openGguf(file);
  let budget: number;
  const compiledDir = join(demoCacheDir(), "demo-compiled");
  try {
    const { compiled } = compileForGguf(undefined, gguf, file, DEMO_CONTEXT);
    budget = measureDevice(compiled.manifest, slotsFor(compiled.manifest, DEMO_SLOTS)).used;
    writeDirAtomic(compiledDir, compiled.files);
  } finally {
    gguf.close();
  }
  const u = DEMO_UPCYCLE;
  if (!o.json)
    process.stderr.write(
      err.dim(
        `demo: llama2.c's stories260K (trained on TinyStories; hidden 64, 5 layers, f32) upcycled to a Mixtral-architecture MoE: ${u.experts} experts top-${u.topK}, each the dense FFN perturbed, a random router; ${DEMO_SLOTS} of ${u.experts} experts per layer fit the device budget of ${formatBytes(budget)}, the rest come through the expert cache; greedy, as llama.cpp decodes this file\n`,
      ),
    );
  await runCommand(compiledDir, {
    weights: file,
    prompt: o.prompt,
    tokens: o.tokens,
    temperature: "0",
    topK: "0",
    topP: "1",
    minP: "0",
    repeatPenalty: "1",
    seed: "0",
    vram: String(budget),
    stats: !o.json,
    json: o.json,
    jsonExtra: {
      demo: {
        checkpoint: file,
        experts: u.experts,
        top_k: u.topK,
        device_experts_per_layer: DEMO_SLOTS,
        budget_bytes: budget,
        context: DEMO_CONTEXT,
      },
    },
  });
}
