// The discrete-event loop: when steps start, when tokens arrive, how arrivals, idle gaps and static
// batching's wait interleave with steps — checked against hand-computed virtual times.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { simulate, SimulationError } from '../../src/sim/simulator.js';
import type { SchedulerOutput } from '../../src/engine/types.js';
import { computeMetrics } from '../../src/runs/metrics.js';
import { req, simOptions, poissonWorkload } from './helpers.js';

const constant = (ms: number) => () => ms;

test('one request: a prefill step then one decode step per token; tokens arrive at step ends', () => {
  const r = simulate({ requests: [req(0, 10, 4)], scheduler: simOptions(), stepTimeMs: constant(10) });
  const rec = r.records[0];
  assert.equal(rec.success, true);
  assert.equal(rec.outputLen, 4);
  assert.deepEqual(rec.chunkMs, [10, 20, 30, 40]);
  assert.equal(rec.endMs, 40);
  assert.equal(r.durationMs, 40);
  assert.deepEqual(r.steps.map((s) => s.startMs), [0, 10, 20, 30]);
  assert.deepEqual(r.steps.map((s) => [s.numPrefillTokens, s.numDecodeTokens]), [[10, 0], [0, 1], [0, 1], [0, 1]]);
  const m = computeMetrics(r.records, r.durationMs);
  assert.equal(m.ttftMs.p50, 10);
  assert.equal(m.tpotMs.p50, 10);
  assert.equal(m.outputThroughput, 4 / 0.04);
});

test('a request arriving during a step waits for the next step; its TTFT counts from its arrival', () => {
  const r = simulate({ requests: [req(0, 8, 3), req(1, 8, 2, 5)], scheduler: simOptions(), stepTimeMs: constant(10) });
  // Step 0 [0,10): request 0 prefills. Request 1 arrives at 5 and joins step 1 [10,20) beside 0's decode.
  assert.deepEqual(r.steps.map((s) => s.startMs), [0, 10, 20]);
  assert.deepEqual(r.steps[1].seqs.map((s) => [s.requestId, s.prefillTokens, s.decodeTokens]), [['bench-0', 0, 1], ['bench-1', 8, 0]]);
  assert.deepEqual(r.records[1].chunkMs, [20, 30]);
  assert.equal(r.records[1].sentMs, 5);
  assert.equal(computeMetrics([r.records[1]]).ttftMs.p50, 15);
});

test('the clock jumps over idle time to the next arrival', () => {
  const r = simulate({ requests: [req(0, 4, 2), req(1, 4, 2, 1000)], scheduler: simOptions(), stepTimeMs: constant(7) });
  assert.deepEqual(r.steps.map((s) => s.startMs), [0, 7, 1000, 1007]);
  assert.deepEqual(r.records[1].chunkMs, [1007, 1014]);
  assert.equal(r.durationMs, 1014);
});

test('the step-time function learns how long the engine sat idle before each step', () => {
  const idle: number[] = [];
  simulate({ requests: [req(0, 4, 2), req(1, 4, 2, 1000)], scheduler: simOptions(), stepTimeMs: (_, ctx) => (idle.push(ctx.idleMs), 7) });
  // The first step of the run, one right after it, then the second request after the clock jumped
  // from 14 ms (the first request's end) to its arrival at 1000 ms, and one right after that.
  assert.deepEqual(idle, [Infinity, 0, 986, 0]);
});

test('step times may depend on the batch: each step lasts what the cost function says for it', () => {
  const cost = (out: SchedulerOutput) => 1 + out.numBatchedTokens;
  const r = simulate({ requests: [req(0, 6, 3), req(1, 4, 3)], scheduler: simOptions(), stepTimeMs: cost });
  // Step 0: both prefill (10 rows) = 11 ms; then two decode steps of 2 rows = 3 ms each.
  assert.deepEqual(r.steps.map((s) => s.startMs), [0, 11, 14]);
  assert.deepEqual(r.records[0].chunkMs, [11, 14, 17]);
  for (let i = 1; i < r.steps.length; i++) assert.equal(r.steps[i].startMs, r.steps[i - 1].startMs + r.steps[i - 1].totalMs);
});

test('static batching with a wait: the batch starts when full or when the oldest request has waited staticWaitMs', () => {
  const sched = simOptions({ policy: 'static', staticBatchSize: 3, staticWaitMs: 50 });
  // Full at 30 (third arrival): starts at once.
  let r = simulate({ requests: [req(0, 4, 2, 0), req(1, 4, 2, 10), req(2, 4, 2, 30)], scheduler: sched, stepTimeMs: constant(5) });
  assert.equal(r.steps[0].startMs, 30);
  assert.equal(r.steps[0].seqs.length, 3);
  // Only two arrive: the batch starts at 0 + 50 with two; a late third (at 60) waits for the next batch.
  r = simulate({ requests: [req(0, 4, 2, 0), req(1, 4, 2, 10), req(2, 4, 2, 60)], scheduler: sched, stepTimeMs: constant(5) });
  assert.equal(r.steps[0].startMs, 50);
  assert.deepEqual(r.steps[0].seqs.map((s) => s.requestId), ['bench-0', 'bench-1']);
  // First batch: 50-60 (prefill, decode). Request 2 (arrived 60) then waits alone until 60 + 50.
  const third = r.steps.find((s) => s.seqs.some((q) => q.requestId === 'bench-2'))!;
  assert.equal(third.startMs, 110);
  assert.deepEqual(r.records[2].chunkMs, [115, 120]);
});

