// Drives a Scheduler with the fake runner synchronously (no Engine, no timers), checking the
// scheduler's invariants after every step, and collects each request's completions. Outputs go
// through the output processor (no tokenizer) exactly as the engine sends them.
import assert from 'node:assert/strict';
import { OutputProcessor } from '../../src/engine/output-processor.js';
import type { AddRequest } from '../../src/engine/request-checks.js';
import { Scheduler } from '../../src/engine/scheduler.js';
import type { SchedulerOptions } from '../../src/engine/scheduler-options.js';
import { FakeModelRunner, type FakeRunnerOptions } from '../helpers/fake-runner.js';
import { DEFAULT_SAMPLING, type FinishReason, type RequestOutput, type SamplingParams, type SchedulerOutput } from '../../src/engine/types.js';

export interface Completion {
  tokenIds: number[];
  logprobs: number[];
  text: string;
  finishReason?: FinishReason;
  numPreemptions: number;
}

export interface DriveResult {
  /** requestId -> completions by index. */
  completions: Map<string, Completion[]>;
  /** Every step's SchedulerOutput, in order. */
  steps: SchedulerOutput[];
  outputs: RequestOutput[];
}

export function schedOptions(over: Partial<SchedulerOptions> = {}): SchedulerOptions {
  return {
    policy: 'continuous',
    schedulingPolicy: 'fcfs',
    maxNumSeqs: 8,
    maxNumBatchedTokens: 64,
    numBlocks: 64,
    blockSize: 4,
    enablePrefixCaching: true,
    longPrefillTokenThreshold: 0,
    maxQueue: 0,
    staticBatchSize: 4,
    staticWaitMs: 0,
    staticDropFinished: false,
    maxModelLen: 256,
    eogIds: [],
    ...over,
  };
}

export function sampling(over: Partial<SamplingParams> = {}): SamplingParams {
  return { ...DEFAULT_SAMPLING, temperature: 0, ...over };
}

export class Driver {
  readonly sched: Scheduler;
  readonly runner: FakeModelRunner;
  readonly processor = new OutputProcessor(null);
  readonly completions = new Map<string, Completion[]>();
  readonly steps: SchedulerOutput[] = [];
  readonly outputs: RequestOutput[] = [];
  now = 0;
  /** Called after every step with its output (for extra per-step assertions). */
  onStep?: (out: SchedulerOutput) => void;

  constructor(opts: Partial<SchedulerOptions> = {}, runnerOpts: Partial<FakeRunnerOptions> = {}) {
    this.sched = new Scheduler(schedOptions(opts));
    const o = this.sched.options;
    this.runner = new FakeModelRunner({ numBlocks: o.numBlocks, blockSize: o.blockSize, ...runnerOpts });
  }

  add(r: AddRequest): string {
    const req = this.sched.addRequest(r, this.now);
    this.processor.addRequest(req.requestId, req.sampling, req.promptTokenIds.length);
    this.completions.set(req.requestId, Array.from({ length: r.sampling.n }, () => ({ tokenIds: [], logprobs: [], text: '', numPreemptions: 0 })));
    return req.requestId;
  }

  abort(id: string): RequestOutput[] {
    const outs = this.processor.process(this.sched.abort(id, this.now)).outputs;
    for (const o of outs) this.take(o);
    this.sched.checkInvariants();
    return outs;
  }

  /** One schedule -> execute -> update round; returns the step's output. */
  step(): SchedulerOutput {
    this.now += 1;
    const out = this.sched.schedule(this.now).output;
    const o = this.sched.options;
    assert.ok(out.numBatchedTokens <= o.maxNumBatchedTokens, `step ${out.step}: ${out.numBatchedTokens} tokens > budget ${o.maxNumBatchedTokens}`);
    assert.ok(out.scheduled.length <= o.maxNumSeqs, `step ${out.step}: ${out.scheduled.length} sequences > max_num_seqs ${o.maxNumSeqs}`);
    const sum = out.scheduled.reduce((a, s) => a + s.tokenIds.length + (s.padRows ?? 0), 0);
    assert.equal(out.numBatchedTokens, sum);
    this.sched.checkInvariants();
    if (out.scheduled.length === 0) {
      this.sched.skipStep(out);
    } else {
      const res = this.runner.executeSync(out);
      this.now += 1;
      const { outputs, stopped } = this.processor.process(this.sched.update(out, res, this.now).updates);
      this.sched.finishStopped(stopped, this.now);
      for (const o2 of outputs) this.take(o2);
      this.steps.push(out);
    }
    this.sched.checkInvariants();
    this.onStep?.(out);
    return out;
  }

  /** Steps until no work is left (fails after maxSteps). */
  run(maxSteps = 10_000): DriveResult {
    let n = 0;
    while (this.sched.hasWork()) {
      assert.ok(n++ < maxSteps, `no progress after ${maxSteps} steps`);
      this.step();
    }
    return { completions: this.completions, steps: this.steps, outputs: this.outputs };
  }

  private take(o: RequestOutput): void {
    this.outputs.push(o);
    const c = this.completions.get(o.requestId)![o.index];
    assert.equal(c.finishReason, undefined, `output for ${o.requestId}#${o.index} after it finished`);
    c.tokenIds.push(...o.newTokenIds);
    for (const l of o.logprobs ?? []) c.logprobs.push(l.logprob);
    c.text += o.text;
    c.numPreemptions = o.numPreemptions;
    if (o.finished) c.finishReason = o.finishReason;
  }
}

/** Deterministic pseudo-random prompt of `len` token ids (1..999). */
export function prompt(seed: number, len: number): number[] {
  const out: number[] = [];
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.push(1 + (x % 999));
  }
  return out;
}
