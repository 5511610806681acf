// moec serve's server driven by OpenAI's own client, on stories260K: the models list, completions equal
// to `moec run`'s greedy text, streamed chat with usage, concurrent requests each equal to its answer
// alone, a client aborting mid-stream, and every bad request with its status and OpenAI error shape.
import { execFile } from "node:child_process";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model } from "../../api/index.ts";
import { createMoecServer, type MoecServer } from "./server.ts";

const GGUF = "models/stories260K.gguf";
const TEMPLATE = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}";
const KEY = "sk-test";

let model: Model;
let served: MoecServer;
let base: string;
let client: OpenAI;
const logs: string[] = [];

beforeAll(async () => {
  model = await loadModel(GGUF, { threads: 1, parallel: 4, maxQueue: 4, chatTemplate: TEMPLATE });
  served = createMoecServer(model, {
    modelId: "stories",
    apiKey: KEY,
    maxBodyBytes: 65536,
    log: (l) => logs.push(l),
  });
  await new Promise<void>((r) => served.server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(served.server.address() as AddressInfo).port}`;
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: KEY, maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await served?.close();
  await model?.close();
});

const idle = async () => {
  for (let i = 0; i < 100 && model.load.active + model.load.waiting > 0; i++)
    await new Promise((r) => setTimeout(r, 20));
  return model.load;
};

/** A raw request, for what the client will not send. */
const raw = (path: string, init: RequestInit = {}) =>
  fetch(`${base}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json", ...init.headers },
  });

describe("moec serve, through the openai client", () => {
  it("lists the model and reports health", async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual(["stories"]);
    const health = await (await fetch(`${base}/health`)).json();
    expect(health).toEqual({ status: "ok", slots: { active: 0, waiting: 0, slots: 4 } });
  });

  it("a greedy completion is `moec run`'s text, with usage and finish_reason", async () => {
    // Run asynchronously: the server lives in this process and must keep answering.
    const run = await promisify(execFile)(
      process.execPath,
      [
        "bin/moec.js",
        "run",
        GGUF,
        "-p",
        "Once upon a time",
        "-n",
        "12",
        "--temperature",
        "0",
        "--threads",
        "1",
        "--json",
      ],
      { encoding: "utf8", timeout: 60_000 },
    );
    const want = JSON.parse(run.stdout) as { text: string; tokens: number[] };
    const c = await client.completions.create({
      model: "stories",
      prompt: "Once upon a time",
      max_tokens: 12,
      temperature: 0,
    });
    expect(c.object).toBe("text_completion");
    expect(c.choices[0]).toMatchObject({ index: 0, text: want.text, finish_reason: "length" });
    expect(c.usage).toEqual({ prompt_tokens: 5, completion_tokens: 12, total_tokens: 17 });
    // A stop string ends it with "stop"; unknown fields are ignored, as OpenAI ignores them.
    const cut = await client.completions.create({
      model: "stories",
      prompt: "Once upon a time",
      max_tokens: 12,
      temperature: 0,
      stop: ["girl"],
      user: "someone",
      frequency_penalty: 0,
    });
    expect(cut.choices[0]).toMatchObject({ text: ", there was a little ", finish_reason: "stop" });
  }, 60_000);

  it("streams a chat as server-sent events, ending with usage and [DONE]", async () => {
    const messages = [
      { role: "system" as const, content: "Be kind." },
      { role: "user" as const, content: "Once upon a time" },
    ];
    const whole = await client.chat.completions.create({
      model: "stories",
      messages,
      max_completion_tokens: 10,
      temperature: 0,
    });
    expect(whole.choices[0]!.message.role).toBe("assistant");
    expect(whole.choices[0]!.finish_reason).toBe("length");
    // The reply is the template's rendering completed (its leading space trimmed, as a message).
    const rendered = await model.complete("<system>Be kind.\n<user>Once upon a time\n", {
      maxTokens: 10,
      temperature: 0,
    });
    expect(whole.choices[0]!.message.content).toBe(rendered.text.trimStart());

    const stream = await client.chat.completions.create({
      model: "stories",
      messages,
      max_tokens: 10,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    const finishes: (string | null)[] = [];
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      expect(chunk.object).toBe("chat.completion.chunk");
      if (chunk.usage) usage = chunk.usage;
      for (const ch of chunk.choices) {
        text += ch.delta.content ?? "";
        finishes.push(ch.finish_reason);
      }
    }
    expect(text).toBe(whole.choices[0]!.message.content);
    expect(finishes.at(-1)).toBe("length");
    expect(usage).toEqual(whole.usage);
    // On the wire: the last event is [DONE].
    const res = await raw("/v1/chat/completions", {
      method: "POST",
      body: JSON.stringify({ messages, max_tokens: 3, stream: true }),
    });
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    expect((await res.text()).trimEnd().endsWith("data: [DONE]")).toBe(true);
  });

  it("8 concurrent requests (4 slots, 4 waiting) each get their answer alone", async () => {
    const prompts = [
      "Once upon a time",
      "The cat",
      "Lily had",
      "Tom saw",
      "One day",
      "The sun",
      "A dog",
      "Mom said",
    ];
    const ask = (prompt: string) =>
      client.completions
        .create({ model: "stories", prompt, max_tokens: 10, temperature: 0 })
        .then((c) => c.choices[0]!.text);
    const alone: string[] = [];
    for (const p of prompts) alone.push(await ask(p));
    expect(await Promise.all(prompts.map(ask))).toEqual(alone);
    expect(await idle()).toMatchObject({ active: 0, waiting: 0 });
  });

  it("a client aborting mid-stream cancels its generation and frees its slot", async () => {
    const ac = new AbortController();
    const stream = await client.completions.create(
      { model: "stories", prompt: "Once upon a time", max_tokens: 1500, temperature: 0, stream: true },
      { signal: ac.signal },
    );
    let chunks = 0;
    try {
      for await (const _ of stream) if (++chunks === 3) ac.abort();
    } catch {
      // the client may end the loop or throw its APIUserAbortError: either way it has gone
    }
    expect(chunks).toBe(3);
    expect(await idle()).toMatchObject({ active: 0, waiting: 0 });
    await new Promise((r) => setTimeout(r, 50));
    const line = logs.find((l) => l.includes("(client gone)"));
    expect(line).toMatch(
      /^POST \/v1\/completions 200 \(client gone\) 5 prompt \+ \d+ generated tokens \d+ ms$/,
    );
    expect(Number(/\+ (\d+) generated/.exec(line!)![1])).toBeLessThan(1500);
  });
});

