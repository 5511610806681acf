// moec serve's HTTP server (node:http): OpenAI's routes over a loaded Model. Each request is checked
// (auth, size, JSON, fields), queued in the model's scheduler, answered whole or as server-sent events,
// and logged in one line when it ends. A client that goes away aborts its generation, which frees its
// sequence slot at the next step.
import { randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import {
  AbortError,
  type Completion,
  ContextLengthError,
  InvalidOptionError,
  InvalidPromptError,
  type Model,
  ModelClosedError,
  NoChatTemplateError,
  QueueFullError,
} from "../../api/index.ts";
import { HttpError } from "./http-error.ts";
import { parseChat, parseCompletion } from "./openai-request.ts";

export interface ServeOptions {
  /** The id /v1/models lists and responses name. */
  modelId: string;
  /** Requests must carry `Authorization: Bearer KEY` (not /health). */
  apiKey?: string | undefined;
  /** Largest request body in bytes; larger is 413. */
  maxBodyBytes: number;
  /** Where the per-request log lines go. */
  log?: (line: string) => void;
}

export const DEFAULT_MAX_BODY = 1 << 20;

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  /** Aborted when the client goes away or the server shuts down. */
  signal: AbortSignal;
  tokens: { prompt: number; completion: number };
}

const created = () => Math.floor(Date.now() / 1000);
const newId = (prefix: string) => `${prefix}-${randomBytes(12).toString("hex")}`;

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** A library error as the HTTP error a client can act on; anything else is a bug (500). */
function httpErrorOf(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (e instanceof ContextLengthError)
    return new HttpError(400, e.message, "messages", "context_length_exceeded");
  if (e instanceof InvalidOptionError) return new HttpError(400, e.message, e.option, "invalid_value");
  if (e instanceof InvalidPromptError) return new HttpError(400, e.message, "prompt", "invalid_value");
  if (e instanceof NoChatTemplateError) return new HttpError(400, e.message, "messages", "no_chat_template");
  if (e instanceof QueueFullError)
    return new HttpError(503, e.message, null, "queue_full", { "retry-after": "1" });
  if (e instanceof ModelClosedError || e instanceof AbortError) {
    // A request's own abort comes from its client going away (nobody reads this) or from shutdown.
    return new HttpError(503, "the server is shutting down", null, "shutting_down");
  }
  return new HttpError(500, `internal error: ${(e as Error)?.message ?? e}`, null, "internal_error");
}

async function readBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const tooLarge = () =>
    new HttpError(
      413,
      `the request body is over the ${limit}-byte limit (--max-body)`,
      null,
      "request_too_large",
    );
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, `the body is not valid JSON: ${(e as Error).message}`, null, "invalid_json");
  }
}

function usageOf(c: Completion) {
  return {
    prompt_tokens: c.promptTokens,
    completion_tokens: c.tokens.length,
    total_tokens: c.promptTokens + c.tokens.length,
  };
}

export interface MoecServer {
  server: Server;
  /** Stops accepting, aborts what runs, closes the connections. The model stays open (its owner closes it). */
  close(): Promise<void>;
}

