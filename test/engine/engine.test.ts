import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, EngineClosedError, QueueFullError, type EngineOptions, type RequestStream } from '../../src/engine/engine.js';
import { FakeModelRunner, type FakeRunnerOptions } from '../helpers/fake-runner.js';
import type { RequestOutput, SchedulerOutput } from '../../src/engine/types.js';
import type { StepRecord } from '../../src/engine/step-trace.js';
import { Driver, prompt, sampling, schedOptions } from './scheduler-driver.js';

function engineOptions(over: Partial<EngineOptions> = {}): EngineOptions {
  return { ...schedOptions(), tokenizer: null, ...over };
}

function makeEngine(over: Partial<EngineOptions> = {}, runnerOpts: Partial<FakeRunnerOptions> = {}) {
  const opts = engineOptions(over);
  const runner = new FakeModelRunner({ numBlocks: opts.numBlocks, blockSize: opts.blockSize, ...runnerOpts });
  return { engine: new Engine(runner, opts), runner };
}

async function collect(stream: RequestStream): Promise<RequestOutput[]> {
  const outs: RequestOutput[] = [];
  for await (const o of stream) outs.push(o);
  return outs;
}

const tokens = (outs: RequestOutput[], index = 0) => outs.filter((o) => o.index === index).flatMap((o) => o.newTokenIds);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('streams yield every completion\'s tokens (same as the synchronous scheduler) and end when all finish', async () => {
  const { engine } = makeEngine();
  const reqs = [0, 1, 2].map((i) => ({ requestId: `r${i}`, promptTokenIds: prompt(i, 5 + i), sampling: sampling({ maxTokens: 6, n: i === 2 ? 3 : 1, temperature: 1, seed: i }) }));
  const streams = reqs.map((r) => engine.addRequest(r));
  assert.deepEqual(streams.map((s) => s.requestId), ['r0', 'r1', 'r2']);
  const results = await Promise.all(streams.map(collect));
  const d = new Driver();
  for (const r of reqs) d.add(r);
  d.run();
  for (const [i, outs] of results.entries()) {
    const n = reqs[i].sampling.n;
    for (let k = 0; k < n; k++) assert.deepEqual(tokens(outs, k), d.completions.get(`r${i}`)![k].tokenIds);
    assert.equal(outs.filter((o) => o.finished).length, n);
    assert.ok(outs.every((o) => o.finishReason !== 'abort'));
  }
  assert.ok(streams.every((s) => s.finished));
  const st = engine.stats();
  assert.equal(st.requestsFinished, 3);
  assert.equal(st.blocksUsed, 0);
  await engine.close();
});

test('a request added without requestId gets a fresh one; QueueFullError when the queue is full', async () => {
  const { engine } = makeEngine({ maxQueue: 1, maxNumSeqs: 1, maxNumBatchedTokens: 8 });
  const a = engine.addRequest({ promptTokenIds: [1, 2], sampling: sampling({ maxTokens: 3 }) });
  assert.match(a.requestId, /^req-\d+$/);
  assert.throws(() => engine.addRequest({ promptTokenIds: [1], sampling: sampling() }), QueueFullError);
  await collect(a);
  await engine.close();
});

test('abort ends the stream with finishReason abort and frees the blocks at once', async () => {
  const { engine } = makeEngine({}, { costMs: { perStep: 2 } });
  const s = engine.addRequest({ requestId: 'a', promptTokenIds: prompt(1, 9), sampling: sampling({ maxTokens: 200, n: 2 }) });
  const outs: RequestOutput[] = [];
  for await (const o of s) {
    outs.push(o);
    if (outs.length === 6) {
      assert.ok(engine.stats().blocksUsed > 0);
      assert.equal(engine.abort('a'), true);
      assert.equal(engine.stats().blocksUsed, 0);
    }
  }
  const last = outs.slice(-2);
  assert.deepEqual(last.map((o) => [o.finished, o.finishReason]).sort(), [[true, 'abort'], [true, 'abort']]);
  assert.ok(outs.length < 20);
  assert.equal(engine.abort('a'), false, 'unknown ids are ignored');
  await engine.close();
});

