// POST /v1/chat/completions: messages rendered through the model's chat template, then generated
// like a completion and answered as chat messages (or chat.completion.chunk events).
import type { FastifyInstance } from 'fastify';
import type { ChatTemplate } from '../chat-template.js';
import { normalizeMessages } from '../chat-template.js';
import { chatBodySchema } from '../schemas.js';
import { planChat, type ChatBody, type ModelLimits } from '../request-params.js';
import { respond, type ServeContext } from '../respond.js';

export function registerChatRoutes(
  app: FastifyInstance,
  ctx: ServeContext,
  limits: ModelLimits,
  template: ChatTemplate,
  checkModel: (model: string | null | undefined) => void,
): void {
  app.post<{ Body: ChatBody & { return_token_ids?: boolean | null } }>(
    '/v1/chat/completions',
    { schema: { body: chatBodySchema } },
    async (request, reply) => {
      const body = request.body;
      checkModel(body.model);
      const promptIds = template.encode(normalizeMessages(body.messages), { kwargs: body.chat_template_kwargs ?? undefined });
      const plan = planChat(body, promptIds, limits);
      return respond(ctx, reply, plan, {
        endpoint: 'chat',
        wantLogprobs: body.logprobs === true,
        returnTokenIds: body.return_token_ids === true,
        promptParam: 'messages',
      });
    },
  );
}
