// Runs a planned generation and answers it, whole or as a server-sent event stream, for both
// /v1/completions and /v1/chat/completions (they differ only in how a choice is spelled).
import { randomUUID } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import type { LLM } from '../llm.js';
import type { RequestOutput } from '../engine/types.js';
import { ApiError, invalidParam } from './errors.js';
import { InvalidParamError } from '../engine/request-errors.js';
import { StructuredOutputUnavailableError } from '../engine/structured/structured-output-manager.js';
import { Generation } from './generation.js';
import type { ServerMetrics } from './metrics.js';
import type { LiveRequests } from './live-requests.js';
import {
  apiFinishReason,
  chatLogprobs,
  completionLogprobs,
  unixSeconds,
  usage,
  type ApiFinishReason,
  type TokenLogprobEntry,
  type TokenTexts,
} from './openai-format.js';
import type { GenerationPlan } from './request-params.js';
import { SseWriter } from './sse.js';
import { ToolAnswer, type FinishedToolAnswer } from './tools/tool-answer.js';

/** What the routes share: the model, its public name, metrics, and the set of live generations. */
export interface ServeContext {
  llm: LLM;
  modelName: string;
  metrics: ServerMetrics;
  /** Text and bytes of single tokens, for logprobs. */
  tokenTexts: TokenTexts;
  /** Live generations, so shutdown can wait for them (and abort them after the drain timeout). */
  active: Set<Generation>;
  /** Arrival and finish steps of recent requests, for the live view. */
  live: LiveRequests;
}

export type Endpoint = 'completion' | 'chat';

export interface RespondOptions {
  endpoint: Endpoint;
  /** Report logprobs in the response (completions: `logprobs` set; chat: `logprobs: true`). */
  wantLogprobs: boolean;
  /** vLLM extension: include generated token ids in each choice. */
  returnTokenIds: boolean;
  /** Field named by errors about the prompt ('prompt' or 'messages'). */
  promptParam: string;
}

/** Everything generated for one choice so far. */
class Choice {
  text = '';
  tokenIds: number[] = [];
  logprobs: TokenLogprobEntry[] = [];
  /** Where in `text` each logprobs entry's output landed (completions logprobs' text_offset). */
  offsets: number[] = [];
  finishReason: ApiFinishReason | null = null;
  stopReason: string | number | null = null;
  /** Chat with tools: the answer read for tool calls. */
  readonly tools: ToolAnswer | undefined;

  constructor(ctx: ServeContext, plan: GenerationPlan) {
    const t = plan.tools ? new ToolAnswer(plan.tools, ctx.llm.tokenizer) : undefined;
    this.tools = t?.active ? t : undefined;
  }

  /** Adds one output; returns the offset in `text` where its text begins. */
  add(out: RequestOutput): number {
    const start = this.text.length;
    this.text += out.text;
    this.tokenIds.push(...out.newTokenIds);
    for (const e of out.logprobs ?? []) {
      this.logprobs.push(e);
      this.offsets.push(start);
    }
    if (out.finished) {
      this.finishReason = apiFinishReason(out.finishReason);
      this.stopReason = out.stopReason ?? null;
    }
    return start;
  }
}

export async function respond(ctx: ServeContext, reply: FastifyReply, plan: GenerationPlan, opts: RespondOptions): Promise<unknown> {
  const so = plan.sampling.structuredOutputs;
  if (so) {
    // Compiled before anything is sent, so a constraint XGrammar rejects is a 400 naming it.
    try {
      await ctx.llm.compileStructuredOutputs(so);
    } catch (e) {
      const param = plan.constraintParam ?? 'structured_outputs';
      if (e instanceof InvalidParamError) throw invalidParam(param, e.message.replace(/\bstructuredOutputs(\.\w+)?/g, `'${param}'`));
      if (e instanceof StructuredOutputUnavailableError) throw invalidParam(param, e.message);
      throw e;
    }
  }
  const id = `${opts.endpoint === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`;
  const gen = Generation.start(ctx, plan, id, opts.promptParam);
  ctx.active.add(gen);
  try {
    if (plan.stream) {
      await streamResponse(ctx, reply, plan, opts, id, gen);
      return reply;
    }
    return await wholeResponse(ctx, reply, plan, opts, id, gen);
  } finally {
    ctx.active.delete(gen);
  }
}

