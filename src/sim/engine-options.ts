// The scheduler settings a simulated run uses: the engine's own resolveEngineOptions, so `stepwise
// simulate` and `stepwise bench` given the same flags schedule the same way. The one thing that
// differs is where the KV cache size comes from: the hardware profile's memory instead of this
// machine's default budget.
import { KvCacheTooSmallError, resolveEngineOptions, type EngineSettings } from '../engine/engine-options.js';
import { kvCacheBytes, profileKvBytesPerToken, type HardwareProfile, type ModelProfile } from './cost-model.js';
import { ProfileError } from './profiles.js';

/** What a simulated run may be given: scheduler settings and a KV budget (LLM.load's options fit). */
export type SimLoadOptions = Partial<EngineSettings> & { kvCacheMemory?: number };

export function resolveSimOptions(load: SimLoadOptions, hw: HardwareProfile, model: ModelProfile): EngineSettings {
  try {
    return resolveEngineOptions(load, { contextLength: model.contextLength, kvBytesPerToken: profileKvBytesPerToken(model), defaultKvBytes: kvCacheBytes(hw, model) });
  } catch (e) {
    if (!(e instanceof KvCacheTooSmallError)) throw e;
    throw new ProfileError(
      `the KV cache (${e.numBlocks} blocks of ${e.blockSize} tokens) cannot hold one ${e.maxModelLen}-token context: ` +
        `the model does not fit this hardware's memory with room to serve; lower --max-model-len or give --num-blocks`,
    );
  }
}
