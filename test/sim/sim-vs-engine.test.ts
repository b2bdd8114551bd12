// The simulator must make exactly the decisions the real engine makes: the same Scheduler, the same
// KV cache manager, the same inputs at the same times. Here the real Engine (its step(), trace and
// request streams) runs with the FakeModelRunner on a virtual clock that the runner advances by the
// same step-time function, and its SchedulerOutput sequence, step trace and token times are
// compared with the simulator's — under continuous, static and no batching, with Poisson arrivals
// and a KV cache small enough to preempt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../../src/engine/engine.js';
import { FakeModelRunner } from '../helpers/fake-runner.js';
import { DEFAULT_SAMPLING, type ModelRunner, type SchedulerOutput } from '../../src/engine/types.js';
import type { StepRecord } from '../../src/engine/step-trace.js';
import { simulate, simRequestId, type SimRequest, type SimSchedulerOptions } from '../../src/sim/simulator.js';
import { simOptions, poissonWorkload } from './helpers.js';

const stepTime = (out: SchedulerOutput) => 0.8 + 0.05 * out.numBatchedTokens + 0.02 * out.scheduled.length;

interface EngineRun {
  outputs: SchedulerOutput[];
  trace: StepRecord[];
  tokenTimes: Map<number, number[]>;
  arrivals: Map<number, number>;
}

/** The real engine, stepped by hand on a virtual clock; requests are added at their arrival times. */
async function engineRun(requests: readonly SimRequest[], sched: SimSchedulerOptions): Promise<EngineRun> {
  let clock = 0;
  const fake = new FakeModelRunner({ numBlocks: sched.numBlocks, blockSize: sched.blockSize });
  const outputs: SchedulerOutput[] = [];
  const runner: ModelRunner = {
    async execute(out) {
      outputs.push(structuredClone(out));
      const r = fake.executeSync(out);
      clock += stepTime(out); // the step takes this long: the engine reads the clock after it
      return r;
    },
    close: async () => undefined,
  };
  const engine = new Engine(runner, { ...sched, tokenizer: null, eogIds: [], autoRun: false, clock: () => clock, traceCapacity: 100_000 });
  const order = [...requests].sort((a, b) => a.arrivalMs - b.arrivalMs || a.index - b.index);
  const timings = new Map<number, { arrivalMs: number; tokenTimesMs: number[][] }>();
  let next = 0;
  for (;;) {
    while (next < order.length && order[next].arrivalMs <= clock) {
      const r = order[next++];
      const now = clock;
      clock = r.arrivalMs; // stamped with its own arrival time, as a request arriving mid-step is
      const s = engine.addRequest({
        requestId: simRequestId(r.index),
        promptTokenIds: r.promptTokenIds,
        sampling: { ...DEFAULT_SAMPLING, temperature: 0, seed: r.index, maxTokens: r.outputLen, ignoreEos: true },
      });
      clock = now;
      timings.set(r.index, s.timing);
    }
    if (!engine.hasWork()) {
      if (next >= order.length) break;
      clock = order[next].arrivalMs;
      continue;
    }
    if (!(await engine.step())) {
      clock = Math.min(engine.scheduler.nextWakeMs() ?? Infinity, next < order.length ? order[next].arrivalMs : Infinity);
      assert.ok(Number.isFinite(clock), 'the engine stalled');
    }
  }
  const trace = engine.trace.records();
  await engine.close();
  return { outputs, trace, tokenTimes: new Map([...timings].map(([i, t]) => [i, t.tokenTimesMs[0]])), arrivals: new Map([...timings].map(([i, t]) => [i, t.arrivalMs])) };
}

/** A SchedulerOutput without the token values (the fast simulated runner makes up its own tokens). */
function shapeOnly(out: SchedulerOutput) {
  return {
    ...out,
    scheduled: out.scheduled.map((s) => ({ ...s, tokenIds: s.tokenIds.length })),
    newSequences: out.newSequences.map((n) => ({ ...n, outputTokenIds: n.outputTokenIds.length })),
  };
}

/** The parts of a step record that are decisions, not timings of this process. */
const decisions = (r: StepRecord) => ({ ...r, scheduleMs: 0, forwardMs: 0, sampleMs: 0, executeMs: 0, updateMs: 0, totalMs: 0 });

const cases: Array<[string, SimSchedulerOptions, number, (trace: StepRecord[]) => boolean]> = [
  ['continuous, preempting', simOptions({ numBlocks: 28, maxNumSeqs: 6, maxNumBatchedTokens: 48 }), 600, (t) => t.some((s) => s.numPreempted > 0)],
  ['continuous, chunked prefill', simOptions({ maxNumBatchedTokens: 16, longPrefillTokenThreshold: 8 }), 300, (t) => t.some((s) => s.seqs.some((q) => q.prefillTokens === 8 && !q.sampled))],
  // A batch that is not full waits: some step starts exactly staticWaitMs after a request arrived.
  ['static with a wait', simOptions({ policy: 'static', staticBatchSize: 4, staticWaitMs: 10 }), 120, (t) => t.some((s) => s.seqs.length > 0 && s.seqs.length < 4 && s.numPrefillTokens > 0)],
  ['no batching', simOptions({ policy: 'none' }), 300, (t) => t.every((s) => s.seqs.length === 1)],
];

for (const [name, sched, qps, exercised] of cases) {
  test(`simulator and engine make identical decisions: ${name}`, async () => {
    const requests = poissonWorkload(36, 5, qps);
    const real = await engineRun(requests, sched);
    // With the fake runner's tokens: identical, token for token.
    const sim = simulate({ requests, scheduler: sched, stepTimeMs: stepTime, runner: new FakeModelRunner({ numBlocks: sched.numBlocks, blockSize: sched.blockSize }), keepSchedulerOutputs: true });
    assert.ok(real.outputs.length > 20);
    assert.ok(exercised(real.trace), `the workload exercises ${name}`);
    assert.deepEqual(sim.schedulerOutputs, real.outputs);
    assert.deepEqual(sim.steps.map(decisions), real.trace.map(decisions));
    assert.deepEqual(sim.steps.map((s) => s.startMs), real.trace.map((s) => s.startMs));
    for (const r of sim.records) {
      assert.equal(r.sentMs, real.arrivals.get(r.index), `arrival of request ${r.index}`);
      assert.deepEqual(r.chunkMs, real.tokenTimes.get(r.index), `token times of request ${r.index}`);
    }

    // The fast path (made-up tokens) decides the same.
    const fast = simulate({ requests, scheduler: sched, stepTimeMs: stepTime, keepSchedulerOutputs: true });
    assert.deepEqual(fast.schedulerOutputs!.map(shapeOnly), real.outputs.map(shapeOnly));
    assert.deepEqual(fast.records.map((r) => r.chunkMs), sim.records.map((r) => r.chunkMs));
  });
}
