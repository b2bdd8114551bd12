// The scheduler settings a simulated run uses: the same flags and the same defaults as LLM.load, so
// `stepwise simulate` and `stepwise bench` given the same flags schedule the same way. The one thing
// that differs is where the KV cache size comes from: the hardware profile's memory instead of
// this machine's default budget.
import type { LoadOptions } from '../llm.js';
import { DEFAULT_ENGINE_OPTIONS } from '../engine/engine.js';
import { kvBytesPerToken, kvCacheBytes, type HardwareProfile, type ModelProfile } from './cost-model.js';
import type { SimSchedulerOptions } from './simulator.js';
import { ProfileError } from './profiles.js';

export function resolveSimOptions(load: LoadOptions, hw: HardwareProfile, model: ModelProfile): SimSchedulerOptions {
  const maxNumSeqs = load.maxNumSeqs ?? DEFAULT_ENGINE_OPTIONS.maxNumSeqs;
  const blockSize = load.blockSize ?? DEFAULT_ENGINE_OPTIONS.blockSize;
  const maxModelLen = Math.min(load.maxModelLen ?? model.contextLength, model.contextLength);
  const perBlock = kvBytesPerToken(model) * blockSize;
  // As LLM.load: never more than every seat's full context (the rest could only ever cache prefixes).
  const numBlocks =
    load.numBlocks ??
    (load.kvCacheMemory !== undefined
      ? Math.floor(load.kvCacheMemory / perBlock)
      : Math.min(maxNumSeqs * Math.ceil(maxModelLen / blockSize), Math.floor(kvCacheBytes(hw, model) / perBlock)));
  if (numBlocks < Math.ceil(maxModelLen / blockSize)) {
    throw new ProfileError(
      `the KV cache (${numBlocks} blocks of ${blockSize} tokens) cannot hold one ${maxModelLen}-token context: ` +
        `the model does not fit this hardware's memory with room to serve; lower --max-model-len or give --num-blocks`,
    );
  }
  return {
    policy: load.policy ?? 'continuous',
    schedulingPolicy: load.schedulingPolicy ?? DEFAULT_ENGINE_OPTIONS.schedulingPolicy,
    maxNumSeqs,
    maxNumBatchedTokens: load.maxNumBatchedTokens ?? Math.max(DEFAULT_ENGINE_OPTIONS.maxNumBatchedTokens, maxNumSeqs),
    numBlocks,
    blockSize,
    enablePrefixCaching: load.enablePrefixCaching ?? DEFAULT_ENGINE_OPTIONS.enablePrefixCaching,
    longPrefillTokenThreshold: load.longPrefillTokenThreshold ?? DEFAULT_ENGINE_OPTIONS.longPrefillTokenThreshold,
    maxQueue: load.maxQueue ?? DEFAULT_ENGINE_OPTIONS.maxQueue,
    staticBatchSize: load.staticBatchSize ?? maxNumSeqs,
    staticWaitMs: load.staticWaitMs ?? DEFAULT_ENGINE_OPTIONS.staticWaitMs,
    staticDropFinished: load.staticDropFinished ?? DEFAULT_ENGINE_OPTIONS.staticDropFinished,
    maxModelLen,
  };
}
