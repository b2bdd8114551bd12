// The engine's counters as /metrics and the live view read them.
import type { Engine } from '../engine/engine.js';
import type { EngineGaugeValues } from './metrics.js';

export function engineGaugeValues(engine: Engine): EngineGaugeValues {
  const s = engine.stats();
  return {
    running: s.running,
    waiting: s.waiting,
    kvUsage: s.kvUsage,
    preemptions: s.preemptions,
    prefixCacheQueries: s.prefixCacheQueries,
    prefixCacheHits: s.prefixCacheHits,
    specDrafts: s.specDrafts,
    specDraftTokens: s.specDraftTokens,
    specAcceptedTokens: s.specAcceptedTokens,
    specAcceptedPerPos: s.specAcceptedPerPos,
  };
}
