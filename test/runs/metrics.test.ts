import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeMetrics, percentile, requestLatencies, summarize, type RequestRecord } from '../../src/runs/metrics.js';

const close = (a: number, b: number, msg?: string) => assert.ok(Math.abs(a - b) < 1e-9, `${msg ?? ''} ${a} != ${b}`);

test('percentile interpolates linearly between ranks, like numpy', () => {
  assert.equal(percentile([1, 2, 3, 4], 0), 1);
  assert.equal(percentile([1, 2, 3, 4], 100), 4);
  close(percentile([1, 2, 3, 4], 50), 2.5);
  close(percentile([1, 2, 3, 4], 90), 3.7); // rank 2.7
  close(percentile([10, 20], 99), 19.9);
  assert.equal(percentile([7], 99), 7);
  assert.equal(percentile([], 50), 0);
  assert.throws(() => percentile([1], 101), /within 0..100/);
});

test('summarize: mean, population std, percentiles, extremes', () => {
  const s = summarize([4, 1, 3, 2]);
  assert.equal(s.count, 4);
  close(s.mean, 2.5);
  close(s.std, Math.sqrt(1.25));
  close(s.p50, 2.5);
  assert.equal(s.min, 1);
  assert.equal(s.max, 4);
  assert.deepEqual(summarize([]), { count: 0, mean: 0, std: 0, p50: 0, p90: 0, p99: 0, min: 0, max: 0 });
});

const recs: RequestRecord[] = [
  // Sent at 0; tokens at 100, 150, 250.
  { index: 0, promptLen: 10, outputLen: 3, sentMs: 0, chunkMs: [100, 150, 250], endMs: 260, success: true },
  // Sent at 50; one token at 250.
  { index: 1, promptLen: 20, outputLen: 1, sentMs: 50, chunkMs: [250], endMs: 250, success: true },
  // Failed: counts nowhere but in `failed`.
  { index: 2, promptLen: 99, outputLen: 0, sentMs: 0, chunkMs: [], endMs: 10, success: false, error: 'boom' },
];

test('per-request latencies follow benchmark_serving.py', () => {
  const a = requestLatencies(recs[0]);
  assert.equal(a.ttftMs, 100);
  assert.equal(a.e2eMs, 250); // to the last token, not to endMs
  assert.equal(a.tpotMs, 75); // (250 - 100) / (3 - 1): the first token excluded
  assert.deepEqual(a.itlMs, [50, 100]);
  const b = requestLatencies(recs[1]);
  assert.equal(b.ttftMs, 200);
  assert.equal(b.e2eMs, 200);
  assert.equal(b.tpotMs, undefined); // one output token: no TPOT
  assert.deepEqual(b.itlMs, []);
});

test('run metrics: throughputs over the benchmark duration, latency distributions over successful requests', () => {
  const m = computeMetrics(recs, 1000);
  assert.equal(m.completed, 2);
  assert.equal(m.failed, 1);
  assert.equal(m.durationS, 1);
  assert.equal(m.totalInputTokens, 30);
  assert.equal(m.totalOutputTokens, 4);
  assert.equal(m.requestThroughput, 2);
  assert.equal(m.outputThroughput, 4);
  assert.equal(m.totalTokenThroughput, 34);
  close(m.ttftMs.mean, 150);
  close(m.ttftMs.p90, 190);
  close(m.ttftMs.p99, 199);
  close(m.ttftMs.std, 50);
  assert.equal(m.tpotMs.count, 1);
  assert.equal(m.tpotMs.mean, 75);
  assert.equal(m.itlMs.count, 2);
  close(m.itlMs.mean, 75);
  close(m.e2eMs.p50, 225);
  // Without a duration: first send to last end (0 .. 260 ms).
  close(computeMetrics(recs).durationS, 0.26);
  assert.equal(computeMetrics([]).outputThroughput, 0);
});
