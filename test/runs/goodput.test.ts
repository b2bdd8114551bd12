// Goodput at an SLO (vLLM's --goodput): completed requests per second that met every bound given.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeGoodput, describeSlo, meetsSlo } from '../../src/runs/goodput.js';
import type { RequestRecord } from '../../src/runs/metrics.js';

/** A request sent at 0 whose tokens arrive at the given times. */
function rec(index: number, chunkMs: number[], success = true): RequestRecord {
  return { index, promptLen: 8, outputLen: chunkMs.length, sentMs: 0, chunkMs, endMs: chunkMs.at(-1) ?? 0, success };
}

const records = [
  rec(0, [100, 120, 140]), // TTFT 100, TPOT 20: meets both
  rec(1, [600, 620, 640]), // TTFT 600: too slow to start
  rec(2, [100, 200, 300]), // TPOT 100: too slow to stream
  rec(3, [50, 60], false), // failed: meets nothing
  rec(4, [300]), // one token: no TPOT, meets any TPOT bound
];

test('a request counts only if it met both the TTFT and the TPOT bound', () => {
  const slo = { ttftMs: 500, tpotMs: 50 };
  assert.deepEqual(records.map((r) => meetsSlo(r, slo)), [true, false, false, false, true]);
  const g = computeGoodput(records, slo, 2000);
  assert.equal(g.good, 2);
  assert.equal(g.requestsPerS, 1);
  assert.equal(g.fraction, 2 / 4);
});

test('an unset bound is not checked; bounds are inclusive', () => {
  assert.equal(computeGoodput(records, { ttftMs: 500 }, 1000).good, 3);
  assert.equal(computeGoodput(records, { tpotMs: 50 }, 1000).good, 3);
  assert.equal(computeGoodput(records, { ttftMs: 100, tpotMs: 20 }, 1000).good, 1);
  assert.equal(describeSlo({ ttftMs: 500, tpotMs: 50 }), 'TTFT <= 500 ms, TPOT <= 50 ms');
  assert.deepEqual(computeGoodput([], { ttftMs: 1 }, 0), { good: 0, requestsPerS: 0, fraction: 0 });
});
