// Scheduler overhead per step: schedule() + update() + output processing with 256 running
// sequences, the fake runner standing in for the model (its time is not counted). Target: under
// 0.5 ms per step.
//
//   npx tsx bench/scheduler.ts [--seqs 256] [--steps 2000]
//
// Two workloads: "steady decode" (256 sequences decoding, nobody finishes) and "churn" (short
// requests finish and new ones arrive every step, so admission, prefix lookups and frees are in
// the loop too).
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { OutputProcessor } from '../src/engine/output-processor.js';
import { Scheduler } from '../src/engine/scheduler.js';
import type { SchedulerOptions } from '../src/engine/scheduler-options.js';
import type { ModelRunnerOutput, SchedulerOutput } from '../src/engine/types.js';
import { FakeModelRunner } from '../test/helpers/fake-runner.js';
import { DEFAULT_SAMPLING, type SamplingParams } from '../src/engine/types.js';

const { values } = parseArgs({
  options: {
    seqs: { type: 'string', default: '256' },
    steps: { type: 'string', default: '2000' },
  },
});
const SEQS = Number(values.seqs);
const STEPS = Number(values.steps);
if (!(SEQS >= 1) || !(STEPS >= 10)) throw new Error('--seqs must be >= 1 and --steps >= 10');

const PROMPT = 128;
const BLOCK = 16;

function options(): SchedulerOptions {
  return {
    policy: 'continuous',
    schedulingPolicy: 'fcfs',
    maxNumSeqs: SEQS,
    maxNumBatchedTokens: Math.max(8192, SEQS),
    numBlocks: SEQS * Math.ceil((PROMPT + STEPS + 128) / BLOCK) + 64,
    blockSize: BLOCK,
    enablePrefixCaching: true,
    longPrefillTokenThreshold: 0,
    maxQueue: 0,
    staticBatchSize: SEQS,
    staticWaitMs: 0,
    staticDropFinished: false,
    maxModelLen: PROMPT + STEPS + 128,
    eogIds: [],
  };
}

function promptFor(i: number): number[] {
  // A shared 64-token system prefix, then a per-request part (so prefix caching has work to do).
  const p: number[] = [];
  for (let k = 0; k < PROMPT; k++) p.push(k < 64 ? 1 + k : 1 + ((i * 7919 + k * 104729) % 997));
  return p;
}

const sampling = (maxTokens: number): SamplingParams => ({ ...DEFAULT_SAMPLING, temperature: 0, maxTokens });

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function run(name: string, churn: boolean): void {
  const o = options();
  const sched = new Scheduler(o);
  const outputs = new OutputProcessor(null);
  const runner = new FakeModelRunner({ numBlocks: o.numBlocks, blockSize: o.blockSize, verifyKv: false });
  let added = 0;
  const add = (maxTokens: number) => {
    const req = sched.addRequest({ promptTokenIds: promptFor(added++), sampling: sampling(maxTokens) }, 0);
    outputs.addRequest(req.requestId, req.sampling, req.promptTokenIds.length);
  };
  // What the engine does with a step's results: update(), then output processing.
  const apply = (out: SchedulerOutput, res: ModelRunnerOutput, t: number) => {
    const { stopped } = outputs.process(sched.update(out, res, t).updates);
    sched.finishStopped(stopped, t);
  };
  // Churn: requests live 32..95 tokens, so a few finish and are replaced every step.
  const lifetime = () => (churn ? 32 + (added % 64) : STEPS + 60);
  for (let i = 0; i < SEQS; i++) add(lifetime());
  let now = 0;
  // Warm up until every prompt is prefilled (and the JIT has settled).
  for (let i = 0; i < 50; i++) {
    const out = sched.schedule(now++).output;
    apply(out, runner.executeSync(out), now++);
  }
  const times: number[] = [];
  let scheduledSeqs = 0;
  for (let i = 0; i < STEPS; i++) {
    if (churn) while (sched.numRunning + sched.numWaiting < SEQS) add(lifetime());
    const t0 = performance.now();
    const out = sched.schedule(now++).output;
    const t1 = performance.now();
    const res = runner.executeSync(out);
    const t2 = performance.now();
    apply(out, res, now++);
    const t3 = performance.now();
    times.push(t1 - t0 + (t3 - t2));
    scheduledSeqs += out.scheduled.length;
  }
  times.sort((a, b) => a - b);
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  console.log(
    `${name.padEnd(14)} ${String(STEPS).padStart(5)} steps, ${(scheduledSeqs / STEPS).toFixed(1)} seqs/step: ` +
      `median ${percentile(times, 50).toFixed(3)} ms, p99 ${percentile(times, 99).toFixed(3)} ms, mean ${mean.toFixed(3)} ms ` +
      `(target < 0.5 ms); preemptions ${sched.stats().preemptions}, prefix hits ${sched.stats().prefixCacheHits} tokens`,
  );
}

console.log(`schedule() + update() + output processing per step with ${SEQS} running sequences (fake runner not timed)`);
run('steady decode', false);
run('churn', true);
