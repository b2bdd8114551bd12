// One simulated engine: the engine's own Scheduler (and through it its KV cache manager), a runner
// that answers its steps with tokens, and the step it has in flight on the virtual clock. The
// discrete-event loop (simulator.ts) owns the clock and tells a replica when to start a step and when
// the step it started has ended; a replica keeps the client-side record of every request it serves.
//
// Between a step's start and its end the scheduler sits as a real engine's does while its model
// runs: the step decided, its tokens not yet delivered. A router looking at the replica then (its
// queue, its KV cache) sees what an endpoint picker scraping a real replica's metrics would.
import { Scheduler } from '../engine/scheduler.js';
import type { KvSequence } from '../engine/kv-cache-manager.js';
import { stepRecord, type StepRecord, type StepSummary } from '../engine/step-trace.js';
import { DEFAULT_SAMPLING, type ModelRunnerOutput, type SamplingParams, type SchedulerOutput, type SequenceUpdate } from '../engine/types.js';
import type { EngineSettings } from '../engine/engine-options.js';
import type { RequestRecord } from '../runs/metrics.js';
import type { TimelineRequest } from '../runs/timeline.js';
import type { SyncRunner } from './token-runner.js';

/** One request of the workload (a BenchRequest fits). */
export interface SimRequest {
  index: number;
  promptTokenIds: number[];
  /** Tokens it generates (max_tokens with EOS ignored). */
  outputLen: number;
  /** Virtual milliseconds after the start at which it arrives. */
  arrivalMs: number;
  priority?: number;
  /** Which shared prefix the prompt starts with, if the workload has them (reports only). */
  prefixGroup?: number;
}

/** What the step-time function knows about a step besides its batch. */
export interface StepContext {
  /** Virtual milliseconds since the replica's previous step ended (Infinity before its first step). */
  idleMs: number;
  /** Which replica runs the step (0 for a lone engine): each has a cost model of its own. */
  replica: number;
}

/** Virtual milliseconds one step takes (the cost model). */
export type StepTimeFn = (out: SchedulerOutput, ctx: StepContext) => number;

/** The simulation could not go on (a step time that is not a number, a stalled scheduler, ...). */
export class SimulationError extends Error {
  override name = 'SimulationError';
}

/** Request id of a workload request: the same one the real benchmark uses, so traces line up. */
export function simRequestId(index: number): string {
  return `bench-${index}`;
}

/**
 * A prompt as the KV cache manager's prefix lookup wants it. Its block hashes are computed on the
 * first lookup and kept, so asking every replica of a fleet hashes the prompt once.
 */
export class PromptProbe implements KvSequence {
  numComputed = 0;
  blockTable: number[] = [];
  readonly blockHashes: string[] = [];
  numCachedBlocks = 0;

  constructor(readonly tokenIds: readonly number[]) {}
}

/** What is shared by the replicas of one simulation: the step budget and the kept step records. */
export interface FleetBook {
  /** Steps every replica may still run together (the runaway guard). */
  stepsLeft: number;
  readonly maxSteps: number;
  /** Step records kept so far across replicas, and the cap past which all of them are dropped. */
  keptSteps: number;
  readonly maxKeptSteps: number;
  keepSteps: boolean;
  stepsDropped: boolean;
  readonly replicas: SimReplica[];
}

export interface ReplicaOptions {
  index: number;
  scheduler: EngineSettings;
  runner: SyncRunner;
  stepTimeMs: StepTimeFn;
  sampling?: Partial<SamplingParams>;
  keepSchedulerOutputs?: boolean;
  onStep?: (record: StepRecord, out: SchedulerOutput, replica: number) => void;
  book: FleetBook;
}

interface StepInFlight {
  out: SchedulerOutput;
  summary: StepSummary;
  result: ModelRunnerOutput;
  startMs: number;
  dt: number;
}

export class SimReplica {
  readonly index: number;
  readonly sched: Scheduler;
  /** Requests it was given, as a client records them (failed at once when refused). */
  readonly records: RequestRecord[] = [];
  readonly timelineRequests: TimelineRequest[] = [];
  steps: StepRecord[] = [];
  readonly schedulerOutputs: SchedulerOutput[] | undefined;
  numSteps = 0;
  numPreemptions = 0;
  /** Virtual milliseconds spent in steps. */
  busyMs = 0;
  /** Output tokens delivered. */
  outputTokens = 0;
  /** When the step in flight ends (Infinity when none is). */
  stepEndMs = Infinity;
  /** When a batch held back for more arrivals should be tried again (Infinity when none is). */
  wakeMs = Infinity;
  /** Something changed (a request arrived, a step ended): try to start a step. */
  dirty = false;

  private readonly o: ReplicaOptions;
  private readonly open = new Map<string, RequestRecord>();
  private inFlight: StepInFlight | undefined;
  private lastStepEnd = -Infinity;
  // One context object for every step: a simulation prices millions of steps.
  private readonly ctx: StepContext;

  constructor(o: ReplicaOptions) {
    this.o = o;
    this.index = o.index;
    // Requests end by length (EOS is ignored): the scheduler's token-level stops decide, as in the
    // engine; there is no text, so no output processing.
    this.sched = new Scheduler({ ...o.scheduler, eogIds: [] });
    this.schedulerOutputs = o.keepSchedulerOutputs ? [] : undefined;
    this.ctx = { idleMs: Infinity, replica: o.index };
  }

  get numWaiting(): number {
    return this.sched.numWaiting;
  }

  get numRunning(): number {
    return this.sched.numRunning;
  }

