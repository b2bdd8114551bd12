// The scheduler's settings, and the checks that reject bad ones by name before anything runs.

import type { BatchingPolicy } from './step-trace.js';

export type SchedulingPolicy = 'fcfs' | 'priority';

export interface SchedulerOptions {
  policy: BatchingPolicy;
  schedulingPolicy: SchedulingPolicy;
  /** Sequences running at once (and so scheduled in one step) at most. */
  maxNumSeqs: number;
  /** Rows (tokens, padding included) in one step at most. */
  maxNumBatchedTokens: number;
  numBlocks: number;
  blockSize: number;
  enablePrefixCaching: boolean;
  /** Most prompt tokens one sequence may prefill per step (0: no cap beyond the token budget). */
  longPrefillTokenThreshold: number;
  /** Requests waiting for admission at most; more are rejected with QueueFullError (0: unbounded). */
  maxQueue: number;
  /** Requests per static batch. */
  staticBatchSize: number;
  /** Static policy: how long the oldest waiting request may wait for a batch to fill. */
  staticWaitMs: number;
  /** Static policy: free finished rows at once instead of computing them as padding. */
  staticDropFinished: boolean;
  /** Longest sequence (prompt + generated) a request may reach. */
  maxModelLen: number;
  /** The model's end-of-generation token ids (a token-level stop). */
  eogIds: number[];
  /**
   * Speculative decoding: most proposed tokens verified per sequence and step (0: off). The runner
   * proposes them (SchedulerOutput -> ModelRunnerOutput.drafts); the scheduler schedules them.
   */
  numSpeculativeTokens?: number;
  /** Speculation stops while more sequences than this run (verification would take compute the batch already uses). */
  speculativeDisableBatchSize?: number;
  /**
   * Speculative decoding with a draft model: slots past a sequence's verified proposals that it gets
   * (when free) and keeps, because the draft writes the keys and values of the tokens it proposes
   * there after the step (vLLM's num_lookahead_tokens; 0 for prompt lookup, which writes nothing).
   */
  numLookaheadSlots?: number;
}

const POLICIES: readonly BatchingPolicy[] = ['continuous', 'static', 'none'];
const SCHEDULING_POLICIES: readonly SchedulingPolicy[] = ['fcfs', 'priority'];

function checkInt(name: string, v: unknown, min: number): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new RangeError(`scheduler option ${name} must be an integer >= ${min}, got ${String(v)}`);
  }
}

/** Checks the options and returns them (throws RangeError naming the bad option). */
export function validateSchedulerOptions(o: SchedulerOptions): SchedulerOptions {
  if (!POLICIES.includes(o.policy)) throw new RangeError(`scheduler option policy must be one of ${POLICIES.join(', ')}, got ${String(o.policy)}`);
  if (!SCHEDULING_POLICIES.includes(o.schedulingPolicy)) {
    throw new RangeError(`scheduler option schedulingPolicy must be one of ${SCHEDULING_POLICIES.join(', ')}, got ${String(o.schedulingPolicy)}`);
  }
  checkInt('maxNumSeqs', o.maxNumSeqs, 1);
  checkInt('maxNumBatchedTokens', o.maxNumBatchedTokens, 1);
  if (o.maxNumBatchedTokens < o.maxNumSeqs) {
    // Otherwise a full set of decodes could not fit one step.
    throw new RangeError(`scheduler option maxNumBatchedTokens (${o.maxNumBatchedTokens}) must be at least maxNumSeqs (${o.maxNumSeqs})`);
  }
  checkInt('numBlocks', o.numBlocks, 1);
  checkInt('blockSize', o.blockSize, 1);
  checkInt('longPrefillTokenThreshold', o.longPrefillTokenThreshold, 0);
  checkInt('maxQueue', o.maxQueue, 0);
  checkInt('staticBatchSize', o.staticBatchSize, 1);
  if (typeof o.staticWaitMs !== 'number' || !(o.staticWaitMs >= 0) || !Number.isFinite(o.staticWaitMs)) {
    throw new RangeError(`scheduler option staticWaitMs must be a finite number >= 0, got ${String(o.staticWaitMs)}`);
  }
  checkInt('maxModelLen', o.maxModelLen, 1);
  if (typeof o.enablePrefixCaching !== 'boolean') throw new RangeError('scheduler option enablePrefixCaching must be a boolean');
  if (typeof o.staticDropFinished !== 'boolean') throw new RangeError('scheduler option staticDropFinished must be a boolean');
  if (!Array.isArray(o.eogIds)) throw new RangeError('scheduler option eogIds must be an array of token ids');
  if (o.numSpeculativeTokens !== undefined) checkInt('numSpeculativeTokens', o.numSpeculativeTokens, 0);
  if (o.speculativeDisableBatchSize !== undefined) checkInt('speculativeDisableBatchSize', o.speculativeDisableBatchSize, 1);
  if (o.numLookaheadSlots !== undefined) checkInt('numLookaheadSlots', o.numLookaheadSlots, 0);
  return o;
}