export function createMoecServer(model: Model, o: ServeOptions): MoecServer {
  const inflight = new Set<AbortController>();
  const log = o.log ?? (() => {});
  const key = o.apiKey === undefined ? undefined : Buffer.from(`Bearer ${o.apiKey}`);

  const authorized = (req: IncomingMessage) => {
    if (!key) return true;
    const got = Buffer.from(req.headers.authorization ?? "");
    return got.length === key.length && timingSafeEqual(got, key);
  };

  /** Answers one generation request, whole or as server-sent events. */
  async function generate(ctx: Ctx, kind: "chat" | "text"): Promise<void> {
    const body = await readBody(ctx.req, o.maxBodyBytes);
    const context = model.info.contextLength;
    const parsed = kind === "chat" ? parseChat(body, context) : parseCompletion(body, context);
    const prompt =
      "messages" in parsed
        ? model.chatPrompt(parsed.messages)
        : typeof parsed.prompt === "string"
          ? model.tokenize(parsed.prompt)
          : parsed.prompt;
    ctx.tokens.prompt = prompt.length;
    if (prompt.length >= context) {
      const e = new ContextLengthError(prompt.length, context);
      throw new HttpError(400, e.message, kind === "chat" ? "messages" : "prompt", "context_length_exceeded");
    }
    const id = newId(kind === "chat" ? "chatcmpl" : "cmpl");
    const object = kind === "chat" ? "chat.completion" : "text_completion";
    const base = { id, object, created: created(), model: o.modelId };
    const choice = (text: string | undefined, finish: string | null, first = false) =>
      kind === "chat"
        ? {
            index: 0,
            delta: text === undefined ? {} : first ? { role: "assistant", content: text } : { content: text },
            logprobs: null,
            finish_reason: finish,
          }
        : { index: 0, text: text ?? "", logprobs: null, finish_reason: finish };

    if (!parsed.stream) {
      const c = await model.complete(prompt, { ...parsed.generate, signal: ctx.signal });
      ctx.tokens.completion = c.tokens.length;
      const text = kind === "chat" ? c.text.trimStart() : c.text;
      sendJson(ctx.res, 200, {
        ...base,
        choices: [
          kind === "chat"
            ? {
                index: 0,
                message: { role: "assistant", content: text, refusal: null },
                logprobs: null,
                finish_reason: c.finishReason,
              }
            : { index: 0, text, logprobs: null, finish_reason: c.finishReason },
        ],
        usage: usageOf(c),
      });
      return;
    }

    // Streamed: headers go out once the request is admitted to the queue (errors before that are plain JSON).
    const chunkObject = kind === "chat" ? "chat.completion.chunk" : "text_completion";
    const extra = parsed.includeUsage ? { usage: null } : {};
    const send = (data: unknown) => ctx.res.write(`data: ${JSON.stringify(data)}\n\n`);
    let started = false;
    let leading = kind === "chat"; // a chat reply's first space is the template's, not the assistant's
    const start = () => {
      if (started) return;
      started = true;
      ctx.res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        connection: "keep-alive",
      });
      if (kind === "chat")
        send({ ...base, object: chunkObject, choices: [choice("", null, true)], ...extra });
    };
    try {
      const stream = model.stream(prompt, { ...parsed.generate, signal: ctx.signal });
      start();
      for (;;) {
        const r = await stream.next();
        if (r.done) {
          const c = r.value;
          ctx.tokens.completion = c.tokens.length;
          send({ ...base, object: chunkObject, choices: [choice(undefined, c.finishReason)], ...extra });
          if (parsed.includeUsage) send({ ...base, object: chunkObject, choices: [], usage: usageOf(c) });
          break;
        }
        let piece = r.value;
        if (leading) {
          piece = piece.trimStart();
          if (piece === "") continue;
          leading = false;
        }
        send({ ...base, object: chunkObject, choices: [choice(piece, null)], ...extra });
      }
      ctx.res.end("data: [DONE]\n\n");
    } catch (e) {
      if (!started) throw e;
      // Mid-stream the status is sent: the error (a shutdown, a bug) goes as an event, as OpenAI's
      // streams report them, unless the client is gone.
      if (!ctx.res.destroyed) ctx.res.end(`data: ${JSON.stringify(httpErrorOf(e).body())}\n\n`);
    }
  }

  async function route(ctx: Ctx): Promise<void> {
    const { req, res } = ctx;
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const routes: Record<string, { method: string; run: () => Promise<void> | void }> = {
      "/health": {
        method: "GET",
        run: () => sendJson(res, 200, { status: "ok", slots: model.load }),
      },
      "/v1/models": {
        method: "GET",
        run: () =>
          sendJson(res, 200, {
            object: "list",
            data: [
              {
                id: o.modelId,
                object: "model",
                created: created(),
                owned_by: "moec",
                context_length: model.info.contextLength,
              },
            ],
          }),
      },
      "/v1/chat/completions": { method: "POST", run: () => generate(ctx, "chat") },
      "/v1/completions": { method: "POST", run: () => generate(ctx, "text") },
    };
    const r = routes[path];
    if (!r)
      throw new HttpError(
        404,
        `no route ${req.method} ${path} (moec serve has ${Object.keys(routes).join(", ")})`,
        null,
        "not_found",
      );
    if (path !== "/health" && !authorized(req)) {
      throw new HttpError(
        401,
        "missing or incorrect API key: send Authorization: Bearer KEY (--api-key)",
        null,
        "invalid_api_key",
      );
    }
    if (req.method !== r.method) {
      throw new HttpError(405, `${path} takes ${r.method}, not ${req.method}`, null, "method_not_allowed", {
        allow: r.method,
      });
    }
    await r.run();
  }

  const server = createServer((req, res) => {
    const t0 = performance.now();
    const ac = new AbortController();
    inflight.add(ac);
    const ctx: Ctx = { req, res, signal: ac.signal, tokens: { prompt: 0, completion: 0 } };
    res.on("close", () => {
      inflight.delete(ac);
      const gone = !res.writableFinished;
      if (gone) ac.abort(new AbortError("the client disconnected"));
      const ms = (performance.now() - t0).toFixed(0);
      log(
        `${req.method} ${req.url} ${res.statusCode}${gone ? " (client gone)" : ""} ${ctx.tokens.prompt} prompt + ${ctx.tokens.completion} generated tokens ${ms} ms`,
      );
    });
    route(ctx).catch((e) => {
      if (res.destroyed) return; // the client is gone: nobody to answer
      const h = httpErrorOf(e);
      if (h.status === 500) log(`internal error: ${(e as Error)?.stack ?? e}`);
      if (res.headersSent) {
        res.end();
        return;
      }
      // The rest of an over-large body is not read: the connection closes after the answer.
      sendJson(res, h.status, h.body(), h.status === 413 ? { ...h.headers, connection: "close" } : h.headers);
    });
  });

  return {
    server,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const ac of inflight) ac.abort(new AbortError("the server is shutting down"));
      server.closeIdleConnections();
      // Aborted generations end their responses at the next step; whatever is left is cut.
      setTimeout(() => server.closeAllConnections(), 2000).unref();
      await closed;
    },
  };
}
