// The discrete-event simulation: the engine's own Scheduler (and through it the KV cache manager),
// unchanged, driven over virtual time by a loop instead of the Engine's async machinery.
//
// Two kinds of event move the clock: a request arrives (from the workload's arrival times), or a step
// completes (its duration from a step-time function — the cost model). At each step start the loop
// admits every request that has arrived, asks the scheduler for a step, prices it, lets the simulated
// runner answer it with tokens, advances the clock by the step's duration and hands the tokens to
// the scheduler's update() at the new time — the moment a real engine would deliver them. Nothing
// sleeps: a run of hours of virtual time takes as long as its scheduling decisions take.
//
// The outputs are exactly what a real benchmark run collects: per-request records (sent time and the
// time of every token, as a client would see them) and the engine's step records, so the benchmark's
// metrics, utilisation figures, timeline and report apply to a simulated run unchanged.
import type { EngineSettings } from '../engine/engine-options.js';
import { Scheduler } from '../engine/scheduler.js';
import type { SchedulerStats } from '../engine/scheduler-stats.js';
import { stepRecord, type StepRecord } from '../engine/step-trace.js';
import { DEFAULT_SAMPLING, type SamplingParams, type SchedulerOutput, type SequenceUpdate } from '../engine/types.js';
import type { RequestRecord } from '../runs/metrics.js';
import type { TimelineRequest } from '../runs/timeline.js';
import { SimulatedTokenRunner, type SyncRunner } from './token-runner.js';

/** One request of the workload (a BenchRequest fits). */
export interface SimRequest {
  index: number;
  promptTokenIds: number[];
  /** Tokens it generates (max_tokens with EOS ignored). */
  outputLen: number;
  /** Virtual milliseconds after the start at which it arrives. */
  arrivalMs: number;
  priority?: number;
}

export type SimSchedulerOptions = EngineSettings;

export interface SimulationOptions {
  requests: readonly SimRequest[];
  scheduler: SimSchedulerOptions;
  /**
   * Virtual milliseconds one step takes (the cost model), given what the scheduler decided and how
   * long the engine sat idle before it (0 when it follows another step at once; Infinity for the
   * first step of the run).
   */
  stepTimeMs: (out: SchedulerOutput, ctx: StepContext) => number;
  /** Produces the sampled tokens (default: SimulatedTokenRunner). */
  runner?: SyncRunner;
  /** Sampling of every request, beyond maxTokens = outputLen and ignoreEos (default greedy, seed = request index). */
  sampling?: Partial<SamplingParams>;
  /** Keep the step records (default true). */
  keepSteps?: boolean;
  /**
   * Stop keeping step records past this many (default 100,000): millions of kept records cost more
   * time in garbage collection than the simulation itself. `onStep` still sees every step.
   */
  maxKeptSteps?: number;
  /** Keep every SchedulerOutput (tests: compare with a real engine's). */
  keepSchedulerOutputs?: boolean;
  /** Called after every step. */
  onStep?: (record: StepRecord, out: SchedulerOutput) => void;
  /** Stop with SimulationError after this many steps (default 50 million: a runaway guard). */
  maxSteps?: number;
}

/** What the step-time function knows about a step besides its batch. */
export interface StepContext {
  /** Virtual milliseconds since the previous step ended (Infinity before the first step). */
  idleMs: number;
}

export interface SimulationResult {
  /** One per request, in workload order, timed on the virtual clock like a benchmark client's. */
  records: RequestRecord[];
  steps: StepRecord[];
  /** True when there were more steps than maxKeptSteps and `steps` was emptied. */
  stepsDropped: boolean;
  schedulerOutputs?: SchedulerOutput[];
  timelineRequests: TimelineRequest[];
  /** Virtual time from the start to the last request's end. */
  durationMs: number;
  numSteps: number;
  numPreemptions: number;
  stats: SchedulerStats;
}

/** The simulation could not go on (a step time that is not a number, a stalled scheduler, ...). */
export class SimulationError extends Error {
  override name = 'SimulationError';
}

/** Request id of a workload request: the same one the real benchmark uses, so traces line up. */
export function simRequestId(index: number): string {
  return `bench-${index}`;
}

