import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ModelConfig } from '../../src/model/config.js';
import { computeUtilization, decodeThroughput, flopModel, matmulParams, slotCapacity, slotUtilization, stepFlops } from '../../src/runs/utilization.js';
import { buildTimeline, renderAsciiTimeline } from '../../src/runs/timeline.js';
import { stepRecord } from './helpers.js';

test('slot capacity: max_num_seqs for continuous, the batch size for static (within max_num_seqs), 1 for none', () => {
  assert.equal(slotCapacity('continuous', 64, 32), 64);
  assert.equal(slotCapacity('static', 64, 32), 32);
  assert.equal(slotCapacity('static', 16, 32), 16);
  assert.equal(slotCapacity('none', 64, 32), 1);
});

test('slot utilisation: useful sequences over available slots, saturated phase = decode steps with requests waiting', () => {
  const steps = [
    // Prefill of three prompts, two requests still waiting: not a decode step.
    stepRecord({ numWaiting: 2, seqs: [{ requestId: 'a', prefillTokens: 5 }, { requestId: 'b', prefillTokens: 5 }, { requestId: 'c', prefillTokens: 5 }] }),
    // Saturated: 3 of 4 slots decode.
    stepRecord({ numWaiting: 2, seqs: [{ requestId: 'a', decodeTokens: 1 }, { requestId: 'b', decodeTokens: 1 }, { requestId: 'c', decodeTokens: 1 }] }),
    // Saturated: c finished but is held as a padding row: not useful.
    stepRecord({ numWaiting: 2, seqs: [{ requestId: 'a', decodeTokens: 1 }, { requestId: 'b', decodeTokens: 1 }, { requestId: 'c', padRows: 1 }] }),
    // Drain: nobody waiting.
    stepRecord({ numWaiting: 0, seqs: [{ requestId: 'a', decodeTokens: 1 }] }),
  ];
  const u = slotUtilization(steps, 4);
  assert.equal(u.saturatedSteps, 2);
  assert.equal(u.saturated, (3 + 2) / (2 * 4));
  assert.equal(u.overall, (3 + 3 + 2 + 1) / (4 * 4));
  assert.equal(u.steps, 4);
  // No saturated phase at all: null, not 0.
  assert.equal(slotUtilization(steps.slice(3), 4).saturated, null);
  assert.equal(slotUtilization([], 4).overall, 0);
  assert.throws(() => slotUtilization(steps, 0), /capacity must be >= 1/);
});

const config: ModelConfig = {
  arch: 'llama', dim: 4, hiddenDim: 8, nLayers: 1, nHeads: 2, nKvHeads: 1, headDim: 2, vocabSize: 10,
  contextLength: 64, ropeTheta: 10000, ropeDim: 2, normEps: 1e-5, tiedEmbeddings: false,
};

test('FLOPs: 2 x block weights per token, output projection per sampled row, attention per attended key', () => {
  const m = flopModel(config);
  // wq 4x4 + wk, wv 2x4 each + wo 4x4 + 3 FFN 8x4 = 16 + 16 + 16 + 96 = 144 weights.
  assert.equal(m.perToken, 288);
  assert.equal(m.perLogitRow, 80);
  assert.equal(m.perAttendedKey, 16);
  assert.equal(matmulParams(config), 144 + 40);
  const steps = [
    // Prompt of 3 tokens at positions 0..2: attends 1 + 2 + 3 = 6 keys, sampled.
    stepRecord({ seqs: [{ requestId: 'a', seqId: 7, prefillTokens: 3, sampled: true }] }),
    // Decode at position 3: 4 keys; plus a padding row that costs nothing useful.
    stepRecord({ seqs: [{ requestId: 'a', seqId: 7, decodeTokens: 1, sampled: true }, { requestId: 'b', seqId: 8, padRows: 1 }] }),
    // Preempted and recomputed: 4 tokens from position 0 again (1+2+3+4 = 10 keys).
    stepRecord({ seqs: [{ requestId: 'a', seqId: 7, prefillTokens: 4, sampled: true }] }),
  ];
  assert.deepEqual(stepFlops(steps, m), [3 * 288 + 6 * 16 + 80, 288 + 4 * 16 + 80, 4 * 288 + 10 * 16 + 80]);
  const c = computeUtilization(steps, config, 2, 1000);
  assert.equal(c.totalFlops, 1040 + 432 + 1392);
  assert.equal(c.achievedFlops, c.totalFlops / 2);
  assert.equal(c.utilization, c.totalFlops / 2 / 1000);
});

test('decode throughput counts only steps without prefill work', () => {
  const steps = [
    stepRecord({ totalMs: 100, seqs: [{ requestId: 'a', prefillTokens: 50 }] }),
    stepRecord({ totalMs: 10, seqs: [{ requestId: 'a', decodeTokens: 1 }, { requestId: 'b', decodeTokens: 1 }] }),
    stepRecord({ totalMs: 30, seqs: [{ requestId: 'a', decodeTokens: 1 }, { requestId: 'b', decodeTokens: 1 }] }),
  ];
  assert.equal(decodeThroughput(steps), 4 / 0.04);
  assert.equal(decodeThroughput(steps.slice(0, 1)), null);
});

test('timeline: waiting from arrival to first step, running while computing, held while padding, nothing after', () => {
  const steps = [
    stepRecord({ startMs: 0, seqs: [{ requestId: 'r0', prefillTokens: 4 }, { requestId: 'r1', prefillTokens: 4 }] }),
    stepRecord({ startMs: 10, seqs: [{ requestId: 'r0', decodeTokens: 1 }, { requestId: 'r1', padRows: 1 }] }),
    stepRecord({ startMs: 20, seqs: [{ requestId: 'r0', decodeTokens: 1 }, { requestId: 'r1', padRows: 1 }] }),
    stepRecord({ startMs: 30, seqs: [{ requestId: 'r2', prefillTokens: 4 }] }),
    stepRecord({ startMs: 40, seqs: [{ requestId: 'r2', decodeTokens: 1 }] }),
  ];
  const t = buildTimeline(steps, [
    { index: 0, requestId: 'r0', addedAtMs: -1 },
    { index: 1, requestId: 'r1', addedAtMs: -1 },
    { index: 2, requestId: 'r2', addedAtMs: 15 }, // arrives while step 1 runs: waits from step 2
  ]);
  assert.equal(t.numSteps, 5);
  assert.deepEqual(t.segments, [
    { request: 0, state: 'running', startStep: 0, endStep: 3 },
    { request: 1, state: 'running', startStep: 0, endStep: 1 },
    { request: 1, state: 'held', startStep: 1, endStep: 3 },
    { request: 2, state: 'waiting', startStep: 2, endStep: 3 },
    { request: 2, state: 'running', startStep: 3, endStep: 5 },
  ]);
  const text = renderAsciiTimeline(t, { title: 'T' }).split('\n');
  assert.equal(text[0], 'T');
  assert.match(text[1], /^5 steps \(1 column = 1 step\)/);
  assert.deepEqual(text.slice(2), ['req 0 |###', 'req 1 |#==', 'req 2 |  .##']);
  // Narrower than the run: columns merge steps, running wins over held and waiting.
  const narrow = renderAsciiTimeline({ ...t, numSteps: 50, segments: t.segments.map((s) => ({ ...s, startStep: s.startStep * 10, endStep: s.endStep * 10 })) }, { width: 10, maxRows: 2 }).split('\n');
  assert.match(narrow[0], /1 column = 5\.0 steps/);
  assert.deepEqual(narrow.slice(1), ['req 0 |######', 'req 1 |##====', '... 1 more requests not shown']);
});
