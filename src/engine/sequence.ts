// The scheduler's view of requests and their sequences: token ids, how many of them are already in
// the KV cache, the block table, and where the sequence is in its life. A request with n > 1 owns n
// sequences; the first prefills the prompt, the others are forked from it once that prompt is in the
// cache (sharing its blocks) and start by recomputing only the last prompt token.

import type { FinishReason, SampledToken, SamplingParams } from './types.js';
import { hashBlock } from './kv-cache.js';

/**
 * waiting: queued for (re)admission, holds no blocks. running: admitted, holds blocks.
 * unforked: completion 1..n-1 whose parent has not finished its prompt yet. finished: done or aborted.
 */
export type SequenceStatus = 'waiting' | 'running' | 'unforked' | 'finished';

/** What the output side decides for each sampled token (SequenceOutputState's contract). */
export interface OutputDecision {
  text: string;
  finished: boolean;
  finishReason?: FinishReason;
  stopReason?: string | number;
}

/** Turns one sequence's sampled tokens into text and a finish decision. */
export interface OutputStateLike {
  append(tok: SampledToken): OutputDecision;
  /** Ends the sequence from outside (abort, model length reached), releasing any held-back text. */
  finish?(reason: FinishReason): OutputDecision;
}

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

export class Sequence {
  status: SequenceStatus;
  /** Prompt followed by the generated tokens. */
  readonly tokenIds: number[];
  /** Tokens whose keys and values are in the KV cache. */
  numComputed = 0;
  blockTable: number[] = [];
  /** Prefix hashes of the full blocks of tokenIds, computed on demand. */
  readonly blockHashes: string[] = [];
  /** Blocks of the table already checked for registration in the prefix cache. */
  numRegisteredBlocks = 0;
  numPreemptions = 0;
  /** Whether the model runner holds sampling state for this sequence. */
  runnerKnows = false;
  finishReason?: FinishReason;
  /** Static batching: the sequence sampled its first token in the current batch. */
  prefillDone = false;

  constructor(
    readonly seqId: number,
    readonly request: RequestState,
    readonly index: number,
    readonly seed: number,
    readonly outputState: OutputStateLike,
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

  /** Extends blockHashes over every full block of tokenIds, up to `numBlocks` blocks. */
  ensureBlockHashes(numBlocks: number, blockSize: number): void {
    const limit = Math.min(numBlocks, Math.floor(this.tokenIds.length / blockSize));
    for (let j = this.blockHashes.length; j < limit; j++) {
      this.blockHashes.push(hashBlock(j === 0 ? null : this.blockHashes[j - 1], this.tokenIds, j * blockSize, blockSize));
    }
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

  get n(): number {
    return this.sampling.n;
  }

  get finished(): boolean {
    return this.numFinished === this.seqs.length;
  }
}