test('no batching runs requests one after another, in arrival order', () => {
  const r = simulate({ requests: [req(0, 4, 3), req(1, 4, 2), req(2, 4, 1)], scheduler: simOptions({ policy: 'none' }), stepTimeMs: constant(10) });
  assert.deepEqual(r.records.map((x) => x.chunkMs), [[10, 20, 30], [40, 50], [60]]);
  for (const s of r.steps) assert.equal(s.seqs.length, 1);
});

test('simultaneous arrivals are admitted in workload order (ties broken by index)', () => {
  const reqs = [req(2, 4, 1, 0), req(0, 4, 1, 0), req(1, 4, 1, 0)];
  const r = simulate({ requests: reqs, scheduler: simOptions({ policy: 'none' }), stepTimeMs: constant(1) });
  assert.deepEqual(r.steps.map((s) => s.seqs[0].requestId), ['bench-0', 'bench-1', 'bench-2']);
  assert.deepEqual(r.records.map((x) => x.index), [0, 1, 2]);
});

test('a request the engine would refuse is recorded as failed, the rest run', () => {
  const r = simulate({ requests: [req(0, 4, 2), req(1, 600, 2), req(2, 4, 2)], scheduler: simOptions(), stepTimeMs: constant(1) });
  assert.equal(r.records[1].success, false);
  assert.match(r.records[1].error!, /maximum model length of 512/);
  assert.equal(r.records[0].success && r.records[2].success, true);
  const m = computeMetrics(r.records, r.durationMs);
  assert.equal(m.completed, 2);
  assert.equal(m.failed, 1);
});

test('preemption under a small KV cache: every request still finishes with all its tokens', () => {
  const reqs = poissonWorkload(40, 3, 200);
  const r = simulate({ requests: reqs, scheduler: simOptions({ numBlocks: 24, maxNumSeqs: 8 }), stepTimeMs: constant(2) });
  assert.ok(r.stats.preemptions > 0, 'the KV cache is small enough to force preemption');
  assert.equal(r.numPreemptions, r.stats.preemptions);
  for (const [i, rec] of r.records.entries()) {
    assert.equal(rec.success, true);
    assert.equal(rec.outputLen, reqs[i].outputLen);
    assert.equal(rec.chunkMs.length, reqs[i].outputLen);
    for (let k = 1; k < rec.chunkMs.length; k++) assert.ok(rec.chunkMs[k] > rec.chunkMs[k - 1]);
    assert.ok(rec.chunkMs[0] > reqs[i].arrivalMs);
  }
  // Steps never overlap and never start before the previous one ended.
  for (let i = 1; i < r.steps.length; i++) assert.ok(r.steps[i].startMs >= r.steps[i - 1].startMs + r.steps[i - 1].totalMs - 1e-9);
});

test('a step time that is not a finite number stops the simulation with a clear error', () => {
  assert.throws(() => simulate({ requests: [req(0, 4, 2)], scheduler: simOptions(), stepTimeMs: () => NaN }), (e: unknown) => e instanceof SimulationError && /step time must be a finite number/.test((e as Error).message));
  assert.throws(() => simulate({ requests: [{ ...req(0, 4, 2), arrivalMs: -1 }], scheduler: simOptions(), stepTimeMs: constant(1) }), /arrival time must be a finite number >= 0/);
});

test('the same inputs give the same run (no hidden randomness, no wall clock)', () => {
  const reqs = poissonWorkload(30, 11, 50);
  const a = simulate({ requests: reqs, scheduler: simOptions(), stepTimeMs: (o) => 0.5 + 0.1 * o.numBatchedTokens });
  const b = simulate({ requests: reqs, scheduler: simOptions(), stepTimeMs: (o) => 0.5 + 0.1 * o.numBatchedTokens });
  assert.deepEqual(a.records, b.records);
  assert.deepEqual(a.steps, b.steps);
});

test('past maxKeptSteps the step records are dropped (onStep still sees every step); the run is unchanged', () => {
  const reqs = poissonWorkload(20, 4, 100);
  let seen = 0;
  const full = simulate({ requests: reqs, scheduler: simOptions(), stepTimeMs: constant(1) });
  const capped = simulate({ requests: reqs, scheduler: simOptions(), stepTimeMs: constant(1), maxKeptSteps: 10, onStep: () => seen++ });
  assert.ok(full.steps.length > 10);
  assert.equal(full.stepsDropped, false);
  assert.equal(capped.stepsDropped, true);
  assert.deepEqual(capped.steps, []);
  assert.equal(seen, full.numSteps);
  assert.deepEqual(capped.records, full.records);
});
