// Turns an OpenAI request body (already type-checked by schemas.ts) into what the engine runs:
// prompts as token ids and one resolved SamplingParams. Every rejection names the HTTP field, so a
// client sees `param: "top_p"`, never the library's `topP`.
import type { SamplingParams } from '../engine/types.js';
import { resolveSamplingParams } from '../engine/sampling-params.js';
import type { Tokenizer } from '../model/tokenizer-types.js';
import { invalidParam } from './errors.js';
import { parseStructuredOutputs, type RequestedConstraint, type StructuredBody } from './structured-params.js';
import type { ToolPlan } from './tools/tool-answer.js';
import type { ToolCallParser } from './tools/tool-parsers.js';
import { parseToolRequest, toolConstraint, type ToolBody } from './tools/tool-request.js';

/** What request parsing needs to know about the served model. */
export interface ModelLimits {
  tokenizer: Tokenizer | null;
  vocabSize: number;
  /** Prompt plus generated tokens may not exceed this. */
  maxModelLen: number;
}

/** Fields common to both endpoints, as they arrive over HTTP (snake_case, nullable). */
export interface SamplingBody extends StructuredBody {
  model?: string | null;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  n?: number | null;
  seed?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  repetition_penalty?: number | null;
  ignore_eos?: boolean | null;
  min_tokens?: number | null;
  stop_token_ids?: number[] | null;
  priority?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null } | null;
  stop?: unknown;
  logit_bias?: Record<string, unknown> | null;
  speculative?: boolean | null;
}

export interface CompletionBody extends SamplingBody {
  prompt: unknown;
  logprobs?: number | null;
  echo?: boolean | null;
  best_of?: number | null;
  suffix?: string | null;
}

export interface ChatBody extends SamplingBody, ToolBody {
  messages: unknown[];
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  /** Extra chat-template variables (vLLM's extension), e.g. { enable_thinking: false }. */
  chat_template_kwargs?: Record<string, unknown> | null;
}

/** A request ready for the engine. */
export interface GenerationPlan {
  /** One engine request per prompt (completions may batch several prompts). */
  prompts: number[][];
  sampling: SamplingParams;
  priority?: number;
  stream: boolean;
  includeUsage: boolean;
  /** The HTTP field the output constraint came from (errors compiling it name this field). */
  constraintParam?: string;
  /** Chat requests with tools: how answers are read for tool calls. */
  tools?: ToolPlan;
}

/** Library field name -> HTTP field name, for errors raised by resolveSamplingParams. */
const HTTP_NAME: Record<string, string> = {
  maxTokens: 'max_tokens',
  temperature: 'temperature',
  topK: 'top_k',
  topP: 'top_p',
  minP: 'min_p',
  presencePenalty: 'presence_penalty',
  frequencyPenalty: 'frequency_penalty',
  repetitionPenalty: 'repetition_penalty',
  stopTokenIds: 'stop_token_ids',
  stop: 'stop',
  ignoreEos: 'ignore_eos',
  minTokens: 'min_tokens',
  logprobs: 'logprobs',
  seed: 'seed',
  n: 'n',
};

const MAX_STOP_STRINGS = 16;
const MAX_STOP_LENGTH = 256;

function parseStop(stop: unknown): string[] {
  if (stop === undefined || stop === null) return [];
  const list = typeof stop === 'string' ? [stop] : stop;
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) {
    throw invalidParam('stop', "'stop' must be a string or an array of strings");
  }
  if (list.length > MAX_STOP_STRINGS) throw invalidParam('stop', `'stop' may hold at most ${MAX_STOP_STRINGS} strings, got ${list.length}`);
  for (const s of list) {
    if (s.length === 0) throw invalidParam('stop', "'stop' strings must not be empty");
    if (s.length > MAX_STOP_LENGTH) throw invalidParam('stop', `'stop' strings may be at most ${MAX_STOP_LENGTH} characters long`);
  }
  return list as string[];
}

