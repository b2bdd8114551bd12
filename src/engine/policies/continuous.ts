// Continuous (iteration-level) batching, as vLLM and Orca do it: every step, decodes of running
// sequences first, then unfinished prefills, then new requests fill the rest of the token budget
// (chunked prefill); a running sequence short of blocks preempts the lowest-ranked one.

import type { BatchPolicy, SchedulerCore } from './policy.js';
import type { StepPlan } from '../step-plan.js';

export class ContinuousPolicy implements BatchPolicy {
  readonly held = [];

  schedule(core: SchedulerCore, plan: StepPlan): void {
    const threshold = core.options.longPrefillTokenThreshold;
    for (const decodePass of [true, false]) {
      // A snapshot, because preemption edits the running list as we go.
      for (const seq of core.running.slice()) {
        if (seq.status !== 'running' || plan.has(seq)) continue;
        const remaining = seq.numUncomputed;
        if ((remaining === 1) !== decodePass) continue;
        if (plan.tokenBudget <= 0) break;
        let numNew = Math.min(remaining, plan.tokenBudget);
        if (threshold > 0) numNew = Math.min(numNew, threshold);
        core.scheduleRunning(seq, numNew, 0, plan);
      }
    }
    // Like vLLM: a step that had to preempt admits nobody, or the victims would bounce straight back.
    if (plan.numPreempted === 0) this.admitWaiting(core, plan);
  }

  /**
   * Admits waiting sequences in rank order while seats, tokens and blocks allow. Strictly in order:
   * when the best waiting sequence does not fit, nobody behind it jumps ahead (no starvation).
   */
  private admitWaiting(core: SchedulerCore, plan: StepPlan): void {
    const threshold = core.options.longPrefillTokenThreshold;
    while (core.waiting.length > 0 && plan.tokenBudget > 0) {
      const seq = core.waiting[0];
      if (core.seatsInUse() + core.seatsNeeded(seq) > core.options.maxNumSeqs) break;
      const hit = core.kv.computedPrefix(seq);
      let numNew = Math.min(seq.numTokens - hit.numTokens, plan.tokenBudget);
      if (threshold > 0) numNew = Math.min(numNew, threshold);
      if (!core.admit(seq, hit.blocks, numNew, plan)) break;
    }
  }

  afterUpdate(): void {}

  retire(): boolean {
    return false;
  }

  forget(): void {}

  nextWakeMs(): undefined {
    return undefined;
  }
}
