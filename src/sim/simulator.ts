// The discrete-event simulation: the engine's own Scheduler (and through it the KV cache manager),
// unchanged, driven over virtual time by a loop instead of the Engine's async machinery — one engine,
// or a fleet of identical replicas behind a router, under one workload and one clock.
//
// Two kinds of event move the clock: a request arrives (from the workload's arrival times), or a
// replica's step completes (its duration from a step-time function — the cost model). At each event
// time the loop first ends the steps that end then (the scheduler's update() takes their tokens at
// that moment, when a real engine would deliver them), then hands every request that has arrived to
// a replica (the router picks it from the replicas' state at that moment), then has every idle
// replica with work start its next step: the scheduler decides, the step is priced, the simulated
// runner answers it. Nothing sleeps: a run of hours of virtual time takes as long as its scheduling
// decisions take. A lone engine is a fleet of one, and makes exactly the decisions it always did.
//
// The outputs are exactly what a real benchmark run collects: per-request records (sent time and the
// time of every token, as a client would see them) and each engine's step records, so the
// benchmark's metrics, utilisation figures, timeline and report apply to a simulated run unchanged.
import type { EngineSettings } from '../engine/engine-options.js';
import type { SchedulerStats } from '../engine/scheduler-stats.js';
import type { StepRecord } from '../engine/step-trace.js';
import type { SamplingParams, SchedulerOutput } from '../engine/types.js';
import type { RequestRecord } from '../runs/metrics.js';
import type { TimelineRequest } from '../runs/timeline.js';
import { SimReplica, SimulationError, type FleetBook, type SimRequest, type StepContext, type StepTimeFn } from './replica.js';
import type { Router } from './routers/router.js';
import { SimulatedTokenRunner, type SyncRunner } from './token-runner.js';

export { SimulationError, simRequestId, type SimRequest, type StepContext, type StepTimeFn } from './replica.js';

export type SimSchedulerOptions = EngineSettings;

