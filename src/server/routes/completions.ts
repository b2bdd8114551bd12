// POST /v1/completions: text (or token-id) prompts in, completions out, whole or streamed.
import type { FastifyInstance } from 'fastify';
import { completionBodySchema } from '../schemas.js';
import { planCompletion, type CompletionBody, type ModelLimits } from '../request-params.js';
import { respond, type ServeContext } from '../respond.js';

export function registerCompletionRoutes(
  app: FastifyInstance,
  ctx: ServeContext,
  limits: ModelLimits,
  checkModel: (model: string | null | undefined) => void,
): void {
  app.post<{ Body: CompletionBody & { return_token_ids?: boolean | null } }>(
    '/v1/completions',
    { schema: { body: completionBodySchema } },
    async (request, reply) => {
      const body = request.body;
      checkModel(body.model);
      const plan = planCompletion(body, limits);
      return respond(ctx, reply, plan, {
        endpoint: 'completion',
        wantLogprobs: body.logprobs != null,
        returnTokenIds: body.return_token_ids === true,
        promptParam: 'prompt',
      });
    },
  );
}
