// Small fixtures for the benchmark tests: step records, a word tokenizer and fabricated results.
import type { StepRecord, StepSeqRecord } from '../../src/engine/step-trace.js';
import type { StreamDecoder, Tokenizer } from '../../src/model/tokenizer-types.js';

/** A step record with only what the benchmark reads set; everything else zero. */
export function stepRecord(o: { startMs?: number; seqs?: Array<Partial<StepSeqRecord> & { requestId: string }>; numWaiting?: number; totalMs?: number }): StepRecord {
  const seqs: StepSeqRecord[] = (o.seqs ?? []).map((s, i) => ({ seqId: i, index: 0, prefillTokens: 0, decodeTokens: 0, padRows: 0, sampled: false, ...s }));
  let pre = 0;
  let dec = 0;
  let pad = 0;
  for (const s of seqs) {
    pre += s.prefillTokens;
    dec += s.decodeTokens;
    pad += s.padRows;
  }
  return {
    step: 0, policy: 'continuous', startMs: o.startMs ?? 0, seqs, numPrefillTokens: pre, numDecodeTokens: dec, numPadRows: pad,
    numBatchedTokens: pre + dec + pad, numJoined: 0, numPreempted: 0, numBlockCopies: 0, numFinished: 0, kvBlocksUsed: 0,
    kvBlocksTotal: 1, numWaiting: o.numWaiting ?? 0, numRunning: seqs.length, scheduleMs: 0, forwardMs: 0, sampleMs: 0,
    executeMs: 0, updateMs: 0, totalMs: o.totalMs ?? 0,
  };
}

/** Whitespace-separated words, each word one token (id = 10 + index in a growing table); BOS = 1. */
export function wordTokenizer(): Tokenizer {
  const table = new Map<string, number>();
  const id = (w: string) => {
    let i = table.get(w);
    if (i === undefined) table.set(w, (i = 10 + table.size));
    return i;
  };
  return {
    vocabSize: 100000,
    bosId: 1,
    eosId: 2,
    eogIds: new Set([2]),
    addBos: true,
    encode(text, o) {
      const words = text.split(/\s+/).filter((w) => w !== '').map(id);
      return (o?.addBos ?? true) ? [1, ...words] : words;
    },
    decode: () => '',
    tokenText: () => '',
    streamDecoder(): StreamDecoder {
      return { push: () => '', flush: () => '' };
    },
  };
}

import type { BenchResults, RunResult } from '../../src/runs/results.js';
import type { RequestRecord } from '../../src/runs/metrics.js';
import { computeMetrics } from '../../src/runs/metrics.js';
import { slotUtilization } from '../../src/runs/utilization.js';
import { buildTimeline } from '../../src/runs/timeline.js';

/**
 * A fabricated Stepwise run: `n` requests of `len` output tokens each, `slots` at a time, one step
 * per `stepMs`; static holds finished rows until its batch ends (rows differ in length by index).
 */
export function fakeRun(policy: 'none' | 'static' | 'continuous', n: number, slots: number, stepMs: number): RunResult {
  const steps: StepRecord[] = [];
  const records: RequestRecord[] = [];
  const lens = Array.from({ length: n }, (_, i) => 2 + (i % 3));
  let queue = lens.map((_, i) => i);
  let t = 0;
  while (queue.length > 0) {
    const batch = queue.slice(0, slots);
    queue = queue.slice(slots);
    const maxLen = Math.max(...batch.map((i) => lens[i]));
    for (let k = 0; k < maxLen; k++) {
      const seqs = batch.map((i) => (k < lens[i] ? { requestId: `r${i}`, seqId: i, [k === 0 ? 'prefillTokens' : 'decodeTokens']: 1, sampled: true } : { requestId: `r${i}`, seqId: i, padRows: 1 }));
      steps.push(stepRecord({ startMs: t, numWaiting: queue.length, seqs: policy === 'static' ? seqs : seqs.filter((s) => !('padRows' in s)), totalMs: stepMs }));
      t += stepMs;
      for (const i of batch) {
        if (k >= lens[i]) continue;
        let rec = records[i];
        if (!rec) rec = records[i] = { index: i, promptLen: 4, outputLen: 0, sentMs: 0, chunkMs: [], endMs: 0, success: true, requestId: `r${i}` };
        rec.chunkMs.push(t);
        rec.outputLen++;
        rec.endMs = t;
      }
    }
  }
  const label = policy === 'none' ? 'no batching' : policy === 'static' ? `static (batch ${slots})` : 'continuous';
  return {
    policy,
    label,
    metrics: computeMetrics(records, t),
    slot: slotUtilization(steps, slots),
    compute: { totalFlops: 1e9, achievedFlops: 1e9, peakFlops: 1e10, utilization: 0.1 },
    numSteps: steps.length,
    numPreemptions: 0,
    decodeThroughput: 100,
    records,
    steps,
    timeline: buildTimeline(steps, records.map((r) => ({ index: r.index, requestId: r.requestId!, addedAtMs: -1 }))),
  };
}

export function fakeResults(): BenchResults {
  const runs = [fakeRun('none', 6, 1, 10), fakeRun('static', 6, 3, 12), fakeRun('continuous', 6, 3, 12)];
  const peerRun = fakeRun('continuous', 6, 3, 15);
  return {
    mode: 'offline',
    startedAt: '2025-01-01T00:00:00.000Z',
    model: { name: 'fake.gguf', params: 1e6, backend: 'typescript', threads: 2, contextLength: 512 },
    workload: { name: 'fixed', description: '6 requests', seed: 0, numRequests: 6, promptTokens: 24, outputTokens: 18, clipped: 0 },
    engine: { max_num_seqs: 3 },
    peakFlops: 1e10,
    runs,
    peer: { ...peerRun, policy: 'llama.cpp', label: 'llama.cpp (3 seqs)', slot: null, compute: null, steps: undefined, timeline: undefined, version: 'node-llama-cpp test' },
    wallS: 1,
  };
}
