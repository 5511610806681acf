// An HTTP error in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with its status, so
// OpenAI's clients raise their own typed errors (BadRequestError, AuthenticationError, …) for it.

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  get type(): string {
    if (this.status === 401) return "authentication_error";
    if (this.status === 404) return "not_found_error";
    if (this.status === 429 || this.status === 503) return "server_overloaded";
    return this.status >= 500 ? "server_error" : "invalid_request_error";
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 for a request field: `param` names it as the request spells it (`max_tokens`, `messages[1].role`). */
export const badField = (param: string, message: string) =>
  new HttpError(400, `${param}: ${message}`, param, "invalid_value");
