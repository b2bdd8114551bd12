// POST /v1/chat/completions: messages rendered through the model's chat template, then generated
// like a completion and answered as chat messages (or chat.completion.chunk events).
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { TOOL_CALL_PARSERS, type ToolCallParser } from '../tools/tool-parsers.js';
import { parseToolRequest } from '../tools/tool-request.js';
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
  toolParser: ToolCallParser | undefined,
): void {
  let warned = false;
  // Logged once: requests with tools still work, their answers come back as text.
  const missingParser = (log: FastifyBaseLogger) => {
    if (warned) return;
    warned = true;
    log.warn(`no tool-call parser reads this model's chat template (known: ${Object.keys(TOOL_CALL_PARSERS).join(', ')}; choose one with --tool-call-parser): tools are rendered, answers are returned as text`);
  };
  app.post<{ Body: ChatBody & { return_token_ids?: boolean | null } }>(
    '/v1/chat/completions',
    { schema: { body: chatBodySchema } },
    async (request, reply) => {
      const body = request.body;
      checkModel(body.model);
      const tools = parseToolRequest(body);
      const promptIds = template.encode(normalizeMessages(body.messages), {
        kwargs: body.chat_template_kwargs ?? undefined,
        ...(tools ? { tools: tools.tools } : {}),
      });
      if (tools && tools.choice === 'auto' && !toolParser) missingParser(request.log);
      const plan = planChat(body, promptIds, limits, toolParser);
      return respond(ctx, reply, plan, {
        endpoint: 'chat',
        wantLogprobs: body.logprobs === true,
        returnTokenIds: body.return_token_ids === true,
        promptParam: 'messages',
      });
    },
  );
}
