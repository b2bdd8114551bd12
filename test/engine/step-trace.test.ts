import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StepTrace, type StepRecord } from '../../src/engine/step-trace.js';

function rec(step: number): StepRecord {
  return {
    step, policy: 'continuous', startMs: step, seqs: [], numPrefillTokens: 0, numDecodeTokens: 0, numPadRows: 0,
    numBatchedTokens: 0, numJoined: 0, numPreempted: 0, numBlockCopies: 0, numFinished: 0, kvBlocksUsed: 0,
    kvBlocksTotal: 1, numWaiting: 0, numRunning: 0, scheduleMs: 0, forwardMs: 0, sampleMs: 0, executeMs: 0, updateMs: 0, totalMs: 0,
  };
}

test('the ring buffer keeps the newest records, oldest first', () => {
  const t = new StepTrace(3);
  assert.deepEqual(t.records(), []);
  assert.equal(t.last(), undefined);
  for (let i = 0; i < 2; i++) t.push(rec(i));
  assert.deepEqual(t.records().map((r) => r.step), [0, 1]);
  for (let i = 2; i < 7; i++) t.push(rec(i));
  assert.deepEqual(t.records().map((r) => r.step), [4, 5, 6]);
  assert.equal(t.last()!.step, 6);
  assert.equal(t.size, 3);
  assert.equal(t.totalRecorded, 7);
  t.clear();
  assert.deepEqual(t.records(), []);
  assert.throws(() => new StepTrace(0), /capacity must be an integer >= 1/);
});

test('listeners get every record, can unsubscribe, and a throwing listener does not stop the others', () => {
  const t = new StepTrace(2);
  const got: number[] = [];
  const origError = console.error;
  console.error = () => {};
  try {
    t.onStep(() => {
      throw new Error('boom');
    });
    const off = t.onStep((r) => got.push(r.step));
    t.push(rec(1));
    off();
    t.push(rec(2));
  } finally {
    console.error = origError;
  }
  assert.deepEqual(got, [1]);
  assert.equal(t.size, 2);
});
