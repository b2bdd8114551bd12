// GET /v1/models, /health and /metrics: cheap answers that never wait on the engine.
import type { FastifyInstance } from 'fastify';
import { unixSeconds } from '../openai-format.js';
import type { ServeContext } from '../respond.js';

export function registerInfoRoutes(app: FastifyInstance, ctx: ServeContext, draining: () => boolean): void {
  const created = unixSeconds();

  app.get('/v1/models', async () => ({
    object: 'list',
    data: [
      {
        id: ctx.modelName,
        object: 'model',
        created,
        owned_by: 'stepwise',
        root: ctx.modelName,
        parent: null,
        max_model_len: ctx.llm.options.maxModelLen,
      },
    ],
  }));

  // 200 while serving, 503 once a shutdown began (so a load balancer stops routing here).
  app.get('/health', async (_request, reply) => {
    if (draining()) return reply.code(503).send({ status: 'draining' });
    return { status: 'ok' };
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await ctx.metrics.render();
    return reply.type(ctx.metrics.contentType).send(text);
  });
}
