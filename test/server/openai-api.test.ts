// The server driven by the official `openai` client over loopback, on a tiny generated model whose
// steps run in a worker thread: completions and chat, whole and streamed, n > 1, stop strings,
// logprobs, seeds, include_usage, aborts (KV freed), and OpenAI-style errors.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { buildServer } from '../../src/server/app.js';
import { extra, makeTinyModel, slowSteps, startServer, waitFor, type TestServer } from './server-helpers.js';

describe('OpenAI-compatible API over loopback', () => {
  let model: { path: string; cleanup: () => void };
  let s: TestServer;
  let client: OpenAI;

  before(async () => {
    model = await makeTinyModel();
    s = await startServer(model.path, { maxNumSeqs: 8 });
    client = s.client;
  });
  after(async () => {
    await s?.close();
    model?.cleanup();
  });

  it('lists the served model', async () => {
    const models = await client.models.list();
    assert.equal(models.data.length, 1);
    assert.equal(models.data[0].id, s.llm.modelName);
    assert.equal(models.data[0].object, 'model');
  });

  it('completes greedily, with usage, identical to the library and to its own stream', async () => {
    const prompt = 'Once upon a time';
    const whole = await client.completions.create(extra({ model: s.model, prompt, max_tokens: 12, temperature: 0 }, { ignore_eos: true }));
    assert.equal(whole.object, 'text_completion');
    assert.equal(whole.choices.length, 1);
    assert.equal(whole.choices[0].finish_reason, 'length');
    assert.deepEqual(whole.usage, { prompt_tokens: s.llm.encode(prompt).length, completion_tokens: 12, total_tokens: s.llm.encode(prompt).length + 12 });
    const [lib] = await s.llm.generate(prompt, { maxTokens: 12, temperature: 0, ignoreEos: true });
    assert.equal(whole.choices[0].text, lib.text);

    const stream = await client.completions.create(
      extra({ model: s.model, prompt, max_tokens: 12, temperature: 0, stream: true as const, stream_options: { include_usage: true } }, { ignore_eos: true }),
    );
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    let chunksWithNullUsage = 0;
    for await (const chunk of stream) {
      if (chunk.choices.length === 0) {
        usage = chunk.usage;
        continue;
      }
      if (chunk.usage === null) chunksWithNullUsage++;
      text += chunk.choices[0].text;
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    assert.equal(text, whole.choices[0].text);
    assert.equal(finish, 'length');
    assert.deepEqual(usage, whole.usage);
    assert.ok(chunksWithNullUsage > 0, 'with include_usage, content chunks carry usage: null');
  });

  it('chats through the chat template, whole and streamed', async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: 'system', content: 'You are a storyteller.' },
      { role: 'user', content: 'Tell me about a cat.' },
    ];
    const whole = await client.chat.completions.create(extra({ model: s.model, messages, max_tokens: 10, temperature: 0 }, { ignore_eos: true }));
    assert.equal(whole.object, 'chat.completion');
    assert.equal(whole.choices[0].message.role, 'assistant');
    assert.equal(whole.choices[0].finish_reason, 'length');
    assert.equal(whole.usage?.completion_tokens, 10);
    assert.ok((whole.usage?.prompt_tokens ?? 0) > s.llm.encode('Tell me about a cat.').length, 'the template adds to the prompt');

    const stream = await client.chat.completions.create(
      extra({ model: s.model, messages, max_completion_tokens: 10, temperature: 0, stream: true as const, stream_options: { include_usage: true } }, { ignore_eos: true }),
    );
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(chunks[0].object, 'chat.completion.chunk');
    assert.equal(chunks[0].choices[0].delta.role, 'assistant', 'the first chunk carries the role');
    const content = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    assert.equal(content, whole.choices[0].message.content);
    const finishes = chunks.flatMap((c) => c.choices.map((ch) => ch.finish_reason)).filter((f) => f !== null);
    assert.deepEqual(finishes, ['length']);
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, whole.usage);
  });

  it("renders chat with the model's own template when the GGUF has one", async () => {
    const metadata = s.llm.metadata as Record<string, unknown>;
    metadata['tokenizer.chat_template'] = '{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>';
    const app = await buildServer(s.llm);
    try {
      const payload = { messages: [{ role: 'user', content: 'Hi there' }], max_tokens: 2, ignore_eos: true };
      const r = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload });
      const tok = s.llm.tokenizer!;
      const expected = tok.encode('<user>Hi there<assistant>', { addBos: tok.addBos, parseSpecial: true }).length;
      assert.equal((r.json() as { usage: { prompt_tokens: number } }).usage.prompt_tokens, expected);
      // The fallback transcript of the same message has a different length.
      const fallback = await s.client.chat.completions.create({ model: s.model, ...payload } as OpenAI.ChatCompletionCreateParamsNonStreaming);
      assert.notEqual(fallback.usage?.prompt_tokens, expected);
    } finally {
      delete metadata['tokenizer.chat_template'];
      await app.close();
    }
  });

  it('n > 1 returns n choices; seeds reproduce, whatever else shares the batch', async () => {
    const params = extra({ model: s.model, prompt: 'The dog', max_tokens: 8, temperature: 1, n: 3, seed: 1234 }, { ignore_eos: true });
    // The same seeded request twice, the second alongside unrelated traffic.
    const first = await client.completions.create(params);
    const [second] = await Promise.all([
      client.completions.create(params),
      client.completions.create(extra({ model: s.model, prompt: 'Something else entirely', max_tokens: 12, temperature: 1 }, { ignore_eos: true })),
      client.chat.completions.create({ model: s.model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 6 }),
    ]);
    assert.deepEqual(first.choices.map((c) => c.index), [0, 1, 2]);
    assert.equal(first.usage?.completion_tokens, 24);
    assert.deepEqual(second.choices.map((c) => c.text), first.choices.map((c) => c.text));
    const other = await client.completions.create({ ...params, seed: 4321 });
    assert.notDeepEqual(other.choices.map((c) => c.text), first.choices.map((c) => c.text));
    // Streaming n=2: chunks of both indices, each ending once.
    const stream = await client.completions.create({ ...params, n: 2, stream: true as const });
    const texts = ['', ''];
    const finished = [0, 0];
    for await (const c of stream) {
      for (const ch of c.choices) {
        texts[ch.index] += ch.text;
        if (ch.finish_reason) finished[ch.index]++;
      }
    }
    assert.deepEqual(finished, [1, 1]);
    assert.deepEqual(texts, first.choices.slice(0, 2).map((c) => c.text));
  });

  it('stop strings end the text just before the stop string', async () => {
    const base = extra({ model: s.model, prompt: 'Once', max_tokens: 24, temperature: 0 }, { ignore_eos: true });
    const full = (await client.completions.create(base)).choices[0].text;
    assert.ok(full.length >= 8, `need some text to cut, got ${JSON.stringify(full)}`);
    const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
    const cut = await client.completions.create({ ...base, stop: [stop, 'never-appears'] });
    assert.equal(cut.choices[0].text, full.slice(0, full.indexOf(stop)));
    assert.equal(cut.choices[0].finish_reason, 'stop');
    // The same through a stream: no part of the stop string leaks out.
    const stream = await client.completions.create({ ...base, stop, stream: true as const });
    let streamed = '';
    for await (const c of stream) streamed += c.choices[0]?.text ?? '';
    assert.equal(streamed, cut.choices[0].text);
  });

  it('reports logprobs for completions and chat', async () => {
    const c = await client.completions.create(extra({ model: s.model, prompt: 'A', max_tokens: 5, temperature: 0, logprobs: 3 }, { ignore_eos: true }));
    const lp = c.choices[0].logprobs!;
    assert.equal(lp.tokens!.length, 5);
    assert.equal(lp.token_logprobs!.length, 5);
    assert.equal(lp.top_logprobs!.length, 5);
    lp.token_logprobs!.forEach((x, i) => {
      assert.ok(x <= 0);
      const top = Object.values(lp.top_logprobs![i]);
      assert.ok(top.length >= 3);
      // Greedy picks the most likely token.
      assert.ok(Math.abs(Math.max(...top) - x) < 1e-5);
    });
    // Offsets point into the returned text, where each token's text begins.
    assert.equal(lp.text_offset![0], 0);
    lp.text_offset!.forEach((o, i) => {
      assert.ok(o >= (i > 0 ? lp.text_offset![i - 1] : 0) && o <= c.choices[0].text.length);
      if (!lp.tokens![i].startsWith('bytes:')) assert.equal(c.choices[0].text.slice(o, o + lp.tokens![i].length), lp.tokens![i]);
    });

    const chat = await client.chat.completions.create(
      extra({ model: s.model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 2 }, { ignore_eos: true }),
    );
    const content = chat.choices[0].logprobs!.content!;
    assert.equal(content.length, 4);
    for (const t of content) {
      assert.equal(t.top_logprobs.length, 2);
      assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob);
      assert.ok(Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-5);
      // A token that is only part of a UTF-8 character is spelled by its bytes, as OpenAI does.
      if (t.token.startsWith('bytes:')) assert.equal(t.token, 'bytes:' + t.bytes!.map((b) => '\\x' + b.toString(16).padStart(2, '0')).join(''));
      else assert.deepEqual(t.bytes, [...Buffer.from(t.token, 'utf8')]);
    }
    const none = await client.chat.completions.create({ model: s.model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
    assert.equal(none.choices[0].logprobs, null);
  });

  it('token-id prompts and batched prompts', async () => {
    const ids = s.llm.encode('Once upon');
    const r = await client.completions.create(extra({ model: s.model, prompt: [ids, ids], max_tokens: 4, temperature: 0 }, { ignore_eos: true, return_token_ids: true }));
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
    assert.equal(r.choices[0].text, r.choices[1].text);
    assert.deepEqual(r.usage, { prompt_tokens: 2 * ids.length, completion_tokens: 8, total_tokens: 2 * ids.length + 8 });
    const tokenIds = (r.choices[0] as unknown as { token_ids: number[] }).token_ids;
    assert.equal(tokenIds.length, 4);
    assert.equal(s.llm.tokenizer!.decode(tokenIds), r.choices[0].text);
  });

  it('a client abort ends the request and frees its KV blocks', async () => {
    // 200 tokens would otherwise be done in ~20 ms on a fast CPU, before the abort reaches the server.
    const restore = slowSteps(s.llm, 3);
    const controller = new AbortController();
    const stream = await client.completions.create(
      extra({ model: s.model, prompt: 'Abort me', max_tokens: 200, temperature: 0, stream: true as const }, { ignore_eos: true }),
      { signal: controller.signal },
    );
    let chunks = 0;
    let stepAtAbort = 0;
    // The client's stream simply ends when its signal aborts.
    for await (const _ of stream) {
      if (++chunks === 3) {
        stepAtAbort = s.llm.engine.stats().steps;
        controller.abort();
      }
    }
    assert.equal(chunks, 3);
    const abortedBefore = s.llm.engine.stats().requestsAborted;
    await waitFor(() => s.llm.engine.stats().running === 0 && s.llm.engine.stats().waiting === 0, 2000, 'the aborted request to leave the engine');
    assert.equal(s.llm.engine.stats().blocksUsed, 0, 'no KV block is still referenced');
    assert.ok(s.llm.engine.stats().requestsAborted >= 1);
    // The server frees the blocks as soon as it sees the socket close; only the steps already under
    // way while the close travelled over loopback may run.
    const stepsAfter = s.llm.engine.stats().steps - stepAtAbort;
    assert.ok(stepsAfter <= 3, `blocks freed ${stepsAfter} steps after the client aborted`);
    assert.equal(s.app.stepwise.activeRequests(), 0);

    // A client that gives up on a whole (non-streamed) response is aborted too.
    const c2 = new AbortController();
    const pending = client.completions.create(extra({ model: s.model, prompt: 'Abort me too', max_tokens: 200, temperature: 0 }, { ignore_eos: true }), { signal: c2.signal });
    await waitFor(() => s.llm.engine.stats().running === 1, 5000, 'the request to start');
    c2.abort();
    await assert.rejects(pending);
    await waitFor(() => s.llm.engine.stats().running === 0, 2000, 'the abandoned request to be aborted');
    assert.equal(s.llm.engine.stats().blocksUsed, 0);
    assert.ok(s.llm.engine.stats().requestsAborted > abortedBefore);
    restore();
  });

  it('answers mistakes with OpenAI-style errors naming the field', async () => {
    await assert.rejects(client.completions.create({ model: 'gpt-9', prompt: 'x' }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal((e.error as { code?: string }).code, 'model_not_found');
      return true;
    });
    await assert.rejects(client.completions.create({ model: s.model, prompt: 'x', temperature: -1 }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.param, 'temperature');
      return true;
    });
    await assert.rejects(client.completions.create({ model: s.model, prompt: 'x', max_tokens: 10_000_000 }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.param, 'max_tokens');
      assert.match(e.message, /maximum context length/);
      return true;
    });
    await assert.rejects(client.chat.completions.create({ model: s.model, messages: [] }), (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === 'messages');

    const post = (body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
      fetch(`${s.baseURL}/v1/completions`, { method: 'POST', headers, body });
    const badJson = await post('{"prompt": "x",');
    assert.equal(badJson.status, 400);
    assert.equal(((await badJson.json()) as { error: { type: string } }).error.type, 'invalid_request_error');
    const huge = await post(JSON.stringify({ prompt: 'x'.repeat(2 * 1024 * 1024) }));
    assert.equal(huge.status, 413);
    assert.ok(((await huge.json()) as { error: { message: string } }).error.message.length > 0);
    const missing = await post('{"max_tokens": 3}');
    assert.equal(missing.status, 400);
    assert.equal(((await missing.json()) as { error: { param: string } }).error.param, 'prompt');
    const wrongType = await post('{"prompt": "x", "n": "2"}');
    assert.equal(((await wrongType.json()) as { error: { param: string } }).error.param, 'n');
    const unknownRoute = await fetch(`${s.baseURL}/v1/nothing`);
    assert.equal(unknownRoute.status, 404);
  });
});
