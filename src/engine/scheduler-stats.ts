// What the scheduler reports about itself: queues, KV blocks, prefix cache, preemptions and
// request and token counts (the engine adds its own; the server turns them into metrics).

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
}
