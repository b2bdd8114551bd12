// The step's scheduled sequences flattened into one ragged ForwardBatch over the paged KV cache: what
// the model runner runs, and what a draft model runs for its own passes over the same block tables.

import type { ScheduledSequence } from './types.js';
import type { ForwardBatch } from '../model/transformer.js';

/** Thrown when a SchedulerOutput does not fit the runner's state (unknown sequence, short block table...). */
export class RunnerInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunnerInputError';
  }
}

/**
 * Flattens the scheduled sequences into one ragged batch. Rows are each sequence's tokenIds in
 * order, then its padding rows; row positions count up from startPosition; a row's KV slot comes
 * from its block table. The logit rows are the last real row of each sequence that samples, in
 * scheduled order (sampleSeqIds says whose each is); a sequence verifying k proposals gives its
 * last k + 1 rows (sampleCounts says how many each has). Padding rows of finished sequences add
 * logit rows after those, which nobody samples.
 */
export function buildForwardBatch(scheduled: readonly ScheduledSequence[], blockSize: number): { batch: ForwardBatch; sampleSeqIds: number[]; sampleCounts: number[] } {
  let numRows = 0;
  let maxBlocks = 0;
  for (const s of scheduled) {
    const pad = s.padRows ?? 0;
    if (!Number.isInteger(pad) || pad < 0) throw new RunnerInputError(`sequence ${s.seqId}: padRows ${pad} must be a non-negative integer`);
    if (!Number.isInteger(s.startPosition) || s.startPosition < 0) throw new RunnerInputError(`sequence ${s.seqId}: startPosition ${s.startPosition} must be a non-negative integer`);
    numRows += s.tokenIds.length + pad;
    maxBlocks = Math.max(maxBlocks, s.blockTable.length);
  }
  const tokens = new Int32Array(numRows);
  const positions = new Int32Array(numRows);
  const rowSeq = new Int32Array(numRows);
  const slotMapping = new Int32Array(numRows);
  const stride = Math.max(1, maxBlocks);
  const blockTables = new Int32Array(scheduled.length * stride);
  const logitRows: number[] = [];
  const discardedLogitRows: number[] = [];
  const sampleSeqIds: number[] = [];
  const sampleCounts: number[] = [];

  let r = 0;
  scheduled.forEach((s, i) => {
    const n = s.tokenIds.length;
    // Every position this step touches must have a block: the newest is startPosition + n - 1.
    const lastPos = s.startPosition + n - 1;
    if (lastPos >= s.blockTable.length * blockSize) {
      throw new RunnerInputError(`sequence ${s.seqId}: position ${lastPos} needs block ${Math.floor(lastPos / blockSize)}, its block table has ${s.blockTable.length} blocks`);
    }
    blockTables.set(s.blockTable, i * stride);
    for (let j = 0; j < n; j++, r++) {
      const pos = s.startPosition + j;
      tokens[r] = s.tokenIds[j];
      positions[r] = pos;
      rowSeq[r] = i;
      slotMapping[r] = s.blockTable[Math.floor(pos / blockSize)] * blockSize + (pos % blockSize);
    }
    if (s.sample) {
      if (n === 0) throw new RunnerInputError(`sequence ${s.seqId}: sample is set but no tokens are scheduled`);
      const k = s.draftTokenIds?.length ?? 0;
      if (k >= n) throw new RunnerInputError(`sequence ${s.seqId}: ${k} proposals need more than ${n} scheduled tokens`);
      for (let j = k; j >= 0; j--) logitRows.push(r - 1 - j);
      sampleSeqIds.push(s.seqId);
      sampleCounts.push(k + 1);
    }
    // Padding rows (static batching's wasted work): token 0 at the newest token's position, attending
    // its context, writing nothing. A finished sequence held in the batch has no new token; its
    // newest token is the last one already cached.
    const pad = s.padRows ?? 0;
    const padPos = n > 0 ? lastPos : Math.max(0, s.startPosition - 1);
    if (pad > 0 && padPos >= s.blockTable.length * blockSize) {
      throw new RunnerInputError(`sequence ${s.seqId}: padding at position ${padPos} has no block in its ${s.blockTable.length}-block table`);
    }
    for (let j = 0; j < pad; j++, r++) {
      tokens[r] = 0;
      positions[r] = padPos;
      rowSeq[r] = i;
      slotMapping[r] = -1;
      // A finished sequence's row gets its logits too, thrown away after the others': static
      // batching as implemented (HF generate, FasterTransformer) runs the output head over the
      // whole batch every step, and a row without it would cost 40% less than a live one.
      if (n === 0) discardedLogitRows.push(r);
    }
  });
  for (const row of discardedLogitRows) logitRows.push(row);

  return {
    batch: {
      tokens,
      logitRows: Int32Array.from(logitRows),
      meta: { numRows, positions, rowSeq, blockTables, maxBlocksPerSeq: stride, slotMapping },
    },
    sampleSeqIds,
    sampleCounts,
  };
}
