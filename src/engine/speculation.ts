// The scheduler's side of speculative decoding (vLLM v1's shape): the runner proposes tokens to
// follow each sequence's newest token (ModelRunnerOutput.drafts); the scheduler decides how many of
// them a step verifies — counted against the step's token budget and given look-ahead KV slots —
// and, after the step, how many were accepted, so rejected ones' slots are given back. Proposals
// are only verified when they cost little: not while the batch is big enough that the extra rows
// compete with other sequences for compute, and fewer per sequence after rejections.

import type { BlockCopy, KvCacheManager } from './kv-cache-manager.js';
import type { SchedulerOptions } from './scheduler-options.js';
import type { SchedulerCounts } from './scheduler-stats.js';
import type { Sequence } from './sequence.js';
import type { SampledToken } from './types.js';

export const NO_DRAFTS: readonly number[] = Object.freeze([]);

/** Sequences running above which speculation pauses, unless the options say otherwise. */
export const DEFAULT_SPECULATIVE_DISABLE_BATCH_SIZE = 8;
/** Below this recent acceptance a sequence stops verifying proposals for PAUSE_TOKENS tokens, then tries again. */
const ACCEPTANCE_FLOOR = 0.3;
const PAUSE_TOKENS = 32;

/**
 * The proposals to verify when `seq` computes `numNew` tokens this step with `budget` rows left:
 * only when those reach its newest token, within what it may still generate.
 */
export function draftsToVerify(seq: Sequence, numNew: number, budget: number, numRunning: number, o: Readonly<SchedulerOptions>): readonly number[] {
  const max = o.numSpeculativeTokens ?? 0;
  if (max === 0 || seq.drafts.length === 0 || numNew !== seq.numUncomputed || seq.numOutputTokens < seq.specPauseUntil) return NO_DRAFTS;
  if (numRunning > (o.speculativeDisableBatchSize ?? DEFAULT_SPECULATIVE_DISABLE_BATCH_SIZE)) return NO_DRAFTS;
  const req = seq.request;
  // The step yields at most k + 1 tokens; more than the sequence may still generate is waste.
  const left = Math.min(req.sampling.maxTokens - seq.numOutputTokens, o.maxModelLen - seq.numTokens);
  const k = Math.min(seq.drafts.length, seq.specK || max, budget - numNew, left - 1);
  return k > 0 ? seq.drafts.slice(0, k) : NO_DRAFTS;
}

/**
 * How many tokens the runner proposes after this step for `seq`, which verifies `numVerified`
 * proposals in it: the most draftsToVerify can take next step (after a full acceptance; the runner
 * proposes fewer after a rejection, as recordVerification will ask). 0 where the next step would
 * verify none — speculation off, the batch too big, the sequence paused, the request opted out — so
 * a draft model does not run for nothing.
 */
export function proposalsWanted(seq: Sequence, numVerified: number, numRunning: number, o: Readonly<SchedulerOptions>): number {
  const max = o.numSpeculativeTokens ?? 0;
  if (max === 0 || numRunning > (o.speculativeDisableBatchSize ?? DEFAULT_SPECULATIVE_DISABLE_BATCH_SIZE)) return 0;
  const sp = seq.request.sampling;
  // Constrained sequences are not speculated on: their masks would have to follow the proposals.
  if (!sp.speculative || sp.structuredOutputs) return 0;
  // After this step the sequence has between 1 and numVerified + 1 more output tokens.
  if (seq.numOutputTokens + numVerified + 1 < seq.specPauseUntil) return 0;
  const k = numVerified > 0 ? Math.min(max, numVerified + 1) : seq.specK || max;
  // draftsToVerify's cap on what the sequence may still generate, one token later.
  const left = Math.min(seq.request.sampling.maxTokens - seq.numOutputTokens, o.maxModelLen - seq.numTokens) - 1;
  return Math.max(0, Math.min(k, left - 1));
}

/**
 * Slots for a step that reaches the sequence's newest token when a draft model will propose after
 * it: its `numNew` tokens, the `numDrafts` proposals verified, and the look-ahead slots the draft
 * writes its next proposals' keys and values into. Taken only when free, never by preempting anyone
 * (null then, or when no proposals are wanted): with a short block table the runner proposes fewer.
 */
export function allocateWithLookahead(kv: KvCacheManager, seq: Sequence, numNew: number, numDrafts: number, numRunning: number, o: Readonly<SchedulerOptions>): readonly BlockCopy[] | null {
  const extra = o.numLookaheadSlots ?? 0;
  if (extra === 0 || numNew !== seq.numUncomputed || proposalsWanted(seq, numDrafts, numRunning, o) === 0) return null;
  return kv.allocateSlots(seq, numNew, numDrafts + extra);
}

/**
 * After verification of `k` proposals of which `accepted` were: the counters, and how many to try
 * next time (one more after a full acceptance, one past the accepted run after a rejection).
 */
export function recordVerification(seq: Sequence, k: number, accepted: number, o: Readonly<SchedulerOptions>, c: SchedulerCounts): void {
  const max = o.numSpeculativeTokens ?? 0;
  c.specDrafts++;
  c.specDraftTokens += k;
  c.specAcceptedTokens += accepted;
  for (let i = 0; i < accepted; i++) c.specAcceptedPerPos[i] = (c.specAcceptedPerPos[i] ?? 0) + 1;
  seq.specK = accepted === k ? Math.min(max, k + 1) : Math.max(1, accepted + 1);
  // Each verification costs a step k more rows: where proposals keep failing, stop paying for them.
  seq.specAcceptance = 0.7 * seq.specAcceptance + 0.3 * (accepted / k);
  if (seq.specAcceptance < ACCEPTANCE_FLOOR) {
    seq.specPauseUntil = seq.numOutputTokens + PAUSE_TOKENS;
    seq.specAcceptance = 1;
  }
}

/** The runner's tokens by sequence, in order: a sequence that verified proposals has several. */
export function tokensBySeq(sampled: readonly SampledToken[]): Map<number, SampledToken[]> {
  const m = new Map<number, SampledToken[]>();
  for (const t of sampled) {
    const list = m.get(t.seqId);
    if (list) list.push(t);
    else m.set(t.seqId, [t]);
  }
  return m;
}

/** How many proposals the runner accepted: its tokens start with them, unchanged, and end with one of its own. */
export function acceptedDrafts(drafts: readonly number[], toks: readonly SampledToken[], error: (message: string) => Error): number {
  const accepted = Math.min(drafts.length, toks.length - 1);
  for (let i = 0; i < accepted; i++) if (toks[i]!.tokenId !== drafts[i]) throw error(`accepted token ${toks[i]!.tokenId} where ${drafts[i]} was proposed`);
  return accepted;
}
