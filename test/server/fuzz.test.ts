// Hostile input: over a thousand generated malformed or adversarial requests (fast-check) against
// both generation endpoints. None may produce a 5xx or an unhandled error; every rejection is an
// OpenAI-style body; afterwards nothing is left running or holding KV blocks, and a normal request
// still succeeds. Runs through fastify.inject (no sockets) with a short context so the occasional
// valid request stays cheap.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { LLM } from '../../src/llm.js';
import { buildServer } from '../../src/server/app.js';
import { makeTinyModel } from './server-helpers.js';

const FIELDS = [
  'model', 'prompt', 'messages', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'n',
  'stop', 'seed', 'presence_penalty', 'frequency_penalty', 'repetition_penalty', 'logprobs', 'top_logprobs', 'ignore_eos',
  'priority', 'stream', 'stream_options', 'min_tokens', 'stop_token_ids', 'echo', 'best_of', 'suffix', 'logit_bias',
  'tools', 'response_format', 'user', 'return_token_ids', '__proto__', 'constructor',
];

const nasty = fc.constantFrom<unknown>(
  null, true, false, 0, -0, 1, -1, 2, 0.5, -1e-300, 1e308, -1e308, 2 ** 53, 2 ** 31, -(2 ** 31), 1.0000001, 1e21,
  '', ' ', '\u0000', '\uFFFD', '\uD800', '🦙🦙', 'a'.repeat(5000), '<s>', '</s>', '{{ raise_exception("x") }}', '%s%n',
  [], [[]], [-1], [0], [1e9], [1.5], [[1, 2], 'x'], ['a', 'b'], {}, { include_usage: 'yes' }, { type: 'json_object' },
  [{ role: 'user', content: 'hi' }], [{ role: 'user' }], [{ role: 'wizard', content: 'x' }], [{ role: 'user', content: [{ type: 'image_url' }] }],
);

const value: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: nasty },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.array(fc.integer({ min: -5, max: 40_000 }), { maxLength: 8 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
);

/** An object of known fields with hostile values, sometimes on top of a valid request. */
const hostileObject = fc.tuple(fc.boolean(), fc.dictionary(fc.constantFrom(...FIELDS), value, { maxKeys: 6 })).map(([valid, fields]) => {
  const base = valid ? { prompt: 'Hi', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 } : {};
  return JSON.stringify({ ...base, ...fields });
});

/** Bodies that are not valid JSON objects at all. */
const rawBody = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
  fc.constantFrom(
    '', '{', '}', '[', 'null', '"x"', '{"prompt": "x",}', '{"prompt": NaN}', '{"prompt": "x"} trailing', '\u0000',
    '{"__proto__": {"polluted": 1}, "prompt": "x"}', '{"constructor": {"prototype": {"polluted": 1}}, "prompt": "x"}',
    '{"prompt": 1e999999}', '{"max_tokens": 1e999999, "prompt": "x"}', '['.repeat(100_000) + ']'.repeat(100_000),
    '{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000), '{"prompt": "\\ud800"}', '\xff\xfe{"prompt": "x"}',
  ),
);

const contentType = fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', undefined);

describe('fuzzing the generation endpoints', () => {
  let model: { path: string; cleanup: () => void };
  let llm: LLM;
  let app: FastifyInstance;
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    model = await makeTinyModel();
    // In-process and a 48-token context: the valid requests the fuzzer stumbles on finish fast.
    llm = await LLM.load(model.path, { inProcess: true, maxModelLen: 48, maxNumSeqs: 16, threads: 1 });
    app = await buildServer(llm, { bodyLimit: 256 * 1024 });
  });
  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    await app?.close();
    await llm?.close();
    model?.cleanup();
  });

  async function send(url: string, payload: string | Buffer, type: string | undefined) {
    const res = await app.inject({ method: 'POST', url, payload, headers: type ? { 'content-type': type } : {} });
    assert.ok(res.statusCode < 500, `${url} answered ${res.statusCode} to ${String(payload).slice(0, 200)}: ${res.body.slice(0, 300)}`);
    if (res.statusCode >= 400) {
      const body = res.json() as { error?: { message?: unknown; type?: unknown } };
      assert.equal(typeof body.error?.message, 'string', `error body for ${String(payload).slice(0, 100)}: ${res.body.slice(0, 200)}`);
      assert.equal(typeof body.error?.type, 'string');
    }
    return res.statusCode;
  }

  const endpoint = fc.constantFrom('/v1/completions', '/v1/chat/completions');

  it('hostile JSON objects never cause a 5xx', async () => {
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(endpoint, hostileObject, async (url, body) => {
        const status = await send(url, body, 'application/json');
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }),
      { numRuns: 700, seed: 20240601 },
    );
    // The generator is not degenerate: both outcomes occur.
    assert.ok((statuses.get(200) ?? 0) > 10, `some requests succeeded: ${JSON.stringify([...statuses])}`);
    assert.ok((statuses.get(400) ?? 0) > 100, `most were rejected: ${JSON.stringify([...statuses])}`);
  });

  it('malformed bodies and content types never cause a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(endpoint, rawBody, contentType, async (url, body, type) => {
        await send(url, body, type);
      }),
      { numRuns: 350, seed: 7 },
    );
    // Random bytes, including invalid UTF-8.
    await fc.assert(
      fc.asyncProperty(endpoint, fc.uint8Array({ maxLength: 64 }), async (url, bytes) => {
        await send(url, Buffer.from(bytes), 'application/json');
      }),
      { numRuns: 100, seed: 11 },
    );
  });

  it('afterwards: no leaked sequences or KV blocks, no unhandled errors, and normal service', async () => {
    const stats = llm.engine.stats();
    assert.equal(stats.running + stats.waiting, 0);
    assert.equal(stats.blocksUsed, 0);
    assert.deepEqual(unhandled, []);
    const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'Once upon a time', max_tokens: 4, ignore_eos: true } });
    assert.equal(res.statusCode, 200);
    assert.equal((res.json() as { usage: { completion_tokens: number } }).usage.completion_tokens, 4);
    assert.equal((await app.inject({ url: '/health' })).statusCode, 200);
  });
});
