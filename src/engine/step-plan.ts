// A step being put together: the batching policy adds each sequence's share (tokens to compute,
// padding rows, copy-on-write copies) under the token budget, and withdraws a share when its
// sequence is preempted. When the policy is done, the plan becomes the plain SchedulerOutput the
// runner gets and the summary the step trace gets.

import type { BlockCopy } from './kv-cache-manager.js';
import type { Sequence } from './sequence.js';
import type { SchedulerOptions } from './scheduler-options.js';
import { NO_DRAFTS, proposalsWanted } from './speculation.js';
import type { BatchingPolicy, StepSeqRecord, StepSummary } from './step-trace.js';
import type { NewSequenceData, ScheduledSequence, SchedulerOutput } from './types.js';

interface PlanEntry {
  seq: Sequence;
  numNew: number;
  padRows: number;
  sample: boolean;
  copies: readonly BlockCopy[];
  /** Speculative decoding: proposals verified after the newest token (look-ahead slots). */
  drafts: readonly number[];
}

/** What schedule() returns: the runner's work, and what the step trace records of the decision. */
export interface ScheduledStep {
  output: SchedulerOutput;
  summary: StepSummary;
}

/** The scheduler's state after the policy ran, for the summary. */
export interface QueueState {
  policy: BatchingPolicy;
  kvBlocksUsed: number;
  kvBlocksTotal: number;
  numWaiting: number;
  numRunning: number;
}

export class StepPlan {
  private readonly entries = new Map<Sequence, PlanEntry>();
  numPreempted = 0;
  /** Requests admitted for the first time. */
  numJoined = 0;

  constructor(
    /** Rows still free in this step. */
    public tokenBudget: number,
    /** Sequences the runner must drop before this step (finished, aborted or preempted). */
    readonly finishedSeqIds: number[],
  ) {}

  has(seq: Sequence): boolean {
    return this.entries.has(seq);
  }

  /**
   * Schedules `numNew` tokens of `seq` plus `padRows` thrown-away rows; `sample` when they reach its
   * newest token; `drafts`, proposed tokens to verify after it.
   */
  add(seq: Sequence, numNew: number, padRows: number, sample: boolean, copies: readonly BlockCopy[], drafts: readonly number[] = NO_DRAFTS): void {
    this.entries.set(seq, { seq, numNew, padRows, sample, copies, drafts });
    this.tokenBudget -= numNew + padRows + drafts.length;
  }

  /** Takes a preempted sequence's share back out. */
  withdraw(seq: Sequence): void {
    const e = this.entries.get(seq);
    if (!e) return;
    this.tokenBudget += e.numNew + e.padRows + e.drafts.length;
    this.entries.delete(seq);
  }

  /**
   * Announces new sequences to the runner, tells it how many tokens to propose for each (speculative
   * decoding, under `o`), and records when each request was first scheduled.
   */
  toStep(step: number, now: number, q: QueueState, o?: Readonly<SchedulerOptions>): ScheduledStep {
    const scheduled: ScheduledSequence[] = [];
    const newSequences: NewSequenceData[] = [];
    const blockCopies: BlockCopy[] = [];
    const seqs: StepSeqRecord[] = [];
    let numBatchedTokens = 0;
    let numPrefill = 0;
    let numDecode = 0;
    let numPad = 0;
    let numDrafts = 0;
    let numDraftTokens = 0;
    for (const e of this.entries.values()) {
      const seq = e.seq;
      const req = seq.request;
      if (e.numNew > 0 && !seq.runnerKnows) {
        newSequences.push({ seqId: seq.seqId, promptTokenIds: [...req.promptTokenIds], outputTokenIds: seq.outputTokenIds, sampling: req.sampling, seed: seq.seed });
        seq.runnerKnows = true;
      }
      if (req.timing.firstScheduledMs === undefined) req.timing.firstScheduledMs = now;
      if (e.copies.length > 0) blockCopies.push(...e.copies);
      const tokenIds = seq.tokenIds.slice(seq.numComputed, seq.numComputed + e.numNew);
      if (e.drafts.length > 0) tokenIds.push(...e.drafts);
      const s: ScheduledSequence = {
        seqId: seq.seqId,
        tokenIds,
        startPosition: seq.numComputed,
        // Shared, not copied: the KV cache manager replaces a table instead of changing it.
        blockTable: seq.blockTable,
        sample: e.sample,
      };
      if (e.padRows > 0) s.padRows = e.padRows;
      // Padded rows (static batching) are never verified, so proposals for them would be waste.
      const propose = o && e.sample && e.padRows === 0 ? proposalsWanted(seq, e.drafts.length, q.numRunning, o) : 0;
      if (propose > 0) s.proposeTokens = propose;
      if (e.drafts.length > 0) {
        s.draftTokenIds = e.drafts.slice();
        numDraftTokens += e.drafts.length;
        numDrafts++;
      }
      scheduled.push(s);
      numBatchedTokens += e.numNew + e.padRows + e.drafts.length;
      // A decode feeds back exactly the newest generated token; everything else is prefill work.
      const isDecode = e.numNew === 1 && seq.numComputed === seq.numTokens - 1 && seq.numComputed >= seq.numPromptTokens;
      const rec: StepSeqRecord = {
        requestId: req.requestId,
        seqId: seq.seqId,
        index: seq.index,
        prefillTokens: isDecode ? 0 : e.numNew,
        decodeTokens: isDecode ? 1 : 0,
        padRows: e.padRows,
        sampled: e.sample,
      };
      seqs.push(rec);
      numPrefill += rec.prefillTokens;
      numDecode += rec.decodeTokens;
      numPad += e.padRows;
    }
    return {
      output: { step, scheduled, newSequences, finishedSeqIds: this.finishedSeqIds, blockCopies, numBatchedTokens },
      summary: {
        step,
        policy: q.policy,
        seqs,
        numPrefillTokens: numPrefill,
        numDecodeTokens: numDecode,
        numPadRows: numPad,
        numBatchedTokens,
        ...(numDrafts > 0 ? { numDrafts, numDraftTokens } : {}),
        numJoined: this.numJoined,
        numPreempted: this.numPreempted,
        numBlockCopies: blockCopies.length,
        kvBlocksUsed: q.kvBlocksUsed,
        kvBlocksTotal: q.kvBlocksTotal,
        numWaiting: q.numWaiting,
        numRunning: q.numRunning,
      },
    };
  }
}
