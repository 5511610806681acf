// `moec chat MODEL`: a conversation in the terminal. Each line you type is a user message; the reply
// streams as it is generated, with the whole history rendered by the chat template each turn. Ctrl-C
// stops the reply being written (at the prompt it exits), /reset forgets the conversation, /exit or
// Ctrl-D leaves.
import { createInterface } from "node:readline";
import { AbortError, ContextLengthError, GENERATE_DEFAULTS, type GenerateOptions } from "../../api/index.ts";
import { err } from "../color.ts";
import { UserError } from "../user-error.ts";
import { intFlag, loadForCli, loadOptionsOf, type ModelFlags } from "./serve.ts";

export interface ChatFlags extends ModelFlags {
  system?: string;
  tokens: string;
  temperature: string;
  topK: string;
  topP: string;
  minP: string;
  repeatPenalty: string;
  seed: string;
}

/** Replies as long as this unless -n says otherwise: a chat answer is longer than run's 64-token default. */
export const CHAT_MAX_TOKENS = 512;

function numberFlag(name: string, text: string): number {
  const v = Number(text);
  if (text.trim() === "" || !Number.isFinite(v))
    throw new UserError(`${name}: expected a number, found \`${text}\``);
  return v;
}

function generateOptions(o: ChatFlags): GenerateOptions {
  return {
    maxTokens: intFlag("-n", o.tokens, 1),
    temperature: numberFlag("--temperature", o.temperature),
    topK: intFlag("--top-k", o.topK, 0),
    topP: numberFlag("--top-p", o.topP),
    minP: numberFlag("--min-p", o.minP),
    repeatPenalty: numberFlag("--repeat-penalty", o.repeatPenalty),
    seed: intFlag("--seed", o.seed, Number.MIN_SAFE_INTEGER),
  };
}

/** The defaults `moec chat --help` shows: run's, except the reply length. */
export const CHAT_DEFAULTS = { ...GENERATE_DEFAULTS, maxTokens: CHAT_MAX_TOKENS };

export async function chatCommand(path: string, o: ChatFlags): Promise<void> {
  const generate = generateOptions(o);
  const model = await loadForCli(path, loadOptionsOf(o));
  if (!model.info.hasChatTemplate) {
    await model.close();
    throw new UserError(
      `${path} has no chat template: give one with --chat-template FILE (a Jinja template), or use \`moec run\` with a prompt in the model's format`,
      2,
    );
  }
  const session = model.chat({ system: o.system, defaults: generate });
  const out = process.stdout;
  process.stderr.write(
    err.dim(
      `${model.info.name} (${model.info.origin}). Ctrl-C stops a reply, /reset forgets, /exit or Ctrl-D leaves.\n`,
    ),
  );
  const rl = createInterface({ input: process.stdin, output: out, prompt: "> " });
  let answering: AbortController | undefined;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  let leaving = false;
  const lines: string[] = [];
  let busy = false;
  const leave = () => {
    if (leaving) return;
    leaving = true;
    answering?.abort();
    rl.close();
  };
  // Ctrl-C: readline reports it on a terminal; a plain SIGINT comes when stdin is not one.
  const interrupt = () => {
    if (answering) {
      answering.abort();
      return;
    }
    out.write("\n");
    leave();
  };
  rl.on("SIGINT", interrupt);
  process.on("SIGINT", interrupt);
  rl.on("close", () => {
    leaving = true;
    answering?.abort();
    if (!busy) done();
  });

  const answer = async (text: string) => {
    answering = new AbortController();
    let started = false;
    try {
      for await (const piece of session.stream(text, { signal: answering.signal })) {
        // The reply's leading space belongs to the template, not to what is shown.
        const shown = started ? piece : piece.trimStart();
        if (shown) started = true;
        out.write(shown);
      }
      out.write("\n");
    } catch (e) {
      if (e instanceof AbortError) out.write(`${started ? "\n" : ""}${err.dim("(stopped)")}\n`);
      else if (e instanceof ContextLengthError) {
        process.stderr.write(`${err.red("error:")} ${e.message}; /reset starts the conversation over\n`);
      } else throw e;
    } finally {
      answering = undefined;
    }
  };

  // Input keeps flowing while a reply streams (Ctrl-C must get through): lines typed meanwhile wait.
  const next = async () => {
    if (busy) return;
    busy = true;
    while (lines.length && !leaving) {
      const line = lines.shift()!;
      const text = line.trim();
      if (text === "/exit") leave();
      else if (text === "/reset") {
        session.reset();
        out.write(`${err.dim("(the conversation is forgotten)")}\n`);
      } else if (text !== "") await answer(line);
      if (!leaving && lines.length === 0) rl.prompt();
    }
    busy = false;
    if (leaving) done();
  };
  rl.on("line", (line) => {
    lines.push(line);
    void next();
  });
  rl.prompt();
  await finished;
  process.off("SIGINT", interrupt);
  await model.close();
}
