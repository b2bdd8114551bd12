// JSON schemas Fastify validates request bodies against before a handler runs. They check the
// scalar fields' types and ranges; the unions OpenAI allows (prompt as string / strings / token ids,
// message content as string or parts, stop as string or list) are checked in request-params.ts,
// where a precise message can say which shape was expected.
//
// Unknown fields are accepted and ignored, as vLLM does, since clients send extras such as `user`.

const nullable = (type: string, extra: Record<string, unknown> = {}) => ({ type: [type, 'null'], ...extra });

/** Sampling fields shared by /v1/completions and /v1/chat/completions. */
const samplingProperties = {
  model: nullable('string'),
  max_tokens: nullable('integer', { minimum: 1 }),
  temperature: nullable('number', { minimum: 0 }),
  top_p: nullable('number', { exclusiveMinimum: 0, maximum: 1 }),
  top_k: nullable('integer', { minimum: -1 }),
  min_p: nullable('number', { minimum: 0, maximum: 1 }),
  n: nullable('integer', { minimum: 1, maximum: 16 }),
  seed: nullable('integer', { minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER }),
  presence_penalty: nullable('number', { minimum: -2, maximum: 2 }),
  frequency_penalty: nullable('number', { minimum: -2, maximum: 2 }),
  repetition_penalty: nullable('number', { exclusiveMinimum: 0 }),
  ignore_eos: nullable('boolean'),
  min_tokens: nullable('integer', { minimum: 0 }),
  stop_token_ids: nullable('array', { items: { type: 'integer' }, maxItems: 64 }),
  priority: nullable('integer', { minimum: -1_000_000, maximum: 1_000_000 }),
  stream: nullable('boolean'),
  stream_options: nullable('object', { properties: { include_usage: nullable('boolean') } }),
  user: nullable('string'),
  // vLLM extension: token ids of the generated text in each choice.
  return_token_ids: nullable('boolean'),
  // Present so a wrong type is caught here; the semantic checks live in request-params.ts.
  stop: {},
  logit_bias: nullable('object'),
  // Output constraints (request-params.ts / structured-params.ts check them).
  response_format: nullable('object'),
  structured_outputs: nullable('object'),
  guided_json: {},
  guided_regex: nullable('string'),
  guided_choice: nullable('array', { items: { type: 'string' } }),
  guided_grammar: nullable('string'),
  // Stepwise extension: false keeps speculative decoding off for this request.
  speculative: nullable('boolean'),
} as const;

export const completionBodySchema = {
  type: 'object',
  required: ['prompt'],
  properties: {
    ...samplingProperties,
    prompt: {},
    logprobs: nullable('integer', { minimum: 0, maximum: 20 }),
    echo: nullable('boolean'),
    best_of: nullable('integer', { minimum: 1 }),
    suffix: nullable('string'),
  },
} as const;

export const chatBodySchema = {
  type: 'object',
  required: ['messages'],
  properties: {
    ...samplingProperties,
    messages: { type: 'array', minItems: 1, maxItems: 4096 },
    max_completion_tokens: nullable('integer', { minimum: 1 }),
    logprobs: nullable('boolean'),
    top_logprobs: nullable('integer', { minimum: 0, maximum: 20 }),
    tools: nullable('array'),
    tool_choice: {},
    parallel_tool_calls: nullable('boolean'),
    chat_template_kwargs: nullable('object'),
  },
} as const;