function choiceIndex(plan: GenerationPlan, promptIndex: number, index: number): number {
  return promptIndex * plan.sampling.n + index;
}

function promptTokenCount(plan: GenerationPlan): number {
  return plan.prompts.reduce((s, p) => s + p.length, 0);
}

async function wholeResponse(ctx: ServeContext, reply: FastifyReply, plan: GenerationPlan, opts: RespondOptions, id: string, gen: Generation) {
  // A client that hangs up while waiting frees its sequences at once.
  if (reply.raw.destroyed) gen.abort();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) gen.abort();
  });
  const choices = new Map<number, Choice>();
  for (let p = 0; p < plan.prompts.length; p++) for (let i = 0; i < plan.sampling.n; i++) choices.set(choiceIndex(plan, p, i), new Choice(ctx, plan));
  try {
    await gen.run(({ promptIndex, out }) => {
      const c = choices.get(choiceIndex(plan, promptIndex, out.index));
      c?.add(out);
      c?.tools?.push(out.newTokenIds, out.text);
    });
  } catch (e) {
    throw new ApiError(500, `generation failed: ${(e as Error)?.message ?? String(e)}`, 'server_error');
  }
  const list = [...choices.entries()].sort((a, b) => a[0] - b[0]);
  const completionTokens = list.reduce((s, [, c]) => s + c.tokenIds.length, 0);
  const common = { id, created: unixSeconds(), model: ctx.modelName };
  const extra = (c: Choice) => ({ stop_reason: c.stopReason, ...(opts.returnTokenIds ? { token_ids: c.tokenIds } : {}) });
  const finish = (c: Choice): ApiFinishReason => c.finishReason ?? 'abort';
  if (opts.endpoint === 'completion') {
    return {
      ...common,
      object: 'text_completion',
      choices: list.map(([index, c]) => ({
        index,
        text: c.text,
        logprobs: opts.wantLogprobs ? completionLogprobs(ctx.tokenTexts, c.logprobs, c.offsets) : null,
        finish_reason: finish(c),
        ...extra(c),
      })),
      usage: usage(promptTokenCount(plan), completionTokens),
    };
  }
  return {
    ...common,
    object: 'chat.completion',
    choices: list.map(([index, c]) => {
      const t = c.tools?.finish();
      return {
        index,
        message: t ? toolMessage(t) : { role: 'assistant', content: c.text },
        logprobs: opts.wantLogprobs ? chatLogprobs(ctx.tokenTexts, c.logprobs) : null,
        finish_reason: toolFinish(finish(c), t),
        ...extra(c),
      };
    }),
    usage: usage(promptTokenCount(plan), completionTokens),
  };
}

