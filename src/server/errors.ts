// Errors the HTTP API returns, in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
// Every failure a client can cause is mapped to a 4xx here with the offending field named, so the
// 5xx range is left for genuine server faults.

/** OpenAI's error `type` strings, as its API and vLLM use them. */
export type ApiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error';

export interface OpenAIErrorBody {
  error: { message: string; type: ApiErrorType; param: string | null; code: string | number | null };
}

/** A failure with an HTTP status, thrown anywhere in a route and rendered by the error handler. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType = status >= 500 ? 'server_error' : 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | number | null = null,
    /** Extra response headers (Retry-After on 429). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 naming the parameter that was wrong. */
export function invalidParam(param: string, message: string): ApiError {
  return new ApiError(400, message, 'invalid_request_error', param, 'invalid_parameter');
}
