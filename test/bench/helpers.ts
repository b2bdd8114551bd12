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
