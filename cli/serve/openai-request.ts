// The request bodies of /v1/chat/completions and /v1/completions, checked field by field into the
// library's options: a wrong type or value is a 400 naming the field; fields moec does not know are
// ignored, as OpenAI ignores them. Sampling defaults are `moec run`'s (as llama-server's are its own).
import type { ChatMessage, GenerateOptions } from "../../api/index.ts";
import { badField } from "./http-error.ts";

export interface ParsedRequest {
  generate: GenerateOptions;
  stream: boolean;
  includeUsage: boolean;
}

export interface ParsedChat extends ParsedRequest {
  messages: ChatMessage[];
}

export interface ParsedCompletion extends ParsedRequest {
  prompt: string | number[];
}

type Body = Record<string, unknown>;

const typeName = (v: unknown) => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);

function object(v: unknown): Body {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw badField("body", `expected a JSON object, found ${typeName(v)}`);
  }
  return v as Body;
}

function num(
  b: Body,
  key: string,
  rule: { integer?: boolean; min?: number; max?: number } = {},
): number | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v))
    throw badField(key, `expected a number, found ${typeName(v)}`);
  if (rule.integer && !Number.isInteger(v)) throw badField(key, `expected a whole number, found ${v}`);
  if (rule.min !== undefined && v < rule.min)
    throw badField(key, `expected at least ${rule.min}, found ${v}`);
  if (rule.max !== undefined && v > rule.max) throw badField(key, `expected at most ${rule.max}, found ${v}`);
  return v;
}

function bool(b: Body, key: string): boolean | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw badField(key, `expected true or false, found ${typeName(v)}`);
  return v;
}

function stops(b: Body): string[] | undefined {
  const v = b.stop;
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return [v];
  if (Array.isArray(v) && v.every((s) => typeof s === "string")) {
    if (v.length > 4) throw badField("stop", `at most 4 stop strings, found ${v.length}`);
    return v as string[];
  }
  throw badField("stop", `expected a string or an array of strings, found ${typeName(v)}`);
}

/** The fields both endpoints share. `defaultMax`: max_tokens when the request gives none. */
function common(b: Body, defaultMax: number, contextLength: number): ParsedRequest {
  const n = num(b, "n", { integer: true });
  if (n !== undefined && n !== 1) throw badField("n", `moec generates one choice per request, found ${n}`);
  const max =
    num(b, "max_completion_tokens", { integer: true, min: 1 }) ??
    num(b, "max_tokens", { integer: true, min: 1 });
  const streamOptions = b.stream_options;
  if (streamOptions !== undefined && streamOptions !== null) object(streamOptions);
  const includeUsage = streamOptions ? bool(streamOptions as Body, "include_usage") : undefined;
  const generate: GenerateOptions = {
    // A reply runs until its end token or the context's end unless capped.
    maxTokens: max ?? defaultMax ?? contextLength,
    temperature: num(b, "temperature", { min: 0, max: 2 }),
    topP: num(b, "top_p", { min: 0, max: 1 }),
    topK: num(b, "top_k", { integer: true, min: 0 }),
    minP: num(b, "min_p", { min: 0, max: 1 }),
    repeatPenalty: num(b, "repeat_penalty", { min: 0 }),
    seed: num(b, "seed", { integer: true }),
    stop: stops(b),
  };
  if (generate.topP === 0) throw badField("top_p", "expected more than 0, found 0");
  if (generate.minP === 1) throw badField("min_p", "expected less than 1, found 1");
  if (generate.repeatPenalty === 0) throw badField("repeat_penalty", "expected more than 0, found 0");
  for (const k of Object.keys(generate) as (keyof GenerateOptions)[])
    if (generate[k] === undefined) delete generate[k];
  return { generate, stream: bool(b, "stream") ?? false, includeUsage: includeUsage ?? false };
}

/** A message's content: a string, or OpenAI's array of parts of which moec reads the text ones. */
function content(v: unknown, at: string): string {
  if (typeof v === "string") return v;
  if (Array.isArray(v)) {
    return v
      .map((part, i) => {
        const p = object(part);
        if (p.type !== "text" || typeof p.text !== "string") {
          throw badField(
            `${at}[${i}]`,
            `moec reads text parts ({"type": "text", "text": "…"}), found type ${JSON.stringify(p.type)}`,
          );
        }
        return p.text;
      })
      .join("");
  }
  throw badField(at, `expected a string or an array of text parts, found ${typeName(v)}`);
}

const ROLES = new Set(["system", "developer", "user", "assistant"]);

export function parseChat(body: unknown, contextLength: number): ParsedChat {
  const b = object(body);
  if (!Array.isArray(b.messages))
    throw badField("messages", `expected an array of messages, found ${typeName(b.messages)}`);
  if (b.messages.length === 0) throw badField("messages", "expected at least one message");
  const messages = b.messages.map((m, i): ChatMessage => {
    const at = `messages[${i}]`;
    const o = object(m);
    if (typeof o.role !== "string" || !ROLES.has(o.role)) {
      throw badField(
        `${at}.role`,
        `expected system, developer, user or assistant, found ${JSON.stringify(o.role)}`,
      );
    }
    // OpenAI's "developer" is the newer name of the system message.
    const role = o.role === "developer" ? "system" : (o.role as ChatMessage["role"]);
    return { role, content: content(o.content, `${at}.content`) };
  });
  return { ...common(b, contextLength, contextLength), messages };
}

/** OpenAI's default max_tokens for /v1/completions. */
export const COMPLETIONS_DEFAULT_MAX = 16;

export function parseCompletion(body: unknown, contextLength: number): ParsedCompletion {
  const b = object(body);
  let prompt: string | number[];
  const p = b.prompt;
  if (typeof p === "string") prompt = p;
  else if (Array.isArray(p) && p.length > 0 && p.every((t) => Number.isInteger(t))) prompt = p as number[];
  else if (Array.isArray(p) && p.length === 1 && typeof p[0] === "string") prompt = p[0];
  else if (
    Array.isArray(p) &&
    p.length === 1 &&
    Array.isArray(p[0]) &&
    p[0].every((t: unknown) => Number.isInteger(t))
  )
    prompt = p[0] as number[];
  else if (Array.isArray(p) && p.length > 1)
    throw badField("prompt", `moec completes one prompt per request, found ${p.length}`);
  else throw badField("prompt", `expected a string or an array of token ids, found ${typeName(p)}`);
  for (const k of ["echo", "logprobs", "suffix", "best_of"]) {
    const v = b[k];
    if (v !== undefined && v !== null && v !== false && !(k === "best_of" && v === 1)) {
      throw badField(k, "is not supported by moec serve");
    }
  }
  return { ...common(b, COMPLETIONS_DEFAULT_MAX, contextLength), prompt };
}
