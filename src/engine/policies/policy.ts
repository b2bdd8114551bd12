// What a batching policy is: the choice of who runs in a step, and nothing else. The scheduler keeps
// the queues, the seats and the KV cache and hands a policy the operations below; a policy picks
// sequences and sizes their shares of the step.

import type { KvCacheManager } from '../kv-cache-manager.js';
import type { SchedulerOptions } from '../scheduler-options.js';
import type { Sequence } from '../sequence.js';
import type { StepPlan } from '../step-plan.js';

/** The scheduler as a policy sees it. */
export interface SchedulerCore {
  readonly options: Readonly<SchedulerOptions>;
  readonly kv: KvCacheManager;
  /** Sequences waiting for (re)admission, best first. */
  readonly waiting: readonly Sequence[];
  /** Admitted sequences holding blocks, best first; the last is the first preemption victim. */
  readonly running: readonly Sequence[];
  /** Seats taken: running sequences, rows the policy holds, seats reserved for completions to fork. */
  seatsInUse(): number;
  /** Seats a waiting sequence takes when admitted: itself, plus the completions it will fork. */
  seatsNeeded(seq: Sequence): number;
  /**
   * Moves a waiting sequence to running with the cached prefix `hits` (KvCacheManager.computedPrefix)
   * and, when numNew > 0, schedules its next numNew tokens. Returns false, changing nothing, when
   * blocks are short.
   */
  admit(seq: Sequence, hits: readonly number[], numNew: number, plan: StepPlan): boolean;
  /**
   * Schedules numNew tokens (and padRows padding rows) of a running sequence, preempting the
   * lowest-ranked running sequences while blocks are short. Returns false if `seq` itself was preempted.
   */
  scheduleRunning(seq: Sequence, numNew: number, padRows: number, plan: StepPlan): boolean;
}

export interface BatchPolicy {
  /** Picks this step's work into `plan`. */
  schedule(core: SchedulerCore, plan: StepPlan, now: number): void;
  /** After update() and any later finishes: the policy's own bookkeeping. */
  afterUpdate(core: SchedulerCore): void;
  /** A sequence just finished: true when the policy keeps it, with its blocks, as a padding row. */
  retire(seq: Sequence): boolean;
  /** A sequence leaves for good (abort, failure): the policy drops it if it holds it. */
  forget(seq: Sequence): void;
  /** Finished rows the policy keeps, with their blocks. */
  readonly held: readonly Sequence[];
  /** When the policy is waiting for more arrivals: the time to try again. */
  nextWakeMs(): number | undefined;
}
