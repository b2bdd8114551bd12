// The scheduler's view of requests and their sequences: token ids, how many of them are already in
// the KV cache, the block table, and where the sequence is in its life. A request with n > 1 owns n
// sequences; the first prefills the prompt, the others are forked from it once that prompt is in the
// cache (sharing its blocks) and start by recomputing only the last prompt token.

import type { FinishReason, SampledToken, SamplingParams, SequenceUpdate } from './types.js';
import type { KvSequence } from './kv-cache-manager.js';

/**
 * waiting: queued for (re)admission, holds no blocks. running: admitted, holds blocks.
 * unforked: completion 1..n-1 whose parent has not finished its prompt yet. finished: done or aborted.
 */
export type SequenceStatus = 'waiting' | 'running' | 'unforked' | 'finished';

/**
 * Per-request timestamps (milliseconds on the scheduler's clock), for TTFT, TPOT, ITL, E2E latency
 * and queue time. tokenTimesMs[index][k] is when completion `index` emitted its k-th token.
 */
export interface RequestTiming {
  arrivalMs: number;
  firstScheduledMs?: number;
  firstTokenMs?: number;
  tokenTimesMs: number[][];
  finishedMs?: number;
}

export class Sequence implements KvSequence {
  status: SequenceStatus;
  /** Prompt followed by the generated tokens. */
  readonly tokenIds: number[];
  // The KV side, written by the KV cache manager only (see KvSequence).
  numComputed = 0;
  blockTable: number[] = [];
  readonly blockHashes: string[] = [];
  numCachedBlocks = 0;
  numPreemptions = 0;
  /** Whether the model runner holds sampling state for this sequence. */
  runnerKnows = false;
  /** Static batching: the sequence sampled its first token in the current batch. */
  prefillDone = false;
  /** Speculative decoding: tokens the runner proposed to follow this sequence's newest token. */
  drafts: readonly number[] = [];
  /** How many proposals to verify next (adapts to how many were accepted last time). */
  specK = 0;
  /** Recent share of proposals accepted; below a floor, proposals pause until specPauseUntil output tokens. */
  specAcceptance = 1;
  specPauseUntil = 0;

  constructor(
    readonly seqId: number,
    readonly request: RequestState,
    readonly index: number,
    readonly seed: number,
    status: SequenceStatus,
  ) {
    this.tokenIds = [...request.promptTokenIds];
    this.status = status;
  }

  get numTokens(): number {
    return this.tokenIds.length;
  }

  get numPromptTokens(): number {
    return this.request.promptTokenIds.length;
  }

  get numOutputTokens(): number {
    return this.tokenIds.length - this.request.promptTokenIds.length;
  }

  get outputTokenIds(): number[] {
    return this.tokenIds.slice(this.request.promptTokenIds.length);
  }

  /** Tokens still to compute before a next token can be sampled. */
  get numUncomputed(): number {
    return this.tokenIds.length - this.numComputed;
  }

  /** What just happened to the sequence, as plain data for the output processor. */
  toUpdate(token: SampledToken | undefined, finishReason?: FinishReason, stopTokenId?: number): SequenceUpdate {
    const req = this.request;
    // Every field present, undefined or not: one object shape for the hot path.
    return {
      requestId: req.requestId,
      index: this.index,
      token,
      finishReason,
      stopTokenId,
      numCachedTokens: req.numCachedTokens,
      numOutputTokens: this.numOutputTokens,
      numPreemptions: this.numPreemptions,
    };
  }
}

/** One request: its prompt, parameters, completions and timing. */
export class RequestState {
  readonly seqs: Sequence[] = [];
  /** Prompt tokens served from the prefix cache at first admission. */
  numCachedTokens = 0;
  /** Completions still to fork from completion 0 (they hold seat reservations until then). */
  pendingForks: number;
  admitted = false;
  numFinished = 0;
  readonly timing: RequestTiming;

  constructor(
    readonly requestId: string,
    /** Monotonic arrival order; breaks ties, and is FCFS order. */
    readonly arrivalOrder: number,
    readonly priority: number,
    readonly promptTokenIds: readonly number[],
    readonly sampling: SamplingParams,
    /** Seed the completions' seeds derive from (drawn at random at add time when none was given). */
    readonly baseSeed: number,
    arrivalMs: number,
  ) {
    this.pendingForks = sampling.n - 1;
    this.timing = { arrivalMs, tokenTimesMs: Array.from({ length: sampling.n }, () => []) };
  }

  get finished(): boolean {
    return this.numFinished === this.seqs.length;
  }
}
