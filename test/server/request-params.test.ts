// Unit tests of the OpenAI body -> engine request translation: shapes accepted, and every rejection
// naming the HTTP field a client sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planChat, planCompletion, parseCompletionPrompts, type ModelLimits } from '../../src/server/request-params.js';
import { ApiError } from '../../src/server/errors.js';
import { byteTokenizer } from './fake-tokenizer.js';

const limits: ModelLimits = { tokenizer: byteTokenizer(), vocabSize: 259, maxModelLen: 64 };

function rejects(f: () => unknown, param: string, pattern?: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof ApiError, `expected ApiError, got ${String(e)}`);
    assert.equal(e.status, 400);
    assert.equal(e.param, param);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

test('prompts: string, strings, token ids, arrays of token ids', () => {
  assert.deepEqual(parseCompletionPrompts('hi', limits), [[1, 104 + 3, 105 + 3]]);
  assert.deepEqual(parseCompletionPrompts(['a', 'b'], limits), [[1, 100], [1, 101]]);
  assert.deepEqual(parseCompletionPrompts([5, 6, 7], limits), [[5, 6, 7]]);
  assert.deepEqual(parseCompletionPrompts([[5], [6, 7]], limits), [[5], [6, 7]]);
});

test('prompts: wrong shapes and out-of-vocabulary ids are 400s on prompt', () => {
  for (const bad of [[], [[]], [1, 'a'], { a: 1 }, 3, null, [[1], 'x'], [1.5], [-1]]) {
    rejects(() => parseCompletionPrompts(bad, limits), 'prompt');
  }
  rejects(() => parseCompletionPrompts([259], limits), 'prompt', /outside the vocabulary/);
  rejects(() => parseCompletionPrompts('', { ...limits, tokenizer: byteTokenizer({ addBos: false }) }), 'prompt', /no tokens/);
  // With BOS, an empty string is a valid one-token prompt.
  assert.deepEqual(parseCompletionPrompts('', limits), [[1]]);
  rejects(() => parseCompletionPrompts('x', { ...limits, tokenizer: null }), 'prompt', /token ids/);
});

test('completion plan maps OpenAI fields onto SamplingParams', () => {
  const plan = planCompletion(
    {
      prompt: [5, 6],
      max_tokens: 7,
      temperature: 0.5,
      top_p: 0.9,
      top_k: 4,
      min_p: 0.1,
      n: 3,
      seed: 42,
      presence_penalty: 0.2,
      frequency_penalty: -0.3,
      repetition_penalty: 1.1,
      stop: 'x',
      ignore_eos: true,
      logprobs: 2,
      priority: 5,
      stream: true,
      stream_options: { include_usage: true },
    },
    limits,
  );
  assert.deepEqual(plan.prompts, [[5, 6]]);
  assert.equal(plan.stream, true);
  assert.equal(plan.includeUsage, true);
  assert.equal(plan.priority, 5);
  const s = plan.sampling;
  assert.deepEqual(
    [s.maxTokens, s.temperature, s.topP, s.topK, s.minP, s.n, s.seed, s.presencePenalty, s.frequencyPenalty, s.repetitionPenalty, s.ignoreEos, s.logprobs],
    [7, 0.5, 0.9, 4, 0.1, 3, 42, 0.2, -0.3, 1.1, true, 2],
  );
  assert.deepEqual(s.stop, ['x']);
  // Completions default to 16 tokens, as OpenAI's.
  assert.equal(planCompletion({ prompt: [5] }, limits).sampling.maxTokens, 16);
});

test('context overflow names max_tokens, or the prompt when the prompt alone is too long', () => {
  rejects(() => planCompletion({ prompt: [5, 6], max_tokens: 63 }, limits), 'max_tokens', /maximum context length is 64/);
  rejects(() => planCompletion({ prompt: new Array(64).fill(5) }, limits), 'prompt', /maximum context length/);
  // Chat without a max: whatever the context leaves.
  assert.equal(planChat({ messages: [] }, [1, 2, 3, 4], limits).sampling.maxTokens, 60);
  rejects(() => planChat({ messages: [], max_completion_tokens: 61 }, [1, 2, 3, 4], limits), 'max_completion_tokens');
});

test('semantic rejections name the field', () => {
  rejects(() => planCompletion({ prompt: [5], stream_options: { include_usage: true } }, limits), 'stream_options');
  rejects(() => planCompletion({ prompt: [5], stop: [''] }, limits), 'stop', /empty/);
  rejects(() => planCompletion({ prompt: [5], stop: [1] }, limits), 'stop');
  rejects(() => planCompletion({ prompt: [5], stop_token_ids: [999] }, limits), 'stop_token_ids');
  rejects(() => planCompletion({ prompt: [5], echo: true }, limits), 'echo');
  rejects(() => planCompletion({ prompt: [5], logit_bias: { '5': 1 } }, limits), 'logit_bias');
  rejects(() => planCompletion({ prompt: [5], max_tokens: 4, min_tokens: 5 }, limits), 'min_tokens');
  rejects(() => planChat({ messages: [], top_logprobs: 3 }, [1], limits), 'top_logprobs');
  rejects(() => planChat({ messages: [], tools: [{}] }, [1], limits), 'tools[0].type');
  rejects(() => planChat({ messages: [], response_format: { type: 'yaml' } }, [1], limits), 'response_format.type');
  rejects(() => planCompletion({ prompt: [5], guided_regex: 'a', guided_choice: ['b'] }, limits), 'guided_choice', /only one/);
  // Errors from the library's validation are reworded with the HTTP name.
  rejects(() => planCompletion({ prompt: [5], top_p: 0 }, limits), 'top_p', /top_p/);
});

test('chat logprobs: top_logprobs becomes the number of alternatives', () => {
  assert.equal(planChat({ messages: [], logprobs: true, top_logprobs: 3 }, [1], limits).sampling.logprobs, 3);
  assert.equal(planChat({ messages: [], logprobs: true }, [1], limits).sampling.logprobs, 0);
  assert.equal(planChat({ messages: [] }, [1], limits).sampling.logprobs, null);
});