test('leaving a for-await loop early aborts the request', async () => {
  const { engine } = makeEngine({}, { costMs: { perStep: 1 } });
  const s = engine.addRequest({ requestId: 'x', promptTokenIds: [1, 2, 3], sampling: sampling({ maxTokens: 100 }) });
  for await (const _ of s) break;
  assert.equal(engine.stats().requestsAborted, 1);
  assert.equal(engine.stats().blocksUsed, 0);
  await engine.close();
});

test('a failing runner step fails only the requests in that step; the engine keeps serving', async () => {
  const failWhen = (s: SchedulerOutput) => s.newSequences.some((n) => n.promptTokenIds[0] === 666);
  const { engine } = makeEngine({ maxNumSeqs: 2, maxNumBatchedTokens: 32 }, { failWhen });
  const good = engine.addRequest({ requestId: 'good', promptTokenIds: [5, 6, 7], sampling: sampling({ maxTokens: 4 }) });
  const bad = engine.addRequest({ requestId: 'bad', promptTokenIds: [666, 1], sampling: sampling({ maxTokens: 4 }) });
  const queued = engine.addRequest({ requestId: 'queued', promptTokenIds: [8, 9], sampling: sampling({ maxTokens: 4 }) });
  await assert.rejects(collect(bad), /injected failure/);
  await assert.rejects(collect(good), /injected failure/, 'good shared the failed step');
  const q = await collect(queued);
  assert.equal(tokens(q).length, 4);
  const later = await collect(engine.addRequest({ requestId: 'later', promptTokenIds: [1, 2], sampling: sampling({ maxTokens: 3 }) }));
  assert.equal(tokens(later).length, 3);
  const st = engine.stats();
  assert.equal(st.failedSteps, 1);
  assert.equal(st.requestsFailed, 2);
  assert.equal(st.blocksUsed, 0);
  const failedRec = engine.trace.records().find((r) => r.error);
  assert.match(failedRec!.error!, /injected failure/);
  await engine.close();
});

test('the loop sleeps when idle (no steps) and wakes for a new request', async () => {
  const { engine, runner } = makeEngine();
  await collect(engine.addRequest({ promptTokenIds: [1, 2], sampling: sampling({ maxTokens: 2 }) }));
  const steps = runner.numSteps;
  await sleep(30);
  assert.equal(runner.numSteps, steps, 'no steps while idle');
  await collect(engine.addRequest({ promptTokenIds: [3, 4], sampling: sampling({ maxTokens: 2 }) }));
  assert.equal(runner.numSteps, steps + 2);
  await engine.close();
});

test('static batching with staticWaitMs: the engine sleeps until the wait runs out, then runs the partial batch', async () => {
  const { engine } = makeEngine({ policy: 'static', staticBatchSize: 4, staticWaitMs: 40 });
  const t0 = performance.now();
  const s = engine.addRequest({ promptTokenIds: [1, 2], sampling: sampling({ maxTokens: 2 }) });
  const outs = await collect(s);
  assert.equal(tokens(outs).length, 2);
  assert.ok(performance.now() - t0 >= 35, 'waited for the batch to fill');
  assert.ok(s.timing.firstScheduledMs! - s.timing.arrivalMs >= 35);
  await engine.close();
});

test('close() aborts every request, closes the runner, and refuses new requests', async () => {
  const { engine, runner } = makeEngine({}, { costMs: { perStep: 2 } });
  const s = engine.addRequest({ promptTokenIds: [1, 2], sampling: sampling({ maxTokens: 200 }) });
  const pending = collect(s);
  await sleep(10);
  await engine.close();
  const outs = await pending;
  assert.equal(outs.at(-1)!.finishReason, 'abort');
  assert.throws(() => engine.addRequest({ promptTokenIds: [1], sampling: sampling() }), EngineClosedError);
  await assert.rejects(runner.execute({ step: 0, scheduled: [], newSequences: [], finishedSeqIds: [], blockCopies: [], numBatchedTokens: 0 }), /closed/);
});

test('autoRun false: nothing runs until step() is called', async () => {
  const { engine } = makeEngine({ autoRun: false });
  const s = engine.addRequest({ promptTokenIds: [1, 2, 3], sampling: sampling({ maxTokens: 2 }) });
  await sleep(5);
  assert.equal(engine.trace.size, 0);
  assert.equal(await engine.step(), true);
  assert.equal(await engine.step(), true);
  assert.equal(await engine.step(), false);
  assert.equal(tokens(await collect(s)).length, 2);
  await engine.close();
});

