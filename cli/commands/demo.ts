import { existsSync, mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import pc from "picocolors";
import { writeRandomMixtralGguf } from "../../runtime/checkpoint/random-gguf.ts";
import { runCommand } from "./run.ts";

/** The demo model: Mixtral's shape (GQA, 8 experts, top-2), small enough to write and run in seconds. */
const DEMO = {
  hidden: 256,
  layers: 4,
  heads: 8,
  kvHeads: 2,
  ffn: 512,
  experts: 8,
  topK: 2,
  vocab: 4000,
  context: 1024,
  ropeTheta: 1e6,
  eps: 1e-5,
  type: "q8_0",
  seed: 2024,
  headScale: 4,
} as const;

export interface DemoOptions {
  prompt: string;
  tokens: string;
}

/** Writes (once, cached) a random Mixtral-shaped GGUF with moec's own writer, then runs it. */
export async function demoCommand(o: DemoOptions): Promise<void> {
  const dir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "moec");
  const file = join(
    dir,
    `demo-${DEMO.type}-h${DEMO.hidden}-l${DEMO.layers}-e${DEMO.experts}-v${DEMO.vocab}-s${DEMO.seed}.gguf`,
  );
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    process.stderr.write(pc.dim(`writing a random Mixtral-shaped checkpoint to ${file}\n`));
    writeRandomMixtralGguf(file, { ...DEMO, name: "moec demo (random weights)" });
  }
  process.stderr.write(
    pc.dim(
      `demo: hidden ${DEMO.hidden}, ${DEMO.layers} layers, ${DEMO.heads} heads / ${DEMO.kvHeads} KV heads, ${DEMO.experts} experts top-${DEMO.topK}, ${DEMO.type}; the weights are random, so is the text\n`,
    ),
  );
  await runCommand(undefined, {
    weights: file,
    prompt: o.prompt,
    tokens: o.tokens,
    temperature: "0.8",
    topK: "40",
    topP: "0.95",
    minP: "0.05",
    repeatPenalty: "1.1",
    seed: "1",
  });
}
