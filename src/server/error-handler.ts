// Turns whatever a route or Fastify itself threw into an OpenAI-style error body. Client mistakes keep
// their 4xx status (with the offending field named where one is known); only faults of ours are 500.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, type ApiErrorType } from './errors.js';

interface AjvError {
  instancePath?: string;
  keyword?: string;
  params?: Record<string, unknown>;
  message?: string;
}

/** "/stop_token_ids/3" -> "stop_token_ids[3]"; "/stream_options/include_usage" -> "stream_options.include_usage". */
function paramFromPath(path: string): string | null {
  const parts = path.split('/').filter((p) => p !== '');
  if (parts.length === 0) return null;
  return parts.map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

/** A 400 from a schema validation failure, naming the field. */
export function validationError(errors: AjvError[]): ApiError {
  const e = errors[0] ?? {};
  let param = paramFromPath(e.instancePath ?? '');
  if (e.keyword === 'required' && typeof e.params?.missingProperty === 'string') {
    const missing = e.params.missingProperty;
    param = param ? `${param}.${missing}` : missing;
    return new ApiError(400, `'${param}' is required`, 'invalid_request_error', param, 'missing_required_parameter');
  }
  const what = (e.message ?? 'is invalid').replace(/must be ([a-z]+),null$/, 'must be $1 or null');
  if (param === null) return new ApiError(400, `the request body ${what}`, 'invalid_request_error', null, 'invalid_request_body');
  return new ApiError(400, `'${param}' ${what}`, 'invalid_request_error', param, 'invalid_parameter');
}

const TYPE_OF_STATUS: Record<number, ApiErrorType> = {
  401: 'authentication_error',
  404: 'not_found_error',
  429: 'rate_limit_error',
};

export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const fe = err as FastifyError;
  if (Array.isArray(fe?.validation)) return validationError(fe.validation as AjvError[]);
  const status = typeof fe?.statusCode === 'number' ? fe.statusCode : 500;
  if (status >= 400 && status < 500) {
    // Fastify's own client errors: bad JSON, body too large, wrong content type, bad URL...
    const message = fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError ? `invalid JSON in the request body: ${fe.message}` : fe.message;
    return new ApiError(status, message, TYPE_OF_STATUS[status] ?? 'invalid_request_error', null, fe.code ?? null);
  }
  return new ApiError(500, `internal server error: ${fe?.message ?? String(err)}`, 'server_error', null, null);
}

export function errorHandler(this: unknown, err: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const api = toApiError(err);
  if (api.status >= 500) request.log.error({ err }, 'request failed');
  void reply.code(api.status).headers(api.headers).send(api.body());
}