  /** Fraction of KV blocks held by sequences (vLLM's kv_cache_usage_perc). */
  get kvUsage(): number {
    return this.sched.kv.pool.usage();
  }

  get busy(): boolean {
    return this.inFlight !== undefined;
  }

  /** Tokens of the prompt an admission here would find in the prefix cache now (nothing is touched). */
  cachedPrefixTokens(probe: PromptProbe): number {
    return this.sched.kv.computedPrefix(probe).numTokens;
  }

  /** Hands the replica a request at its arrival time; a refused one fails at once, as in a real run. */
  arrive(r: SimRequest): void {
    const requestId = simRequestId(r.index);
    const rec: RequestRecord = { index: r.index, promptLen: r.promptTokenIds.length, outputLen: 0, sentMs: r.arrivalMs, chunkMs: [], endMs: r.arrivalMs, success: false, requestId };
    this.records.push(rec);
    this.dirty = true;
    try {
      this.sched.addRequest(
        {
          requestId,
          promptTokenIds: r.promptTokenIds,
          sampling: { ...DEFAULT_SAMPLING, temperature: 0, seed: r.index, ...this.o.sampling, maxTokens: r.outputLen, ignoreEos: true },
          priority: r.priority,
        },
        r.arrivalMs,
      );
      this.open.set(requestId, rec);
      this.timelineRequests.push({ index: r.index, requestId, addedAtMs: r.arrivalMs });
    } catch (err) {
      rec.error = (err as Error).message;
    }
  }

  /**
   * Asks the scheduler for a step at `now` and, if it scheduled one, prices it and has the runner
   * answer it; its tokens are delivered when it ends (finishStep). `nextArrivalMs` is the workload's
   * next arrival: a batch held back for more requests must have something to wake it.
   */
  startStep(now: number, nextArrivalMs: number): void {
    this.dirty = false;
    const sched = this.sched;
    if (!sched.hasWork()) {
      this.wakeMs = Infinity;
      return;
    }
    const { output: out, summary } = sched.schedule(now);
    if (out.scheduled.length === 0) {
      // Nothing can run yet (a static batch waiting to fill): wake at its deadline or an arrival.
      sched.skipStep(out);
      const deadline = sched.nextWakeMs() ?? Infinity;
      const wake = Math.min(deadline, nextArrivalMs);
      if (!(wake > now && wake < Infinity)) {
        throw new SimulationError(`the scheduler has ${sched.numWaiting} waiting sequences at ${now.toFixed(3)} ms but scheduled nothing and set no wake-up time`);
      }
      this.wakeMs = deadline;
      return;
    }
    this.wakeMs = Infinity;
    const book = this.o.book;
    if (--book.stepsLeft < 0) throw new SimulationError(`simulation exceeded ${book.maxSteps} steps at ${now.toFixed(3)} ms of virtual time`);
    this.numSteps++;
    this.ctx.idleMs = now - this.lastStepEnd;
    const dt = this.o.stepTimeMs(out, this.ctx);
    if (!(Number.isFinite(dt) && dt >= 0)) throw new SimulationError(`step ${out.step}: step time must be a finite number of ms >= 0, got ${dt}`);
    const result = this.o.runner.executeSync(out);
    result.forwardMs = dt;
    this.inFlight = { out, summary, result, startMs: now, dt };
    this.stepEndMs = now + dt;
  }

  /** The step in flight ends now: the scheduler takes its tokens, and the client sees them. */
  finishStep(): void {
    const f = this.inFlight;
    if (!f) throw new SimulationError(`replica ${this.index} has no step in flight to finish`);
    const now = this.stepEndMs;
    this.inFlight = undefined;
    this.stepEndMs = Infinity;
    this.lastStepEnd = now;
    this.busyMs += f.dt;
    this.dirty = true;
    const upd = this.sched.update(f.out, f.result, now);
    for (const u of upd.updates) this.deliver(u, now);
    this.schedulerOutputs?.push(f.out);
    const book = this.o.book;
    if (book.keepSteps || this.o.onStep) {
      // The whole step is "execute" time.
      const rec = stepRecord(f.summary, upd.numFinished, { startMs: f.startMs, scheduleMs: 0, forwardMs: f.dt, sampleMs: 0, executeMs: f.dt, updateMs: 0, totalMs: f.dt });
      if (book.keepSteps) keepStep(book, this, rec);
      this.o.onStep?.(rec, f.out, this.index);
    }
  }

  private deliver(u: SequenceUpdate, now: number): void {
    const rec = this.open.get(u.requestId);
    if (!rec) return;
    if (u.token) {
      rec.chunkMs.push(now);
      rec.outputLen++;
      this.outputTokens++;
    }
    if (u.finishReason !== undefined && !this.sched.getRequest(u.requestId)) {
      rec.endMs = now;
      rec.success = u.finishReason !== 'abort';
      if (!rec.success) rec.error = 'request was aborted';
      this.numPreemptions += u.numPreemptions;
      this.open.delete(u.requestId);
    }
  }
}

/**
 * Keeps a step record, until the whole fleet has kept maxKeptSteps: then every replica's are
 * dropped, since millions of kept records cost more time in garbage collection than the simulation.
 */
function keepStep(book: FleetBook, replica: SimReplica, rec: StepRecord): void {
  if (book.keptSteps < book.maxKeptSteps) {
    replica.steps.push(rec);
    book.keptSteps++;
    return;
  }
  for (const r of book.replicas) r.steps = [];
  book.keepSteps = false;
  book.stepsDropped = true;
}
