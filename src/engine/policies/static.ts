// Static (request-level) batching, the baseline continuous batching is measured against: a batch
// of up to staticBatchSize waiting requests is formed when the engine is idle, prefilled with every
// prompt padded to the longest, and decoded until all of its requests finish. Finished rows stay in
// the batch as padding (computed and thrown away) unless staticDropFinished; nobody joins meanwhile.

import type { BatchPolicy, SchedulerCore } from './policy.js';
import type { Sequence } from '../sequence.js';
import type { StepPlan } from '../step-plan.js';

export class StaticPolicy implements BatchPolicy {
  /** Finished rows kept, with their blocks, as padding until the batch ends. */
  held: Sequence[] = [];
  private wakeAtMs: number | undefined;

  constructor(
    private readonly batchSize: number,
    /** How long the oldest waiting request may wait for a batch to fill (0: never wait). */
    private readonly waitMs: number,
    private readonly dropFinished: boolean,
  ) {}

  schedule(core: SchedulerCore, plan: StepPlan, now: number): void {
    this.wakeAtMs = undefined;
    if (core.running.length === 0) {
      this.endBatch(core);
      this.formBatch(core, plan, now);
      if (core.running.length === 0) return;
    }
    const rows = core.running.length + this.held.length;
    if (core.running.some((s) => !s.prefillDone)) {
      // Prompts padded to the longest; when they do not fit the token budget together, the padded
      // prompt is computed in column chunks, every row doing the same number of rows per step.
      let longest = 0;
      for (const s of core.running) if (!s.prefillDone) longest = Math.max(longest, s.numUncomputed);
      const width = Math.min(longest, Math.max(1, Math.floor(plan.tokenBudget / rows)));
      for (const seq of core.running.slice()) {
        if (seq.status !== 'running' || plan.has(seq)) continue;
        if (seq.prefillDone) plan.add(seq, 0, width, false, []);
        else {
          const numNew = Math.min(width, seq.numUncomputed);
          core.scheduleRunning(seq, numNew, width - numNew, plan);
        }
      }
      for (const seq of this.held) plan.add(seq, 0, width, false, []);
      return;
    }
    for (const seq of core.running.slice()) {
      if (seq.status !== 'running' || plan.has(seq)) continue;
      const numNew = Math.min(seq.numUncomputed, plan.tokenBudget);
      if (numNew <= 0) break;
      core.scheduleRunning(seq, numNew, 0, plan);
    }
    for (const seq of this.held) plan.add(seq, 0, 1, false, []);
  }

  /**
   * Takes up to a batch of waiting requests. With a wait, a batch that is not full waits until its
   * oldest request has waited that long. A batch is limited to the requests whose full length
   * (prompt + max_tokens, every completion) fits the free blocks, so it never has to preempt; the
   * first request is always taken, so an oversized one still runs (alone).
   */
  private formBatch(core: SchedulerCore, plan: StepPlan, now: number): void {
    const o = core.options;
    const waiting = core.waiting;
    if (waiting.length === 0) return;
    if (this.waitMs > 0 && waiting.length < this.batchSize) {
      let oldest = Infinity;
      for (const s of waiting) oldest = Math.min(oldest, s.request.timing.arrivalMs);
      if (now < oldest + this.waitMs) {
        this.wakeAtMs = oldest + this.waitMs;
        return;
      }
    }
    let seats = 0;
    let reserve = 0;
    const taken: Sequence[] = [];
    for (const seq of waiting) {
      if (taken.length >= this.batchSize) break;
      const need = core.seatsNeeded(seq);
      if (seats + need > o.maxNumSeqs) break;
      const finalLen = Math.min(seq.numPromptTokens + seq.request.sampling.maxTokens, o.maxModelLen);
      const blocks = need * core.kv.blocksNeeded(finalLen - 1);
      if (taken.length > 0 && reserve + blocks > core.kv.numFreeBlocks) break;
      taken.push(seq);
      seats += need;
      reserve += blocks;
    }
    // Admitted without slots: the prefill above allocates them, as for any running sequence.
    for (const seq of taken) core.admit(seq, core.kv.computedPrefix(seq).blocks, 0, plan);
  }

  /** Ends the batch: its padding rows give their blocks back. */
  private endBatch(core: SchedulerCore): void {
    for (const seq of this.held) core.kv.free(seq);
    this.held = [];
  }

  afterUpdate(core: SchedulerCore): void {
    if (core.running.length === 0) this.endBatch(core);
  }

  retire(seq: Sequence): boolean {
    if (this.dropFinished) return false;
    this.held.push(seq);
    return true;
  }

  forget(seq: Sequence): void {
    const i = this.held.indexOf(seq);
    if (i >= 0) this.held.splice(i, 1);
  }

  nextWakeMs(): number | undefined {
    return this.wakeAtMs;
  }
}