function checkTokenIds(ids: readonly number[], vocabSize: number, param: string): void {
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw invalidParam(param, `'${param}' holds token id ${JSON.stringify(id)}, outside the vocabulary [0, ${vocabSize})`);
    }
  }
}

/** The prompts of a completions request: a string, strings, token ids, or arrays of token ids. */
export function parseCompletionPrompts(prompt: unknown, limits: ModelLimits): number[][] {
  const isIdList = (x: unknown): x is number[] => Array.isArray(x) && x.length > 0 && x.every((t) => typeof t === 'number');
  let prompts: Array<string | number[]>;
  if (typeof prompt === 'string') prompts = [prompt];
  else if (isIdList(prompt)) prompts = [prompt];
  else if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((p) => typeof p === 'string')) prompts = prompt as string[];
  else if (Array.isArray(prompt) && prompt.length > 0 && prompt.every(isIdList)) prompts = prompt as number[][];
  else {
    throw invalidParam(
      'prompt',
      "'prompt' must be a string, a non-empty array of strings, a non-empty array of token ids, or an array of non-empty token id arrays",
    );
  }
  if (prompts.length > 64) throw invalidParam('prompt', `'prompt' may hold at most 64 prompts, got ${prompts.length}`);
  return prompts.map((p) => {
    if (typeof p !== 'string') {
      checkTokenIds(p, limits.vocabSize, 'prompt');
      return [...p];
    }
    if (!limits.tokenizer) throw invalidParam('prompt', 'this model has no tokenizer: send the prompt as token ids');
    const ids = limits.tokenizer.encode(p);
    if (ids.length === 0) throw invalidParam('prompt', "'prompt' encodes to no tokens");
    return ids;
  });
}

/** Maps the shared sampling fields onto resolved SamplingParams, checking the context fits. */
export function buildSampling(
  body: SamplingBody,
  opts: {
    maxTokens: number | null | undefined;
    /** The field max_tokens came from ('max_tokens' or chat's 'max_completion_tokens'). */
    maxTokensParam: string;
    logprobs: number | null;
    promptLens: number[];
    limits: ModelLimits;
    promptParam: string;
    constraint?: RequestedConstraint;
  },
): SamplingParams {
  if (body.logit_bias && Object.keys(body.logit_bias).length > 0) throw invalidParam('logit_bias', "'logit_bias' is not supported");
  if (body.stop_token_ids) checkTokenIds(body.stop_token_ids, opts.limits.vocabSize, 'stop_token_ids');
  const { maxModelLen } = opts.limits;
  const longest = Math.max(...opts.promptLens);
  if (longest >= maxModelLen) {
    throw invalidParam(
      opts.promptParam,
      `This model's maximum context length is ${maxModelLen} tokens. However, your prompt is ${longest} tokens, leaving no room to generate`,
    );
  }
  // Without max_tokens, generate until the context is full (vLLM's behaviour).
  const maxTokens = opts.maxTokens ?? maxModelLen - longest;
  if (longest + maxTokens > maxModelLen) {
    throw invalidParam(
      opts.maxTokensParam,
      `This model's maximum context length is ${maxModelLen} tokens. However, you requested ${longest + maxTokens} tokens ` +
        `(${longest} in the prompt, ${maxTokens} in the completion). Please reduce the prompt or max_tokens`,
    );
  }
  const partial: Partial<SamplingParams> = { maxTokens, stop: parseStop(body.stop), logprobs: opts.logprobs };
  if (body.temperature != null) partial.temperature = body.temperature;
  if (body.top_p != null) partial.topP = body.top_p;
  if (body.top_k != null) partial.topK = body.top_k;
  if (body.min_p != null) partial.minP = body.min_p;
  if (body.n != null) partial.n = body.n;
  if (body.seed != null) partial.seed = body.seed;
  if (body.presence_penalty != null) partial.presencePenalty = body.presence_penalty;
  if (body.frequency_penalty != null) partial.frequencyPenalty = body.frequency_penalty;
  if (body.repetition_penalty != null) partial.repetitionPenalty = body.repetition_penalty;
  if (body.ignore_eos != null) partial.ignoreEos = body.ignore_eos;
  if (body.min_tokens != null) partial.minTokens = body.min_tokens;
  if (body.stop_token_ids != null) partial.stopTokenIds = [...body.stop_token_ids];
  if (body.speculative != null) partial.speculative = body.speculative;
  if (opts.constraint) partial.structuredOutputs = opts.constraint.params;
  if (partial.minTokens !== undefined && partial.minTokens > maxTokens) {
    throw invalidParam('min_tokens', `'min_tokens' (${partial.minTokens}) must not exceed ${opts.maxTokensParam} (${maxTokens})`);
  }
  try {
    return resolveSamplingParams(partial);
  } catch (e) {
    const param = (e as { param?: unknown }).param;
    if (typeof param !== 'string') throw e;
    const httpName = param === 'maxTokens' ? opts.maxTokensParam : param.startsWith('structuredOutputs') ? (opts.constraint?.param ?? param) : (HTTP_NAME[param] ?? param);
    // The library words its messages with its own field names; speak the client's.
    throw invalidParam(httpName, (e as Error).message.replace(new RegExp(`\\b${param}\\b`, 'g'), httpName));
  }
}

