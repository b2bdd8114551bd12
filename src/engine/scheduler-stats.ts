// What the scheduler reports about itself: queues, KV blocks, prefix cache, preemptions and
// request and token counts (the engine adds its own; the server turns them into metrics).

import type { KvCacheManager } from './kv-cache-manager.js';

export interface SchedulerStats {
  /** Sequences admitted (holding KV blocks), and sequences waiting for (re)admission. */
  running: number;
  waiting: number;
  numBlocks: number;
  blocksUsed: number;
  blocksFree: number;
  /** Blocks holding a cached prefix (in use or evictable). */
  blocksCached: number;
  /** Fraction of KV blocks referenced by sequences (0..1). */
  kvUsage: number;
  /** Preemptions so far (a sequence's blocks freed and the sequence requeued for recompute). */
  preemptions: number;
  /** Tokens looked up in the prefix cache on admission, and those served from it. */
  prefixCacheQueries: number;
  prefixCacheHits: number;
  prefixCacheEvictions: number;
  requestsAdded: number;
  requestsFinished: number;
  requestsAborted: number;
  /** Requests failed because the runner failed a step they were in. */
  requestsFailed: number;
  promptTokens: number;
  generationTokens: number;
  /** Tokens whose KV the runner computed (prefill, recompute and decode; padding excluded). */
  computedTokens: number;
  /** Steps that ran. */
  steps: number;
  /** Speculative decoding: sequences that verified proposals, the proposed tokens, those accepted, and acceptances by position. */
  specDrafts: number;
  specDraftTokens: number;
  specAcceptedTokens: number;
  specAcceptedPerPos: number[];
}

/** The running totals the scheduler keeps as requests come and go. */
export class SchedulerCounts {
  added = 0;
  finished = 0;
  aborted = 0;
  failed = 0;
  promptTokens = 0;
  generatedTokens = 0;
  computedTokens = 0;
  preemptions = 0;
  specDrafts = 0;
  specDraftTokens = 0;
  specAcceptedTokens = 0;
  specAcceptedPerPos: number[] = [];
}

export function schedulerStats(c: SchedulerCounts, kv: KvCacheManager, running: number, waiting: number, steps: number): SchedulerStats {
  const prefix = kv.stats();
  return {
    running,
    waiting,
    numBlocks: kv.numBlocks,
    blocksUsed: kv.numUsedBlocks,
    blocksFree: kv.numFreeBlocks,
    blocksCached: kv.pool.numCachedBlocks,
    kvUsage: kv.pool.usage(),
    preemptions: c.preemptions,
    prefixCacheQueries: prefix.queries,
    prefixCacheHits: prefix.hits,
    prefixCacheEvictions: prefix.evictions,
    requestsAdded: c.added,
    requestsFinished: c.finished,
    requestsAborted: c.aborted,
    requestsFailed: c.failed,
    promptTokens: c.promptTokens,
    generationTokens: c.generatedTokens,
    computedTokens: c.computedTokens,
    steps,
    specDrafts: c.specDrafts,
    specDraftTokens: c.specDraftTokens,
    specAcceptedTokens: c.specAcceptedTokens,
    specAcceptedPerPos: [...c.specAcceptedPerPos],
  };
}
