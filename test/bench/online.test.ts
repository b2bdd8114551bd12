import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { apiBase, readSse, runOnline } from '../../src/bench/online.js';
import { buildWorkload } from '../../src/runs/workload.js';
import { computeMetrics } from '../../src/runs/metrics.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const s of chunks) c.enqueue(enc.encode(s));
      c.close();
    },
  });
}

test('SSE reader: events split across network chunks, CRLF, [DONE], a last line without newline', async () => {
  const got: string[] = [];
  await readSse(streamOf(['data: {"a"', ':1}\r\n\r\n: comment\n', 'data: [DONE]\n', 'event: x\ndata: {"b":2}']), (d) => got.push(d));
  assert.deepEqual(got, ['{"a":1}', '{"b":2}']);
  await assert.rejects(readSse(streamOf(['data: 1\n']), () => { throw new Error('stop'); }), /stop/);
});

test('API base URL: /v1 appended once; bad URLs named', () => {
  assert.equal(apiBase('http://127.0.0.1:8000'), 'http://127.0.0.1:8000/v1');
  assert.equal(apiBase('http://127.0.0.1:8000/v1/'), 'http://127.0.0.1:8000/v1');
  assert.equal(apiBase('https://x.example/proxy'), 'https://x.example/proxy/v1');
  assert.throws(() => apiBase('localhost:8000'), /--url must be http or https/);
  assert.throws(() => apiBase('not a url'), /--url must be an http\(s\) URL/);
});

/** A fake OpenAI-compatible server: first token after 40 ms, then one every 5 ms, each event written in two pieces. */
async function fakeServer(): Promise<{ server: Server; url: string; bodies: Array<Record<string, unknown>> }> {
  const bodies: Array<Record<string, unknown>> = [];
  const server = createServer(async (req, res) => {
    if (req.method === 'GET' && req.url === '/v1/models') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ object: 'list', data: [{ id: 'fake-model', object: 'model' }] }));
      return;
    }
    let raw = '';
    for await (const c of req) raw += c;
    const body = JSON.parse(raw) as { max_tokens: number };
    bodies.push(body);
    if (body.max_tokens === 13) {
      res.statusCode = 500;
      res.end('{"error":{"message":"boom"}}');
      return;
    }
    res.setHeader('content-type', 'text/event-stream');
    await sleep(40);
    for (let i = 0; i < body.max_tokens; i++) {
      const ev = `data: ${JSON.stringify({ choices: [{ index: 0, text: `t${i}`, finish_reason: null }] })}\n\n`;
      res.write(ev.slice(0, 10));
      res.write(ev.slice(10));
      await sleep(5);
    }
    res.write(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 8, completion_tokens: body.max_tokens } })}\n\n`);
    res.end('data: [DONE]\n\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies };
}

test('online mode: streaming completions timed on the client, request bodies as vLLM sends them, failures recorded', async () => {
  const { server, url, bodies } = await fakeServer();
  try {
    const w = buildWorkload({ kind: 'fixed', seed: 0, numRequests: 3, inputLen: 8, outputLen: 4, arrival: { kind: 'offline' } }, { vocabSize: 100, bosId: 1 });
    let done = 0;
    const run = await runOnline(w, { url, onRequestDone: () => done++ });
    assert.equal(run.model, 'fake-model');
    assert.equal(done, 3);
    assert.equal(bodies.length, 3);
    const b = bodies[0];
    assert.equal(b.model, 'fake-model');
    assert.deepEqual(b.prompt, w.requests[0].promptTokenIds);
    assert.equal(b.max_tokens, 4);
    assert.equal(b.stream, true);
    assert.equal(b.ignore_eos, true);
    assert.equal(b.temperature, 0);
    for (const r of run.records) {
      assert.ok(r.success, r.error);
      assert.equal(r.outputLen, 4);
      assert.equal(r.chunkMs.length, 4);
      assert.ok(r.chunkMs[0] - r.sentMs >= 35, `TTFT ${r.chunkMs[0] - r.sentMs} includes the server's 40 ms`);
    }
    const m = computeMetrics(run.records, run.durationMs);
    assert.equal(m.totalOutputTokens, 12);
    assert.ok(m.ttftMs.p50 >= 35);
    assert.ok(m.itlMs.count === 9 && m.itlMs.min >= 0);

    const bad = buildWorkload({ kind: 'fixed', seed: 0, numRequests: 1, inputLen: 8, outputLen: 13, arrival: { kind: 'offline' } }, { vocabSize: 100 });
    const failed = await runOnline(bad, { url, model: 'given' });
    assert.equal(failed.model, 'given');
    assert.equal(failed.records[0].success, false);
    assert.match(failed.records[0].error!, /HTTP 500.*boom/);
  } finally {
    server.close();
  }
});

test('online mode against nothing: a clear error naming the address', async () => {
  const w = buildWorkload({ kind: 'fixed', seed: 0, numRequests: 1, inputLen: 2, outputLen: 2, arrival: { kind: 'offline' } }, { vocabSize: 100 });
  await assert.rejects(runOnline(w, { url: 'http://127.0.0.1:9' }), /cannot reach http:\/\/127\.0\.0\.1:9\/v1\/models/);
});