/** stream / stream_options, with OpenAI's rule that stream_options needs stream. */
export function parseStreaming(body: SamplingBody): { stream: boolean; includeUsage: boolean } {
  const stream = body.stream === true;
  if (body.stream_options != null && !stream) {
    throw invalidParam('stream_options', "'stream_options' is only allowed when 'stream' is true");
  }
  return { stream, includeUsage: stream && body.stream_options?.include_usage === true };
}

export function planCompletion(body: CompletionBody, limits: ModelLimits): GenerationPlan {
  if (body.echo) throw invalidParam('echo', "'echo' is not supported");
  if (body.suffix) throw invalidParam('suffix', "'suffix' is not supported");
  if (body.best_of != null && body.best_of !== (body.n ?? 1)) throw invalidParam('best_of', "'best_of' other than n is not supported");
  const prompts = parseCompletionPrompts(body.prompt, limits);
  const { stream, includeUsage } = parseStreaming(body);
  const constraint = parseStructuredOutputs(body);
  // OpenAI's completions default is 16 tokens.
  const sampling = buildSampling(body, {
    maxTokens: body.max_tokens ?? 16,
    maxTokensParam: 'max_tokens',
    logprobs: body.logprobs ?? null,
    promptLens: prompts.map((p) => p.length),
    limits,
    promptParam: 'prompt',
    constraint,
  });
  return { prompts, sampling, priority: body.priority ?? undefined, stream, includeUsage, constraintParam: constraint?.param };
}

export function planChat(body: ChatBody, promptIds: number[], limits: ModelLimits, toolParser?: ToolCallParser): GenerationPlan {
  if (body.top_logprobs != null && body.logprobs !== true) {
    throw invalidParam('top_logprobs', "'top_logprobs' needs 'logprobs' set to true");
  }
  const { stream, includeUsage } = parseStreaming(body);
  const toolRequest = parseToolRequest(body);
  let constraint = parseStructuredOutputs(body);
  const forced = toolRequest ? toolConstraint(toolRequest) : undefined;
  if (forced) {
    if (constraint) throw invalidParam(constraint.param, `'${constraint.param}' cannot be combined with tool_choice 'required' or a named function`);
    constraint = { params: forced, param: 'tools' };
  }
  const sampling = buildSampling(body, {
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined,
    maxTokensParam: body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens',
    logprobs: body.logprobs === true ? (body.top_logprobs ?? 0) : null,
    promptLens: [promptIds.length],
    limits,
    promptParam: 'messages',
    constraint,
  });
  return {
    prompts: [promptIds],
    sampling,
    priority: body.priority ?? undefined,
    stream,
    includeUsage,
    constraintParam: constraint?.param,
    ...(toolRequest ? { tools: { request: toolRequest, ...(toolParser ? { parser: toolParser } : {}) } } : {}),
  };
}
