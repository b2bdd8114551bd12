// Why the engine refused a request. Each is an Error subclass with a message that names what was
// wrong, so the server can map it to an HTTP status and the CLI can print it as is.

/** The waiting queue is at max_queue: the request was rejected instead of queued (HTTP 429/503). */
export class QueueFullError extends Error {
  constructor(readonly maxQueue: number) {
    super(`request queue is full: ${maxQueue} requests are already waiting (max_queue ${maxQueue}); retry later`);
    this.name = 'QueueFullError';
  }
}

/** The prompt, or the prompt plus max_tokens, does not fit the model length or the KV cache. */
export class PromptTooLongError extends Error {
  constructor(
    message: string,
    readonly numPromptTokens: number,
    readonly maxTokens: number,
    readonly limit: number,
  ) {
    super(message);
    this.name = 'PromptTooLongError';
  }
}

/** A request that is malformed in some other way (empty prompt, duplicate id, bad priority...). */
export class InvalidRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidRequestError';
  }
}

/** The engine (or the LLM around it) was closed; no further requests are accepted. */
export class EngineClosedError extends Error {
  constructor(message = 'engine is closed') {
    super(message);
    this.name = 'EngineClosedError';
  }
}

/** A sampling parameter out of range or of the wrong type; `param` is its (library) name. */
export class InvalidParamError extends Error {
  readonly param: string;
  constructor(param: string, message: string) {
    super(message);
    this.name = 'InvalidParamError';
    this.param = param;
  }
}
