// `moec serve MODEL`: the model behind OpenAI's HTTP API (cli/serve/server.ts), with run's load options,
// --parallel sequence slots and a bounded queue. SIGINT/SIGTERM stop it cleanly: no new requests, the
// running ones aborted, the model closed; a second signal exits at once.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { type LoadOptions, loadModel, type Model, MoecError } from "../../api/index.ts";
import { err } from "../color.ts";
import { createMoecServer, DEFAULT_MAX_BODY } from "../serve/server.ts";
import { UserError } from "../user-error.ts";
import { backendOption, kvTypeOption, memoryOptions, sizeOption, threadCount } from "./run.ts";

export interface ModelFlags {
  weights?: string;
  context?: string;
  quant?: string;
  threads?: string;
  vram?: string;
  hostMemory?: string;
  policy?: string;
  prefetch?: boolean;
  backend?: string;
  kvType?: string;
  chatTemplate?: string;
}

export interface ServeFlags extends ModelFlags {
  host: string;
  port: string;
  parallel: string;
  apiKey?: string;
  maxQueue: string;
  maxBody: string;
}

/** A whole-number flag in [min, max]. */
export function intFlag(name: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = Number(text);
  if (text.trim() === "" || !Number.isInteger(v) || v < min || v > max) {
    throw new UserError(
      `${name}: expected a whole number from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ""}, found \`${text}\``,
    );
  }
  return v;
}

/** run's model flags as the library's load options, checked with run's messages. */
export function loadOptionsOf(o: ModelFlags): LoadOptions {
  const memory = memoryOptions(o);
  let chatTemplate: string | undefined;
  if (o.chatTemplate !== undefined) {
    try {
      chatTemplate = readFileSync(o.chatTemplate, "utf8");
    } catch (e) {
      throw new UserError(
        `--chat-template: cannot read ${o.chatTemplate} (${(e as NodeJS.ErrnoException).code})`,
        2,
      );
    }
  }
  return {
    weights: o.weights,
    context: o.context === undefined ? undefined : intFlag("--context", o.context, 2),
    quant: o.quant,
    threads: threadCount(o.threads),
    vram: memory.deviceBudget,
    hostMemory: memory.hostBudget,
    policy: memory.policy as LoadOptions["policy"],
    prefetch: o.vram === undefined ? undefined : memory.prefetch,
    backend: backendOption(o.backend) as LoadOptions["backend"],
    kvType: kvTypeOption(o.kvType),
    chatTemplate,
  };
}

/** loadModel with the library's typed errors as the CLI's user errors (exit 2: the files or the budget). */
export async function loadForCli(path: string, options: LoadOptions): Promise<Model> {
  try {
    return await loadModel(path, options);
  } catch (e) {
    if (e instanceof MoecError) throw new UserError(e.message, e.code === "invalid_option" ? 1 : 2);
    throw e;
  }
}

export async function serveCommand(path: string, o: ServeFlags): Promise<void> {
  const port = intFlag("--port", o.port, 0, 65535);
  const parallel = intFlag("--parallel", o.parallel, 1, 256);
  const maxQueue = intFlag("--max-queue", o.maxQueue, 0);
  const maxBodyBytes = sizeOption("--max-body", o.maxBody);
  if (o.apiKey !== undefined && o.apiKey === "") throw new UserError("--api-key: the key is empty");
  const model = await loadForCli(path, { ...loadOptionsOf(o), parallel, maxQueue });
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  const { server, close } = createMoecServer(model, {
    modelId: basename(path),
    apiKey: o.apiKey,
    maxBodyBytes,
    log,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, o.host, () => resolve());
    });
  } catch (e) {
    await model.close();
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(
      `cannot listen on ${o.host}:${port}: ${code === "EADDRINUSE" ? "the port is in use" : (e as Error).message}`,
    );
  }
  const address = server.address();
  const bound = typeof address === "object" && address ? address.port : port;
  const i = model.info;
  process.stderr.write(
    `${err.dim(`${i.name} (${i.origin}), ${i.parallel} sequence slot${i.parallel === 1 ? "" : "s"} of ${i.contextLength} tokens, queue ${maxQueue}`)}\n` +
      `listening on http://${o.host.includes(":") ? `[${o.host}]` : o.host}:${bound}/v1\n`,
  );
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        log(`${signal} again: exiting now`);
        process.exit(130);
      }
      stopping = true;
      log(`${signal}: shutting down (running requests are aborted)`);
      close()
        .then(() => model.close())
        .then(() => {
          log("stopped");
          resolve();
        });
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
  });
}

/** The default --max-body, as the help shows it. */
export const MAX_BODY_DEFAULT = `${DEFAULT_MAX_BODY / (1 << 20)}MiB`;
