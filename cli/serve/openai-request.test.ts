// OpenAI request bodies into the library's options: the forms clients send, the defaults, and a 400
// naming the field for each wrong type or value.
import { describe, expect, it } from "vitest";
import { HttpError } from "./http-error.ts";
import { COMPLETIONS_DEFAULT_MAX, parseChat, parseCompletion } from "./openai-request.ts";

const fails = (f: () => unknown, param: string, message: RegExp) => {
  let e: unknown;
  try {
    f();
  } catch (thrown) {
    e = thrown;
  }
  expect(e).toBeInstanceOf(HttpError);
  expect((e as HttpError).status).toBe(400);
  expect((e as HttpError).param).toBe(param);
  expect((e as HttpError).message).toMatch(message);
};

describe("parseChat", () => {
  it("reads messages (developer as system, text parts joined), sampling fields and stream options", () => {
    const r = parseChat(
      {
        model: "any",
        messages: [
          { role: "developer", content: "Be brief." },
          {
            role: "user",
            content: [
              { type: "text", text: "Hi " },
              { type: "text", text: "there" },
            ],
          },
        ],
        max_completion_tokens: 9,
        max_tokens: 3,
        temperature: 0,
        top_p: 0.5,
        seed: 4,
        stop: "\n",
        stream: true,
        stream_options: { include_usage: true },
        logit_bias: {},
      },
      2048,
    );
    expect(r.messages).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hi there" },
    ]);
    // max_completion_tokens is the newer name and wins.
    expect(r.generate).toEqual({ maxTokens: 9, temperature: 0, topP: 0.5, seed: 4, stop: ["\n"] });
    expect([r.stream, r.includeUsage]).toEqual([true, true]);
  });

  it("a reply without max_tokens may run to the context's end", () => {
    expect(parseChat({ messages: [{ role: "user", content: "x" }] }, 100).generate).toEqual({
      maxTokens: 100,
    });
  });

  it("names the field that is wrong", () => {
    fails(() => parseChat("x", 10), "body", /expected a JSON object, found string/);
    fails(() => parseChat({ messages: [] }, 10), "messages", /at least one message/);
    fails(
      () => parseChat({ messages: [{ role: "user", content: 1 }] }, 10),
      "messages[0].content",
      /found number/,
    );
    fails(
      () => parseChat({ messages: [{ role: "user", content: [{ type: "image_url" }] }] }, 10),
      "messages[0].content[0]",
      /text parts/,
    );
    const m = [{ role: "user", content: "x" }];
    fails(() => parseChat({ messages: m, max_tokens: 0 }, 10), "max_tokens", /at least 1, found 0/);
    fails(() => parseChat({ messages: m, seed: 1.5 }, 10), "seed", /whole number, found 1.5/);
    fails(() => parseChat({ messages: m, top_p: 0 }, 10), "top_p", /more than 0/);
    fails(() => parseChat({ messages: m, stop: [1] }, 10), "stop", /a string or an array of strings/);
    fails(() => parseChat({ messages: m, stop: ["a", "b", "c", "d", "e"] }, 10), "stop", /at most 4/);
    fails(
      () => parseChat({ messages: m, stream_options: { include_usage: 1 } }, 10),
      "include_usage",
      /true or false/,
    );
  });
});

describe("parseCompletion", () => {
  it("takes a string, token ids, or a one-element list of either; max_tokens defaults to OpenAI's 16", () => {
    expect(parseCompletion({ prompt: "Once" }, 2048)).toMatchObject({
      prompt: "Once",
      generate: { maxTokens: COMPLETIONS_DEFAULT_MAX },
      stream: false,
    });
    expect(parseCompletion({ prompt: [1, 2] }, 2048).prompt).toEqual([1, 2]);
    expect(parseCompletion({ prompt: ["Once"] }, 2048).prompt).toBe("Once");
    expect(parseCompletion({ prompt: [[1, 2]] }, 2048).prompt).toEqual([1, 2]);
  });

  it("refuses several prompts and what moec does not do", () => {
    fails(() => parseCompletion({ prompt: ["a", "b"] }, 10), "prompt", /one prompt per request, found 2/);
    fails(() => parseCompletion({}, 10), "prompt", /found undefined/);
    fails(() => parseCompletion({ prompt: "x", n: 3 }, 10), "n", /one choice/);
    fails(() => parseCompletion({ prompt: "x", echo: true }, 10), "echo", /not supported/);
    fails(() => parseCompletion({ prompt: "x", logprobs: 2 }, 10), "logprobs", /not supported/);
  });
});