export interface SimulationOptions {
  requests: readonly SimRequest[];
  scheduler: SimSchedulerOptions;
  /**
   * Virtual milliseconds one step takes (the cost model), given what the scheduler decided and how
   * long the engine sat idle before it (0 when it follows another step at once; Infinity for the
   * first step of the run).
   */
  stepTimeMs: StepTimeFn;
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

export interface FleetSimulationOptions extends Omit<SimulationOptions, 'runner' | 'onStep' | 'stepTimeMs'> {
  /** Identical replicas (default 1), each with its own scheduler, KV cache and runner. */
  replicas?: number;
  /** Picks the replica of each arriving request; required with more than one replica. */
  router?: Router;
  /** Step time of replica ctx.replica's steps: give each replica a cost model of its own if it keeps state. */
  stepTimeMs: StepTimeFn;
  /** A runner per replica (default: SimulatedTokenRunner). */
  createRunner?: (replica: number) => SyncRunner;
  onStep?: (record: StepRecord, out: SchedulerOutput, replica: number) => void;
}

/** What one replica of a fleet did. */
export interface ReplicaRun {
  index: number;
  /** Its requests' records, in workload order. */
  records: RequestRecord[];
  steps: StepRecord[];
  schedulerOutputs?: SchedulerOutput[];
  timelineRequests: TimelineRequest[];
  numSteps: number;
  numPreemptions: number;
  /** Virtual milliseconds it spent running steps. */
  busyMs: number;
  /** Output tokens it delivered. */
  outputTokens: number;
  stats: SchedulerStats;
}

export interface FleetSimulationResult {
  /** One per request, in workload order. */
  records: RequestRecord[];
  /** The replica each request went to, by request index (-1 for an index no request has). */
  assignment: Int32Array;
  replicas: ReplicaRun[];
  stepsDropped: boolean;
  /** Virtual time from the start to the last request's end. */
  durationMs: number;
}

/** Simulates one engine. */
export function simulate(opts: SimulationOptions): SimulationResult {
  const { runner, onStep, ...rest } = opts;
  const fleet = simulateFleet({
    ...rest,
    replicas: 1,
    ...(runner ? { createRunner: () => runner } : {}),
    ...(onStep ? { onStep: (rec: StepRecord, out: SchedulerOutput) => onStep(rec, out) } : {}),
  });
  const r = fleet.replicas[0];
  return {
    records: fleet.records,
    steps: r.steps,
    stepsDropped: fleet.stepsDropped,
    ...(r.schedulerOutputs ? { schedulerOutputs: r.schedulerOutputs } : {}),
    timelineRequests: r.timelineRequests,
    durationMs: fleet.durationMs,
    numSteps: r.numSteps,
    numPreemptions: r.numPreemptions,
    stats: r.stats,
  };
}

/** Simulates a fleet of identical replicas behind a router, under one workload and one clock. */
export function simulateFleet(opts: FleetSimulationOptions): FleetSimulationResult {
  const n = opts.replicas ?? 1;
  if (!Number.isSafeInteger(n) || n < 1) throw new SimulationError(`the number of replicas must be an integer >= 1, got ${n}`);
  const router = opts.router;
  if (n > 1 && !router) throw new SimulationError(`${n} replicas need a router`);

  // Arrival order; ties keep workload order, as the benchmark client sends them.
  const order = [...opts.requests].sort((a, b) => a.arrivalMs - b.arrivalMs || a.index - b.index);
  for (const r of order) {
    if (!Number.isFinite(r.arrivalMs) || r.arrivalMs < 0) throw new SimulationError(`request ${r.index}: arrival time must be a finite number >= 0 ms, got ${r.arrivalMs}`);
  }
  const maxSteps = opts.maxSteps ?? 50_000_000;
  const book: FleetBook = {
    stepsLeft: maxSteps,
    maxSteps,
    keptSteps: 0,
    maxKeptSteps: opts.maxKeptSteps ?? 100_000,
    keepSteps: opts.keepSteps ?? true,
    stepsDropped: false,
    replicas: [],
  };
  const replicas = book.replicas;
  for (let i = 0; i < n; i++) {
    replicas.push(
      new SimReplica({
        index: i,
        scheduler: opts.scheduler,
        runner: opts.createRunner?.(i) ?? new SimulatedTokenRunner(),
        stepTimeMs: opts.stepTimeMs,
        sampling: opts.sampling,
        keepSchedulerOutputs: opts.keepSchedulerOutputs,
        onStep: opts.onStep,
        book,
      }),
    );
  }
  let maxIndex = -1;
  for (const r of order) maxIndex = Math.max(maxIndex, r.index);
  const assignment = new Int32Array(maxIndex + 1).fill(-1);

  let next = 0;
  for (;;) {
    // The next event: an arrival, a step's end, or a held-back batch's deadline.
    const nextArrival = next < order.length ? order[next].arrivalMs : Infinity;
    let now = nextArrival;
    for (const r of replicas) now = Math.min(now, r.stepEndMs, r.wakeMs);
    if (now === Infinity) break;
    for (const r of replicas) if (r.stepEndMs === now) r.finishStep();
    while (next < order.length && order[next].arrivalMs <= now) {
      const req = order[next++];
      const k = router ? router.route(req, replicas) : 0;
      if (!(Number.isInteger(k) && k >= 0 && k < n)) throw new SimulationError(`the ${router?.name} router picked replica ${k} of ${n}`);
      if (req.index >= 0) assignment[req.index] = k;
      replicas[k].arrive(req);
    }
    const upcoming = next < order.length ? order[next].arrivalMs : Infinity;
    for (const r of replicas) if (!r.busy && (r.dirty || r.wakeMs <= now)) r.startStep(now, upcoming);
  }
  for (const r of replicas) {
    if (r.sched.hasWork()) throw new SimulationError(`replica ${r.index} has ${r.sched.numWaiting} waiting sequences after the last event but scheduled nothing and set no wake-up time`);
  }

  const records: RequestRecord[] = [];
  for (const r of replicas) records.push(...r.records);
  records.sort((a, b) => a.index - b.index);
  let durationMs = 0;
  for (const r of records) durationMs = Math.max(durationMs, r.endMs);
  return {
    records,
    assignment,
    replicas: replicas.map((r) => {
      r.records.sort((a, b) => a.index - b.index);
      r.timelineRequests.sort((a, b) => a.index - b.index);
      return {
        index: r.index,
        records: r.records,
        steps: r.steps,
        ...(r.schedulerOutputs ? { schedulerOutputs: r.schedulerOutputs } : {}),
        timelineRequests: r.timelineRequests,
        numSteps: r.numSteps,
        numPreemptions: r.numPreemptions,
        busyMs: r.busyMs,
        outputTokens: r.outputTokens,
        stats: r.sched.stats(),
      };
    }),
    stepsDropped: book.stepsDropped,
    durationMs,
  };
}