test('the step trace records each step\'s work, KV use, queue and time split, and calls onStep listeners', async () => {
  const { engine } = makeEngine({ maxNumSeqs: 2, maxNumBatchedTokens: 8, traceCapacity: 3 }, { costMs: { perStep: 1 } });
  const seen: StepRecord[] = [];
  const off = engine.onStep((r) => seen.push(r));
  const a = engine.addRequest({ requestId: 'a', promptTokenIds: prompt(1, 10), sampling: sampling({ maxTokens: 3 }) });
  const b = engine.addRequest({ requestId: 'b', promptTokenIds: prompt(2, 3), sampling: sampling({ maxTokens: 3 }) });
  const c = engine.addRequest({ requestId: 'c', promptTokenIds: prompt(3, 3), sampling: sampling({ maxTokens: 1 }) });
  await Promise.all([a, b, c].map(collect));
  off();
  // a: 8 + 2 prompt tokens, b joins in step 1, both decode twice, then c gets the freed seat.
  assert.equal(seen.length, 5);
  const first = seen[0];
  assert.deepEqual(first.seqs.map((s) => [s.requestId, s.prefillTokens, s.decodeTokens]), [['a', 8, 0]]);
  assert.equal(first.numWaiting, 2);
  assert.equal(first.numRunning, 1);
  assert.equal(first.numJoined, 1);
  assert.equal(first.kvBlocksUsed, 2);
  assert.equal(first.kvBlocksTotal, 64);
  assert.equal(first.policy, 'continuous');
  assert.equal(first.forwardMs, 1);
  // The time split adds up: schedule + execute + update is the whole step. (No lower bound on
  // executeMs from the fake runner's 1 ms timer: Node may fire it early against performance.now().)
  assert.ok(first.scheduleMs >= 0 && first.executeMs > 0 && first.updateMs >= 0);
  assert.ok(Math.abs(first.scheduleMs + first.executeMs + first.updateMs - first.totalMs) < 1e-6, JSON.stringify(first));
  const second = seen[1];
  assert.deepEqual(second.seqs.map((s) => [s.requestId, s.prefillTokens, s.decodeTokens, s.sampled]), [['a', 2, 0, true], ['b', 3, 0, true]]);
  assert.equal(second.numBatchedTokens, 5);
  const decode = seen[2];
  assert.deepEqual(decode.seqs.map((s) => [s.requestId, s.decodeTokens]), [['a', 1], ['b', 1]]);
  assert.equal(decode.numDecodeTokens, 2);
  assert.deepEqual(seen.map((r) => r.numFinished), [0, 0, 0, 2, 1]);
  assert.deepEqual(seen[4].seqs.map((s) => [s.requestId, s.prefillTokens]), [['c', 3]]);
  assert.equal(seen[4].numJoined, 1);
  // The ring keeps the newest `traceCapacity` records, oldest first.
  const recs = engine.trace.records();
  assert.equal(recs.length, 3);
  assert.deepEqual(recs.map((r) => r.step), seen.slice(-3).map((r) => r.step));
  assert.equal(engine.trace.last()!.step, seen.at(-1)!.step);
  await engine.close();
});

test('per-request timing: arrival <= first scheduled <= first token <= each token <= finish', async () => {
  const { engine } = makeEngine({}, { costMs: { perStep: 1 } });
  const s = engine.addRequest({ promptTokenIds: [1, 2, 3], sampling: sampling({ maxTokens: 4, n: 2, temperature: 1, seed: 3 }) });
  await collect(s);
  const t = s.timing;
  assert.ok(t.arrivalMs <= t.firstScheduledMs! && t.firstScheduledMs! <= t.firstTokenMs! && t.firstTokenMs! <= t.finishedMs!);
  assert.equal(t.tokenTimesMs.length, 2);
  for (const times of t.tokenTimesMs) {
    assert.equal(times.length, 4);
    for (let i = 1; i < times.length; i++) assert.ok(times[i] > times[i - 1]);
    assert.ok(times[3] <= t.finishedMs!);
  }
  await engine.close();
});
