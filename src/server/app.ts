// The OpenAI-compatible HTTP server: a Fastify app over one loaded LLM. The engine's steps run in a
// worker thread (WorkerModelRunner), so this event loop only parses, validates, streams and counts:
// /health and /metrics stay fast however busy the batch is.
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { LLM } from '../llm.js';
import { ChatTemplate, chatTemplateSource } from './chat-template.js';
import { TOOL_CALL_PARSERS, toolParserForTemplate } from './tools/tool-parsers.js';
import { ApiError } from './errors.js';
import { errorHandler } from './error-handler.js';
import type { Generation } from './generation.js';
import { ServerMetrics } from './metrics.js';
import { LiveRequests } from './live-requests.js';
import { TokenTexts } from './openai-format.js';
import type { ServeContext } from './respond.js';
import { registerCompletionRoutes } from './routes/completions.js';
import { registerChatRoutes } from './routes/chat.js';
import { registerInfoRoutes } from './routes/info.js';
import { registerLiveView } from './routes/live-view.js';
import { engineGaugeValues } from './engine-stats.js';
import type { ModelLimits } from './request-params.js';

export interface ServerOptions {
  /** Requires `Authorization: Bearer <apiKey>` on /v1/* (the live view page reads it from #key=...). */
  apiKey?: string;
  /** Name clients use in `model` and see in /v1/models (default: the model file's basename). */
  modelName?: string;
  /** Largest request body in bytes (default 1 MiB); larger ones get 413. */
  bodyLimit?: number;
  /** Fastify logger setting (default off). */
  logger?: FastifyServerOptions['logger'];
  /** vLLM's --tool-call-parser: hermes, llama3_json or mistral (default: chosen by the chat template's markers). */
  toolCallParser?: string;
}

/** What the server exposes beyond Fastify's instance, for the CLI's shutdown and for tests. */
export interface StepwiseServerState {
  readonly context: ServeContext;
  readonly metrics: ServerMetrics;
  /** Generations in flight (one per HTTP request being answered). */
  activeRequests(): number;
  /**
   * Graceful stop: refuse new work (503), wait for in-flight requests up to `timeoutMs`, abort the
   * rest, then close the listener. Resolves once every connection is done. Does not close the LLM.
   */
  drainAndClose(timeoutMs: number): Promise<{ aborted: number }>;
}

declare module 'fastify' {
  interface FastifyInstance {
    stepwise: StepwiseServerState;
  }
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export async function buildServer(llm: LLM, opts: ServerOptions = {}): Promise<FastifyInstance> {
  const modelName = opts.modelName ?? llm.modelName;
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit ?? DEFAULT_BODY_LIMIT,
    // Keep-alive connections that sit idle are closed on shutdown; busy ones (streams) finish first.
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    // OpenAI rejects "5" for a number: no type coercion, and unknown fields pass through untouched.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
  });

  const o = llm.options;
  const metrics = new ServerMetrics(modelName, () => engineGaugeValues(llm.engine), {
    blockSize: o.blockSize,
    numBlocks: o.numBlocks,
    cacheDtype: o.kvCacheDtype,
    enablePrefixCaching: o.enablePrefixCaching,
  });
  const active = new Set<Generation>();
  const context: ServeContext = {
    llm,
    modelName,
    metrics,
    tokenTexts: new TokenTexts(llm.tokenizer),
    active,
    live: new LiveRequests(llm.engine.trace),
  };
  const limits: ModelLimits = { tokenizer: llm.tokenizer, vocabSize: llm.config.vocabSize, maxModelLen: llm.options.maxModelLen };
  // Parsed once at startup so a broken template fails loudly here, not on the first chat request.
  const chatTemplate = new ChatTemplate(chatTemplateSource(llm.metadata), llm.tokenizer);
  const toolParser = opts.toolCallParser !== undefined ? TOOL_CALL_PARSERS[opts.toolCallParser] : toolParserForTemplate(chatTemplateSource(llm.metadata));
  if (opts.toolCallParser !== undefined && !toolParser) {
    throw new Error(`unknown tool-call parser '${opts.toolCallParser}': use one of ${Object.keys(TOOL_CALL_PARSERS).join(', ')}`);
  }
  let draining = false;

  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) => {
    const e = new ApiError(404, `no route for ${request.method} ${request.url.split('?')[0]}`, 'not_found_error', null, 'not_found');
    void reply.code(404).send(e.body());
  });

  if (opts.apiKey !== undefined) {
    const expected = sha256(`Bearer ${opts.apiKey}`);
    app.addHook('onRequest', async (request) => {
      if (!request.url.startsWith('/v1/')) return;
      const given = request.headers.authorization;
      // Compare digests in constant time, so the key cannot be guessed byte by byte from timings.
      if (typeof given !== 'string' || !timingSafeEqual(sha256(given), expected)) {
        throw new ApiError(401, 'invalid or missing API key: send Authorization: Bearer <key>', 'authentication_error', null, 'invalid_api_key');
      }
    });
  }

  // During a drain, new generation requests are turned away; in-flight ones continue.
  app.addHook('onRequest', async (request) => {
    if (draining && request.method === 'POST') throw new ApiError(503, 'the server is shutting down', 'server_error', null, 'shutting_down');
  });

  /** `model` in a request must name the served model when given. */
  const checkModel = (model: string | null | undefined): void => {
    if (model != null && model !== modelName) {
      throw new ApiError(404, `The model '${model}' does not exist; this server serves '${modelName}'`, 'not_found_error', 'model', 'model_not_found');
    }
  };

  registerCompletionRoutes(app, context, limits, checkModel);
  registerChatRoutes(app, context, limits, chatTemplate, checkModel, toolParser);
  registerInfoRoutes(app, context, () => draining);
  registerLiveView(app, context);

  app.decorate('stepwise', {
    context,
    metrics,
    activeRequests: () => active.size,
    async drainAndClose(timeoutMs: number) {
      draining = true;
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
      let isClosed = false;
      const closed = app.close().then(() => {
        isClosed = true;
      });
      const deadline = Date.now() + timeoutMs;
      while (active.size > 0 && Date.now() < deadline) await sleep(20);
      const aborted = active.size;
      for (const g of active) g.abort();
      // A keep-alive connection that was busy when close() began turns idle only when its response
      // ends, and Node would then keep it open until the keep-alive timeout: close such connections
      // as they go idle, and give the last responses a moment to flush before cutting the rest.
      const hardStop = Date.now() + 2000;
      while (!isClosed) {
        app.server.closeIdleConnections();
        if (Date.now() > hardStop) app.server.closeAllConnections();
        await Promise.race([closed, sleep(20)]);
      }
      return { aborted };
    },
  } satisfies StepwiseServerState);

  await app.ready();
  return app;
}