describe("bad requests: status and OpenAI's error shape", () => {
  const expectError = async (res: Response, status: number, match: RegExp, param?: string) => {
    expect(res.status).toBe(status);
    const body = (await res.json()) as { error: { message: string; type: string; param: string | null } };
    expect(body.error.message).toMatch(match);
    expect(typeof body.error.type).toBe("string");
    if (param !== undefined) expect(body.error.param).toBe(param);
  };
  const post = (path: string, body: unknown) => raw(path, { method: "POST", body: JSON.stringify(body) });

  it("400: malformed JSON, wrong types and values, a prompt over the context with the numbers", async () => {
    await expectError(
      await raw("/v1/completions", { method: "POST", body: '{"prompt": "x"' }),
      400,
      /not valid JSON/,
    );
    await expectError(await post("/v1/completions", []), 400, /body: expected a JSON object, found array/);
    await expectError(
      await post("/v1/completions", { prompt: 3 }),
      400,
      /prompt: expected a string/,
      "prompt",
    );
    await expectError(
      await post("/v1/completions", { prompt: "x", max_tokens: "3" }),
      400,
      /max_tokens: expected a number, found string/,
      "max_tokens",
    );
    await expectError(
      await post("/v1/completions", { prompt: "x", temperature: 3 }),
      400,
      /temperature: expected at most 2, found 3/,
      "temperature",
    );
    await expectError(
      await post("/v1/completions", { prompt: "x", n: 2 }),
      400,
      /n: moec generates one choice/,
      "n",
    );
    await expectError(
      await post("/v1/completions", { prompt: "x", stream: "yes" }),
      400,
      /stream: expected true or false/,
      "stream",
    );
    await expectError(
      await post("/v1/chat/completions", { messages: "hi" }),
      400,
      /messages: expected an array/,
      "messages",
    );
    await expectError(
      await post("/v1/chat/completions", { messages: [{ role: "robot", content: "x" }] }),
      400,
      /messages\[0\]\.role/,
      "messages[0].role",
    );
    await expectError(
      await post("/v1/completions", { prompt: [1, 9999] }),
      400,
      /prompt\[1\]: 9999 is not a token id \(0 to 511\)/,
    );
    await expectError(
      await post("/v1/completions", { prompt: Array.from({ length: 2100 }, () => 300) }),
      400,
      /the prompt is 2100 tokens but the context holds 2048/,
      "prompt",
    );
    // The openai client surfaces them as its BadRequestError.
    await expect(
      client.chat.completions.create({
        model: "stories",
        messages: [{ role: "user", content: "x".repeat(70_000) }],
      }),
    ).rejects.toThrow(/413|over the 65536-byte limit/);
    await expect(
      client.completions.create({ model: "stories", prompt: "x", top_p: -1 }),
    ).rejects.toBeInstanceOf(OpenAI.BadRequestError);
  });

  it("401 without the key, 404, 405, 413 over the body limit", async () => {
    const bad = new OpenAI({ baseURL: `${base}/v1`, apiKey: "wrong", maxRetries: 0 });
    await expect(bad.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    await expectError(await fetch(`${base}/v1/models`), 401, /API key/);
    expect((await fetch(`${base}/health`)).status).toBe(200);
    await expectError(
      await raw("/v1/embeddings", { method: "POST", body: "{}" }),
      404,
      /no route POST \/v1\/embeddings/,
    );
    await expectError(await raw("/v1/completions"), 405, /takes POST, not GET/);
    await expectError(
      await post("/v1/completions", { prompt: "x".repeat(70_000) }),
      413,
      /over the 65536-byte limit/,
    );
  });

  it("503 when every slot is busy and the queue is full", async () => {
    const ac = new AbortController();
    const long = Array.from({ length: 8 }, () =>
      client.completions
        .create({ model: "stories", prompt: "Once", max_tokens: 1500, stream: true }, { signal: ac.signal })
        .then(async (s) => {
          for await (const _ of s);
        })
        .catch(() => {}),
    );
    for (let i = 0; i < 100 && model.load.active + model.load.waiting < 8; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(model.load).toMatchObject({ active: 4, waiting: 4 });
    await expectError(
      await post("/v1/completions", { prompt: "x" }),
      503,
      /all 4 sequence slots are busy and 4 requests/,
    );
    ac.abort();
    await Promise.all(long);
    expect(await idle()).toMatchObject({ active: 0, waiting: 0 });
  });
});
