// The engine's settings resolved in one place, for LLM.load (and so every CLI command that loads a
// model) and for the simulator: what the caller gave, the defaults for the rest, and the KV cache
// sized from a memory budget. Only the budget differs between them: this machine's default for a real
// engine, the hardware profile's memory for a simulated one.

import { blocksInBytes } from '../util/kv-bytes.js';
import type { SchedulerOptions } from './scheduler-options.js';

/** Defaults for everything but numBlocks, maxModelLen (from the model) and staticBatchSize (max-num-seqs). */
export const DEFAULT_ENGINE_OPTIONS = {
  policy: 'continuous',
  schedulingPolicy: 'fcfs',
  maxNumSeqs: 64,
  maxNumBatchedTokens: 2048,
  blockSize: 16,
  enablePrefixCaching: true,
  longPrefillTokenThreshold: 0,
  maxQueue: 0,
  staticWaitMs: 0,
  staticDropFinished: false,
} as const satisfies Partial<SchedulerOptions>;

/** Every scheduler setting but the model's end-of-generation ids. */
export type EngineSettings = Omit<SchedulerOptions, 'eogIds'>;

/** What the KV cache is sized from. */
export interface KvBudget {
  /** The model's context length: maxModelLen's default and cap. */
  contextLength: number;
  /** Bytes one token's KV takes (every layer, K and V, at the cache's element type). */
  kvBytesPerToken: number;
  /** The budget when neither numBlocks nor kvCacheMemory is given; at most every seat's full context is used. */
  defaultKvBytes: number;
}

/** The KV cache cannot hold one sequence of the maximum model length, so such a sequence could never finish. */
export class KvCacheTooSmallError extends RangeError {
  constructor(readonly numBlocks: number, readonly blockSize: number, readonly maxModelLen: number) {
    super(
      `KV cache of ${numBlocks} blocks x ${blockSize} tokens cannot hold one ${maxModelLen}-token context; ` +
        `raise --num-blocks/--kv-cache-memory or lower --max-model-len`,
    );
    this.name = 'KvCacheTooSmallError';
  }
}

export function resolveEngineOptions(o: Partial<EngineSettings> & { kvCacheMemory?: number }, kv: KvBudget): EngineSettings {
  const d = DEFAULT_ENGINE_OPTIONS;
  const maxNumSeqs = o.maxNumSeqs ?? d.maxNumSeqs;
  const blockSize = o.blockSize ?? d.blockSize;
  const maxModelLen = Math.min(o.maxModelLen ?? kv.contextLength, kv.contextLength);
  const numBlocks =
    o.numBlocks ??
    (o.kvCacheMemory !== undefined
      ? blocksInBytes(o.kvCacheMemory, kv.kvBytesPerToken, blockSize)
      : Math.min(maxNumSeqs * Math.ceil(maxModelLen / blockSize), blocksInBytes(kv.defaultKvBytes, kv.kvBytesPerToken, blockSize)));
  if (numBlocks < Math.ceil(maxModelLen / blockSize)) throw new KvCacheTooSmallError(numBlocks, blockSize, maxModelLen);
  return {
    policy: o.policy ?? d.policy,
    schedulingPolicy: o.schedulingPolicy ?? d.schedulingPolicy,
    maxNumSeqs,
    maxNumBatchedTokens: o.maxNumBatchedTokens ?? Math.max(d.maxNumBatchedTokens, maxNumSeqs),
    numBlocks,
    blockSize,
    enablePrefixCaching: o.enablePrefixCaching ?? d.enablePrefixCaching,
    longPrefillTokenThreshold: o.longPrefillTokenThreshold ?? d.longPrefillTokenThreshold,
    maxQueue: o.maxQueue ?? d.maxQueue,
    staticBatchSize: o.staticBatchSize ?? maxNumSeqs,
    staticWaitMs: o.staticWaitMs ?? d.staticWaitMs,
    staticDropFinished: o.staticDropFinished ?? d.staticDropFinished,
    maxModelLen,
    ...(o.numSpeculativeTokens ? { numSpeculativeTokens: o.numSpeculativeTokens } : {}),
    ...(o.speculativeDisableBatchSize !== undefined ? { speculativeDisableBatchSize: o.speculativeDisableBatchSize } : {}),
    ...(o.numLookaheadSlots ? { numLookaheadSlots: o.numLookaheadSlots } : {}),
  };
}
