// Server behaviour beyond the happy path: Prometheus metrics under vLLM's names, API keys, a full
// queue answered with 429 + Retry-After, one request's internal failure isolated from the rest, and
// a drain that finishes in-flight requests (or aborts them at the timeout).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { LLM } from '../../src/llm.js';
import type { RequestStream } from '../../src/engine/engine.js';
import type { RequestOutput } from '../../src/engine/types.js';
import { buildServer } from '../../src/server/app.js';
import { fakeLLM } from './fake-llm.js';
import { extra, makeTinyModel, slowSteps, startServer, waitFor, type TestServer } from './server-helpers.js';

/** Parses Prometheus text: `name{labels} value` -> value, keyed by the series as written. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

describe('server behaviour', () => {
  let model: { path: string; cleanup: () => void };
  before(async () => {
    model = await makeTinyModel();
  });
  after(() => model?.cleanup());

  describe('metrics and auth', () => {
    let s: TestServer;
    before(async () => {
      s = await startServer(model.path, { inProcess: true, maxNumSeqs: 8 }, { apiKey: 'sekret', modelName: 'tiny-test' });
    });
    after(async () => s?.close());

    it('requires the API key on /v1 only', async () => {
      const anonymous = new OpenAI({ baseURL: `${s.baseURL}/v1`, apiKey: 'wrong', maxRetries: 0 });
      await assert.rejects(anonymous.models.list(), (e: unknown) => e instanceof OpenAI.AuthenticationError && (e.error as { code?: string }).code === 'invalid_api_key');
      assert.equal((await fetch(`${s.baseURL}/v1/models`)).status, 401);
      assert.equal((await fetch(`${s.baseURL}/health`)).status, 200);
      assert.equal((await fetch(`${s.baseURL}/metrics`)).status, 200);
      assert.equal((await s.client.models.list()).data[0].id, 'tiny-test');
    });

    it('exposes vLLM-named metrics that track the requests served', async () => {
      const before = parseMetrics(await (await fetch(`${s.baseURL}/metrics`)).text());
      const L = '{model_name="tiny-test"}';
      for (const name of ['vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc', 'vllm:prompt_tokens_total', 'vllm:generation_tokens_total', 'vllm:num_preemptions_total', 'vllm:prefix_cache_queries_total', 'vllm:prefix_cache_hits_total', 'vllm:time_to_first_token_seconds_count', 'vllm:inter_token_latency_seconds_count', 'vllm:e2e_request_latency_seconds_count', 'vllm:request_queue_time_seconds_count']) {
        assert.ok(before.has(name + L), `${name} is exposed with a model_name label`);
      }
      assert.ok(before.has('vllm:request_success_total{model_name="tiny-test",finished_reason="length"}'));

      // Two identical long prompts (the second hits the prefix cache), one stream aborted mid-way.
      const prompt = 'The quick brown fox jumps over the lazy dog and runs far away into the forest';
      const r1 = await s.client.completions.create(extra({ model: s.model, prompt, max_tokens: 5, temperature: 0 }, { ignore_eos: true }));
      const r2 = await s.client.completions.create(extra({ model: s.model, prompt, max_tokens: 7, temperature: 0 }, { ignore_eos: true }));
      const controller = new AbortController();
      const restore = slowSteps(s.llm, 5); // so the scrape below lands while the stream still runs
      const stream = await s.client.completions.create(extra({ model: s.model, prompt: 'abort', max_tokens: 100, stream: true as const }, { ignore_eos: true }), { signal: controller.signal });
      let seenRunning = false;
      let n = 0;
      for await (const _ of stream) {
        if (++n === 2) {
          const mid = parseMetrics(await (await fetch(`${s.baseURL}/metrics`)).text());
          seenRunning = mid.get('vllm:num_requests_running' + L)! >= 1 && mid.get('vllm:kv_cache_usage_perc' + L)! > 0;
          controller.abort();
        }
      }
      assert.ok(seenRunning, 'a scrape during generation sees a running request and KV in use');
      await waitFor(() => s.app.stepwise.activeRequests() === 0, 2000, 'the aborted request to end');
      restore();

      const now = parseMetrics(await (await fetch(`${s.baseURL}/metrics`)).text());
      const delta = (k: string) => now.get(k)! - before.get(k)!;
      const promptTokens = r1.usage!.prompt_tokens + r2.usage!.prompt_tokens + s.llm.encode('abort').length;
      assert.equal(delta('vllm:prompt_tokens_total' + L), promptTokens);
      assert.ok(delta('vllm:generation_tokens_total' + L) >= 12 + 2);
      assert.equal(delta('vllm:request_success_total{model_name="tiny-test",finished_reason="length"}'), 2);
      assert.equal(delta('vllm:request_success_total{model_name="tiny-test",finished_reason="abort"}'), 1);
      assert.equal(delta('vllm:time_to_first_token_seconds_count' + L), 3);
      assert.equal(delta('vllm:e2e_request_latency_seconds_count' + L), 3);
      assert.equal(delta('vllm:request_queue_time_seconds_count' + L), 3);
      assert.ok(delta('vllm:inter_token_latency_seconds_count' + L) >= 4 + 6 + 1);
      assert.ok(delta('vllm:prefix_cache_hits_total' + L) > 0, 'the repeated prompt hit the prefix cache');
      assert.ok(delta('vllm:prefix_cache_queries_total' + L) >= delta('vllm:prefix_cache_hits_total' + L));
      assert.equal(now.get('vllm:num_requests_running' + L), 0);
      assert.equal(now.get('vllm:kv_cache_usage_perc' + L), 0);
    });

    it("isolates one request's internal failure from the others", async () => {
      const MARK = 'please fail';
      const realStream = s.llm.stream.bind(s.llm);
      // A stream that produces one token, then fails as a broken request would.
      const markIds = s.llm.encode(MARK).join(',');
      // The server hands prompts to the LLM as token ids.
      s.llm.stream = (prompt, params) => {
        if (!Array.isArray(prompt) || prompt.join(',') !== markIds) return realStream(prompt, params);
        const inner = realStream(prompt, params);
        return {
          requestId: inner.requestId,
          timing: inner.timing,
          finished: false,
          async *[Symbol.asyncIterator]() {
            for await (const out of inner as AsyncIterable<RequestOutput>) {
              yield out;
              throw new Error('simulated internal failure');
            }
          },
        } as unknown as RequestStream;
      };
      try {
        const normal = () => s.client.completions.create(extra({ model: s.model, prompt: 'fine', max_tokens: 6, temperature: 0 }, { ignore_eos: true }));
        const failing = s.client.completions.create(extra({ model: s.model, prompt: MARK, max_tokens: 50 }, { ignore_eos: true }));
        const failingStream = (async () => {
          const st = await s.client.completions.create(extra({ model: s.model, prompt: MARK, max_tokens: 50, stream: true as const }, { ignore_eos: true }));
          for await (const _ of st) {
            // the client raises on the in-band error event
          }
        })();
        const [a, b, bad, badStream] = await Promise.allSettled([normal(), normal(), failing, failingStream]);
        assert.equal(a.status, 'fulfilled');
        assert.equal(b.status, 'fulfilled');
        assert.equal(bad.status, 'rejected');
        assert.ok((bad as PromiseRejectedResult).reason instanceof OpenAI.InternalServerError);
        assert.match(String((badStream as PromiseRejectedResult).reason?.message), /simulated internal failure/);
        // The failed requests were aborted in the engine, and the server still serves.
        await waitFor(() => s.llm.engine.stats().running === 0, 2000, 'the failed requests to be aborted');
        assert.equal(s.llm.engine.stats().blocksUsed, 0);
        const after = await normal();
        assert.equal(after.choices[0].text, (a as PromiseFulfilledResult<OpenAI.Completion>).value.choices[0].text);
      } finally {
        s.llm.stream = realStream;
      }
    });
  });

  it('a failed engine step fails its requests with a 500 (or an in-band stream error) and service goes on', async () => {
    // The fake runner throws for any step that starts a sequence whose prompt holds the marker token
    // (byte 0xFF -> id 258). Not "any step that computes 258": the fake model samples from the whole
    // vocabulary, so a healthy request's random output may hold 258 too (that flaked about 1 run in 90).
    const llm = fakeLLM({ runner: { failWhen: (step) => step.newSequences.some((n) => n.promptTokenIds.includes(258)) } });
    const app = await buildServer(llm);
    try {
      const bad = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: [65, 258], max_tokens: 4 } });
      assert.equal(bad.statusCode, 500);
      const err = (bad.json() as { error: { type: string; message: string } }).error;
      assert.equal(err.type, 'server_error');
      assert.match(err.message, /generation failed/);
      const badStream = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: [65, 258], max_tokens: 4, stream: true } });
      assert.equal(badStream.statusCode, 200);
      assert.match(badStream.body, /data: \{"error":\{"message":"generation failed/);
      assert.match(badStream.body, /data: \[DONE\]\n\n$/);
      const good = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'fine', max_tokens: 4, ignore_eos: true } });
      assert.equal(good.statusCode, 200);
      assert.equal((good.json() as { usage: { completion_tokens: number } }).usage.completion_tokens, 4);
      assert.equal(llm.engine.stats().blocksUsed, 0);
    } finally {
      await app.close();
      await llm.close();
    }
  });

  it('a full queue answers 429 with Retry-After, and accepted requests still complete', async () => {
    const llm = await LLM.load(model.path, { inProcess: true, maxNumSeqs: 1, maxQueue: 1, threads: 1 });
    slowSteps(llm, 5); // the first request must still run when the third arrives
    const app = await buildServer(llm);
    try {
      const body = { prompt: 'Busy', max_tokens: 40, ignore_eos: true };
      const first = app.inject({ method: 'POST', url: '/v1/completions', payload: body });
      await waitFor(() => llm.engine.stats().running === 1, 5000, 'the first request to run');
      const second = app.inject({ method: 'POST', url: '/v1/completions', payload: body });
      await waitFor(() => llm.engine.stats().waiting === 1, 5000, 'the second request to queue');
      const third = await app.inject({ method: 'POST', url: '/v1/completions', payload: body });
      assert.equal(third.statusCode, 429);
      assert.equal(third.headers['retry-after'], '1');
      const err = (third.json() as { error: { type: string; code: string } }).error;
      assert.equal(err.type, 'rate_limit_error');
      assert.equal(err.code, 'queue_full');
      for (const r of await Promise.all([first, second])) {
        assert.equal(r.statusCode, 200);
        assert.equal((r.json() as { usage: { completion_tokens: number } }).usage.completion_tokens, 40);
      }
    } finally {
      await app.close();
      await llm.close();
    }
  });

  it('drain: in-flight requests finish, new ones are refused, the rest are aborted at the timeout', async () => {
    const llm = await LLM.load(model.path, { inProcess: true, maxNumSeqs: 4, threads: 1 });
    slowSteps(llm, 5); // 30 tokens take >= 150 ms: still in flight when the drain begins
    const app = await buildServer(llm);
    await app.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const post = (body: object) => fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    try {
      const inflight = post({ prompt: 'Drain', max_tokens: 30, ignore_eos: true });
      await waitFor(() => app.stepwise.activeRequests() === 1 && llm.engine.stats().running === 1, 5000, 'the request to start');
      const closing = app.stepwise.drainAndClose(30_000);
      // New work is turned away: the listener is closed (or, on a kept-alive socket, a 503).
      const late = await post({ prompt: 'late', max_tokens: 2 }).then((r) => r.status, () => 'refused');
      assert.ok(late === 503 || late === 'refused', `late request: ${late}`);
      const done = await inflight;
      assert.equal(done.status, 200);
      assert.equal(((await done.json()) as { choices: Array<{ finish_reason: string }> }).choices[0].finish_reason, 'length');
      assert.deepEqual(await closing, { aborted: 0 });
    } finally {
      await app.close(); // already closed by the drain unless the test failed before it: no hang then
      await llm.close();
    }

    const llm2 = await LLM.load(model.path, { inProcess: true, maxNumSeqs: 4, threads: 1 });
    slowSteps(llm2, 5); // ~2.5 s of decoding: the 50 ms drain must abort it
    const app2 = await buildServer(llm2);
    try {
      const maxTokens = llm2.options.maxModelLen - 16;
      const long = app2.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'Drain', max_tokens: maxTokens, ignore_eos: true } });
      await waitFor(() => llm2.engine.stats().running === 1, 5000, 'the request to start');
      assert.equal((await app2.inject({ url: '/health' })).statusCode, 200);
      const closing = app2.stepwise.drainAndClose(50);
      const r = await long;
      assert.deepEqual(await closing, { aborted: 1 });
      assert.equal(r.statusCode, 200);
      assert.equal((r.json() as { choices: Array<{ finish_reason: string }> }).choices[0].finish_reason, 'abort');
      assert.equal(llm2.engine.stats().blocksUsed, 0);
    } finally {
      await app2.close();
      await llm2.close();
    }
  });
});