export function simulate(opts: SimulationOptions): SimulationResult {
  // Requests end by length (EOS is ignored): the scheduler's token-level stops decide, as in the
  // engine; there is no text, so no output processing.
  const sched = new Scheduler({ ...opts.scheduler, eogIds: [] });
  const runner = opts.runner ?? new SimulatedTokenRunner();
  let keepSteps = opts.keepSteps ?? true;
  const maxKeptSteps = opts.maxKeptSteps ?? 100_000;
  let stepsDropped = false;
  const maxSteps = opts.maxSteps ?? 50_000_000;

  // Arrival order; ties keep workload order, as the benchmark client sends them.
  const order = [...opts.requests].sort((a, b) => a.arrivalMs - b.arrivalMs || a.index - b.index);
  for (const r of order) {
    if (!Number.isFinite(r.arrivalMs) || r.arrivalMs < 0) throw new SimulationError(`request ${r.index}: arrival time must be a finite number >= 0 ms, got ${r.arrivalMs}`);
  }
  const records = new Map<string, RequestRecord>();
  const byIndex: RequestRecord[] = [];
  const timelineRequests: TimelineRequest[] = [];
  const steps: StepRecord[] = [];
  const schedulerOutputs: SchedulerOutput[] | undefined = opts.keepSchedulerOutputs ? [] : undefined;
  let numPreemptions = 0;

  const arrive = (r: SimRequest): void => {
    const requestId = simRequestId(r.index);
    const rec: RequestRecord = { index: r.index, promptLen: r.promptTokenIds.length, outputLen: 0, sentMs: r.arrivalMs, chunkMs: [], endMs: r.arrivalMs, success: false, requestId };
    byIndex.push(rec);
    try {
      sched.addRequest(
        {
          requestId,
          promptTokenIds: r.promptTokenIds,
          sampling: { ...DEFAULT_SAMPLING, temperature: 0, seed: r.index, ...opts.sampling, maxTokens: r.outputLen, ignoreEos: true },
          priority: r.priority,
        },
        r.arrivalMs,
      );
      records.set(requestId, rec);
      timelineRequests.push({ index: r.index, requestId, addedAtMs: r.arrivalMs });
    } catch (err) {
      // Refused (too long for the model or the KV cache, queue full): failed at once, as in a real run.
      rec.error = (err as Error).message;
    }
  };

  const deliver = (u: SequenceUpdate, now: number): void => {
    const rec = records.get(u.requestId);
    if (!rec) return;
    if (u.token) {
      rec.chunkMs.push(now);
      rec.outputLen++;
    }
    if (u.finishReason !== undefined && !sched.getRequest(u.requestId)) {
      rec.endMs = now;
      rec.success = u.finishReason !== 'abort';
      if (!rec.success) rec.error = 'request was aborted';
      numPreemptions += u.numPreemptions;
      records.delete(u.requestId);
    }
  };

  let now = 0;
  let next = 0;
  let numSteps = 0;
  let lastStepEnd = -Infinity;
  // One context object for every step: a simulation prices millions of steps.
  const ctx: StepContext = { idleMs: Infinity };
  for (;;) {
    while (next < order.length && order[next].arrivalMs <= now) arrive(order[next++]);
    if (!sched.hasWork()) {
      if (next >= order.length) break;
      now = order[next].arrivalMs; // idle until the next arrival
      continue;
    }
    const { output: out, summary } = sched.schedule(now);
    if (out.scheduled.length === 0) {
      // Nothing can run yet (a static batch waiting to fill): wake at its deadline or the next arrival.
      sched.skipStep(out);
      const wake = Math.min(sched.nextWakeMs() ?? Infinity, next < order.length ? order[next].arrivalMs : Infinity);
      if (!(wake > now && wake < Infinity)) {
        throw new SimulationError(`the scheduler has ${sched.numWaiting} waiting sequences at ${now.toFixed(3)} ms but scheduled nothing and set no wake-up time`);
      }
      now = wake;
      continue;
    }
    if (++numSteps > maxSteps) throw new SimulationError(`simulation exceeded ${maxSteps} steps at ${now.toFixed(3)} ms of virtual time`);
    ctx.idleMs = now - lastStepEnd;
    const dt = opts.stepTimeMs(out, ctx);
    if (!(Number.isFinite(dt) && dt >= 0)) throw new SimulationError(`step ${out.step}: step time must be a finite number of ms >= 0, got ${dt}`);
    const result = runner.executeSync(out);
    result.forwardMs = dt;
    const start = now;
    now += dt;
    lastStepEnd = now;
    const upd = sched.update(out, result, now);
    for (const u of upd.updates) deliver(u, now);
    schedulerOutputs?.push(out);
    if (keepSteps || opts.onStep) {
      // The whole step is "execute" time.
      const rec = stepRecord(summary, upd.numFinished, { startMs: start, scheduleMs: 0, forwardMs: dt, sampleMs: 0, executeMs: dt, updateMs: 0, totalMs: dt });
      if (keepSteps) {
        if (steps.length < maxKeptSteps) steps.push(rec);
        else {
          steps.length = 0;
          keepSteps = false;
          stepsDropped = true;
        }
      }
      opts.onStep?.(rec, out);
    }
  }

  let durationMs = 0;
  for (const r of byIndex) durationMs = Math.max(durationMs, r.endMs);
  byIndex.sort((a, b) => a.index - b.index);
  timelineRequests.sort((a, b) => a.index - b.index);
  return {
    records: byIndex,
    steps,
    stepsDropped,
    ...(schedulerOutputs ? { schedulerOutputs } : {}),
    timelineRequests,
    durationMs,
    numSteps,
    numPreemptions,
    stats: sched.stats(),
  };
}