async function streamResponse(ctx: ServeContext, reply: FastifyReply, plan: GenerationPlan, opts: RespondOptions, id: string, gen: Generation) {
  reply.hijack();
  const sse = new SseWriter(reply.raw);
  sse.onClose(() => gen.abort());
  sse.open();
  const chat = opts.endpoint === 'chat';
  const base = { id, object: chat ? 'chat.completion.chunk' : 'text_completion', created: unixSeconds(), model: ctx.modelName };
  // With include_usage, every chunk carries `usage: null` and a last chunk carries the totals.
  const usageField = plan.includeUsage ? { usage: null } : {};
  const chunk = (choice: object) => ({ ...base, choices: [choice], ...usageField });
  const choices = new Map<number, Choice>();
  const total = plan.prompts.length * plan.sampling.n;
  for (let i = 0; i < total; i++) choices.set(i, new Choice(ctx, plan));

  if (chat) {
    // The assistant role goes out first, before any token, as OpenAI's stream does.
    for (let i = 0; i < total; i++) await sse.send(chunk({ index: i, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }));
  }
  try {
    await gen.run(async ({ promptIndex, out }) => {
      const index = choiceIndex(plan, promptIndex, out.index);
      const c = choices.get(index);
      if (!c) return;
      const start = c.add(out);
      const entries = out.logprobs ?? [];
      // Text held back (a partial UTF-8 character or a possible stop string) makes no chunk.
      if (out.text === '' && !out.finished && !(opts.wantLogprobs && entries.length > 0)) return;
      const finishReason = out.finished ? apiFinishReason(out.finishReason) : null;
      const ids = opts.returnTokenIds ? { token_ids: out.newTokenIds } : {};
      if (chat && c.tools) {
        await streamToolChunks(c.tools, out, finishReason, (delta, finish, withIds) =>
          sse.send(
            chunk({
              index,
              delta,
              logprobs: opts.wantLogprobs && withIds ? chatLogprobs(ctx.tokenTexts, entries) : null,
              finish_reason: finish,
              ...(withIds ? ids : {}),
            }),
          ),
        );
      } else if (chat) {
        await sse.send(
          chunk({
            index,
            delta: out.text !== '' ? { content: out.text } : {},
            logprobs: opts.wantLogprobs ? chatLogprobs(ctx.tokenTexts, entries) : null,
            finish_reason: finishReason,
            ...ids,
          }),
        );
      } else {
        const logprobs = opts.wantLogprobs ? completionLogprobs(ctx.tokenTexts, entries, entries.map(() => start)) : null;
        await sse.send(chunk({ index, text: out.text, logprobs, finish_reason: finishReason, ...ids }));
      }
    });
  } catch (e) {
    // Headers are long gone: report the failure in-band, as vLLM does, then end the stream normally.
    await sse.send(new ApiError(500, `generation failed: ${(e as Error)?.message ?? String(e)}`, 'server_error').body());
  }
  if (plan.includeUsage) {
    const completionTokens = [...choices.values()].reduce((s, c) => s + c.tokenIds.length, 0);
    await sse.send({ ...base, choices: [], usage: usage(promptTokenCount(plan), completionTokens) });
  }
  await sse.done();
}


/** The assistant message of a chat answer read for tool calls. */
function toolMessage(t: FinishedToolAnswer): Record<string, unknown> {
  return { role: 'assistant', content: t.content, ...(t.toolCalls.length > 0 ? { tool_calls: t.toolCalls } : {}) };
}

/** 'tool_calls' replaces 'stop' when the answer called tools; 'length' and 'abort' stay. */
function toolFinish(reason: ApiFinishReason, t: FinishedToolAnswer | undefined): ApiFinishReason {
  return t?.finishReason && reason === 'stop' ? t.finishReason : reason;
}

/**
 * A step's chunks for a chat choice read for tool calls: content as far as no call may have begun;
 * at the end the held content, then every call (OpenAI's tool_calls deltas, each call whole with its
 * index), then the finish reason.
 */
async function streamToolChunks(
  tools: ToolAnswer,
  out: RequestOutput,
  finishReason: ApiFinishReason | null,
  send: (delta: object, finish: ApiFinishReason | null, withIds: boolean) => Promise<void>,
): Promise<void> {
  const content = tools.push(out.newTokenIds, out.text);
  if (!out.finished) {
    if (content !== '') await send({ content }, null, true);
    return;
  }
  const t = tools.finish();
  const rest = content + t.unsentContent;
  if (t.toolCalls.length === 0) {
    await send(rest !== '' ? { content: rest } : {}, finishReason, true);
    return;
  }
  if (rest !== '') await send({ content: rest }, null, false);
  await send({ tool_calls: t.toolCalls.map((call, i) => ({ index: i, ...call })) }, null, true);
  await send({}, toolFinish(finishReason ?? 'stop', t), false);
}
