// The engine loop: step() = scheduler.schedule() -> runner.execute() -> scheduler.update() -> output
// processing. The scheduler's decision crosses to the runner as a plain SchedulerOutput, so the
// runner can live in a worker thread; what update() did comes back as plain data too, for the output
// processor and the step trace. Around that loop sits the async API: addRequest() returns a stream of
// outputs, abort() ends one at any moment, and a background loop runs steps while there is work and
// sleeps (no busy-wait) when there is none.

import { performance } from 'node:perf_hooks';
import type { Tokenizer } from '../model/tokenizer-types.js';
import { OutputProcessor } from './output-processor.js';
import { EngineClosedError } from './request-errors.js';
import { RequestStream } from './request-stream.js';
import { Scheduler } from './scheduler.js';
import type { SchedulerOptions } from './scheduler-options.js';
import type { SchedulerStats } from './scheduler-stats.js';
import { StepTrace, DEFAULT_TRACE_CAPACITY, stepRecord, type StepListener, type StepSummary } from './step-trace.js';
import type { ModelRunner, ModelRunnerOutput, RequestOutput, SamplingParams, SchedulerOutput } from './types.js';
import type { StructuredOutputsParams } from './structured/constraint.js';
import { GrammarWait } from './structured/grammar-wait.js';
import type { GrammarVocab } from './structured/grammar-compiler.js';
import { StructuredOutputManager } from './structured/structured-output-manager.js';

export { QueueFullError, PromptTooLongError, InvalidRequestError, EngineClosedError } from './request-errors.js';
export { DEFAULT_ENGINE_OPTIONS } from './engine-options.js';
export { RequestStream } from './request-stream.js';

/** The scheduler's options (documented on SchedulerOptions) plus the engine loop's own. */
export interface EngineOptions extends SchedulerOptions {
  /** Detokenizes outputs and matches stop strings (null: token ids only, no text). */
  tokenizer: Tokenizer | null;
  /** Step records kept in the trace's ring buffer (default 4096). */
  traceCapacity?: number;
  /** Milliseconds clock (default performance.now). */
  clock?: () => number;
  /** Run steps in the background as soon as there is work (default true). False: call step() yourself. */
  autoRun?: boolean;
  /** The vocabulary structured outputs compile grammars against (none: requests with a constraint are refused). */
  grammarVocab?: GrammarVocab;
}

export interface EngineRequest {
  requestId?: string;
  promptTokenIds: number[];
  sampling: SamplingParams;
  /** Lower runs first under the priority policy (default 0). */
  priority?: number;
}

export interface EngineStats extends SchedulerStats {
  /** Steps whose runner call failed. */
  failedSteps: number;
}

export class Engine {
  readonly scheduler: Scheduler;
  readonly trace: StepTrace;
  private readonly runner: ModelRunner;
  private readonly outputs: OutputProcessor;
  private readonly clock: () => number;
  private readonly autoRun: boolean;
  private readonly streams = new Map<string, RequestStream>();
  private loopRunning = false;
  private sleeper: { resolve: () => void; timer?: NodeJS.Timeout } | undefined;
  /** The step in progress (steps never overlap). */
  private inFlight: Promise<boolean> | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private numFailedSteps = 0;
  /** Structured outputs: grammars, and the matchers of constrained sequences. */
  private readonly structured: StructuredOutputManager;
  /** Requests waiting for their grammar to compile before they reach the scheduler. */
  private readonly grammarWait: GrammarWait<EngineRequest>;

  constructor(runner: ModelRunner, opts: EngineOptions) {
    const { tokenizer, traceCapacity, clock, autoRun, grammarVocab, ...schedOpts } = opts;
    this.scheduler = new Scheduler(schedOpts);
    this.outputs = new OutputProcessor(tokenizer);
    this.runner = runner;
    this.trace = new StepTrace(traceCapacity ?? DEFAULT_TRACE_CAPACITY);
    this.clock = clock ?? (() => performance.now());
    this.autoRun = autoRun ?? true;
    this.structured = new StructuredOutputManager(grammarVocab ?? null);
    this.grammarWait = new GrammarWait<EngineRequest>({
      inUse: (id) => this.streams.has(id) || this.scheduler.getRequest(id) !== undefined,
      compile: (so) => this.structured.compile(so),
      admit: (req, arrivalMs) => {
        if (this.closed) throw new EngineClosedError();
        const timing = this.admit(req, arrivalMs).timing;
        this.kick();
        return timing;
      },
      forget: (id) => this.streams.delete(id),
      abort: (id) => this.abort(id),
    });
  }

  /**
   * Queues a request and returns its output stream. Throws QueueFullError, PromptTooLongError,
   * InvalidRequestError, InvalidParamError. A request whose output constraint is not compiled yet
   * (see compileStructuredOutputs) waits for its grammar before it reaches the scheduler; errors
   * found then (a grammar that does not compile, a full queue) end its stream instead.
   */
  addRequest(r: EngineRequest): RequestStream {
    if (this.closed) throw new EngineClosedError();
    const so = r.sampling.structuredOutputs;
    if (so && !this.structured.isCompiled(so)) {
      const stream = this.grammarWait.hold(r, so, this.clock());
      this.streams.set(stream.requestId, stream);
      return stream;
    }
    const req = this.admit(r, this.clock());
    const stream = new RequestStream(req.requestId, req.timing, () => this.abort(req.requestId));
    this.streams.set(req.requestId, stream);
    this.kick();
    return stream;
  }

  private admit(r: EngineRequest, arrivalMs: number) {
    const req = this.scheduler.addRequest(r, arrivalMs);
    this.outputs.addRequest(req.requestId, req.sampling, req.promptTokenIds.length);
    return req;
  }

  /**
   * Compiles an output constraint so requests using it are scheduled at once (a server does this
   * before answering, so a bad schema is a 400). Throws InvalidParamError naming what is wrong.
   */
  compileStructuredOutputs(params: StructuredOutputsParams, param?: string): Promise<void> {
    return this.structured.compile(params, param);
  }

  /** Ends a request now: its blocks are freed and its stream ends with finishReason 'abort'. Unknown ids are ignored. */
  abort(requestId: string): boolean {
    const stream = this.streams.get(requestId);
    if (this.grammarWait.release(requestId)) {
      this.streams.delete(requestId);
      stream?.end();
      return true;
    }
    const { outputs } = this.outputs.process(this.scheduler.abort(requestId, this.clock()));
    this.kick(); // freed blocks may let a waiting request in
    if (!stream) return false;
    for (const o of outputs) stream.push(o);
    stream.end();
    this.streams.delete(requestId);
    return true;
  }

  /** Calls `listener` with every step's record; returns an unsubscribe function. */
  onStep(listener: StepListener): () => void {
    return this.trace.onStep(listener);
  }

  hasWork(): boolean {
    return this.scheduler.hasWork();
  }

  stats(): EngineStats {
    return { ...this.scheduler.stats(), failedSteps: this.numFailedSteps };
  }

  /**
   * Runs one step (waiting for a step already in progress first). Returns whether any sequence ran.
   * The background loop calls this; with autoRun false, tests and tools call it themselves.
   */
  async step(): Promise<boolean> {
    while (this.inFlight) await this.inFlight.catch(() => undefined);
    const p = this.runStep();
    this.inFlight = p;
    try {
      return await p;
    } finally {
      this.inFlight = undefined;
    }
  }

  private async runStep(): Promise<boolean> {
    const sched = this.scheduler;
    const t0 = this.clock();
    const { output: out, summary } = sched.schedule(t0);
    const t1 = this.clock();
    if (out.scheduled.length === 0) {
      // Nothing to run (idle, or a static batch waiting to fill): no runner call.
      sched.skipStep(out);
      return false;
    }
    let result: ModelRunnerOutput;
    let grammarMs = 0;
    try {
      grammarMs = await this.structured.applyToStep(out, this.clock);
      result = await this.runner.execute(out);
    } catch (err) {
      this.failStep(out, summary, err, t0, t1);
      return true;
    }
    const t2 = this.clock();
    let step: ReturnType<Engine['applyResult']>;
    try {
      step = this.applyResult(out, result, t2);
    } catch (err) {
      this.failStep(out, summary, err, t0, t1);
      return true;
    }
    const t3 = this.clock();
    for (const tok of result.sampled) this.structured.accept(tok.seqId, tok.tokenId);
    const ended = new Set<string>();
    for (const o of step.outputs) {
      this.streams.get(o.requestId)?.push(o);
      if (o.finished && step.done.has(o.requestId)) ended.add(o.requestId);
    }
    // Only after every output of the step: several completions of one request can finish together.
    for (const id of ended) {
      this.streams.get(id)?.end();
      this.streams.delete(id);
    }
    const times = { startMs: t0, scheduleMs: t1 - t0, forwardMs: result.forwardMs, sampleMs: result.sampleMs, executeMs: t2 - t1, updateMs: t3 - t2, totalMs: t3 - t0 };
    const rec = stepRecord(summary, step.numFinished, times);
    if (grammarMs > 0) rec.grammarMs = grammarMs;
    if (rec.numDraftTokens) rec.numAcceptedTokens = step.numAccepted;
    if (result.proposeMs !== undefined) rec.proposeMs = result.proposeMs;
    this.trace.push(rec);
    return true;
  }

  /** update(), then output processing; a sequence a stop string ends is finished in the scheduler right after. */
  private applyResult(out: SchedulerOutput, result: ModelRunnerOutput, now: number): { outputs: RequestOutput[]; done: Set<string>; numFinished: number; numAccepted: number } {
    const upd = this.scheduler.update(out, result, now);
    const { outputs, stopped } = this.outputs.process(upd.updates);
    const done = new Set([...upd.finishedRequestIds, ...this.scheduler.finishStopped(stopped, now)]);
    return { outputs, done, numFinished: upd.numFinished + stopped.length, numAccepted: upd.numAcceptedTokens };
  }

  /** A failed runner call fails only the requests of that step; the engine goes on. */
  private failStep(out: SchedulerOutput, summary: StepSummary, err: unknown, t0: number, t1: number): void {
    this.numFailedSteps++;
    const t = this.clock();
    const failed = this.scheduler.failStep(out, t);
    const error = err instanceof Error ? err : new Error(String(err));
    for (const id of failed) {
      this.outputs.drop(id);
      this.streams.get(id)?.fail(error);
      this.streams.delete(id);
    }
    const rec = stepRecord(summary, 0, { startMs: t0, scheduleMs: t1 - t0, forwardMs: 0, sampleMs: 0, executeMs: t - t1, updateMs: 0, totalMs: t - t0 });
    rec.error = error.message;
    this.trace.push(rec);
  }

  /** Starts the background loop, or wakes it if it is sleeping. */
  private kick(): void {
    if (this.sleeper) {
      const s = this.sleeper;
      this.sleeper = undefined;
      if (s.timer) clearTimeout(s.timer);
      s.resolve();
    }
    if (!this.autoRun || this.loopRunning || this.closed) return;
    this.loopRunning = true;
    // Started from a microtask, so requests added in the same tick (LLM.generate adds a whole
    // batch in a loop) are all waiting when the first step is scheduled.
    queueMicrotask(() => void this.loop());
  }

  private async loop(): Promise<void> {
    try {
      while (!this.closed && this.scheduler.hasWork()) {
        let ran: boolean;
        try {
          ran = await this.step();
        } catch (err) {
          // A bug in the scheduler itself: fail everyone rather than spin or hang.
          this.failAll(err);
          break;
        }
        if (ran) {
          // Let request handlers, aborts and stream consumers in between steps.
          await new Promise<void>((r) => setImmediate(r));
          continue;
        }
        // Nothing could run: sleep until a request arrives or a static batch's wait runs out.
        const wake = this.scheduler.nextWakeMs();
        await new Promise<void>((resolve) => {
          const s: { resolve: () => void; timer?: NodeJS.Timeout } = { resolve };
          if (wake !== undefined) s.timer = setTimeout(() => { if (this.sleeper === s) this.sleeper = undefined; resolve(); }, Math.max(0, wake - this.clock()));
          this.sleeper = s;
        });
      }
    } finally {
      this.loopRunning = false;
    }
    // Work may have arrived between the last check and clearing the flag.
    if (!this.closed && this.scheduler.hasWork() && !this.sleeper) this.kick();
  }

  private failAll(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    for (const id of this.scheduler.requestIds()) {
      this.scheduler.abort(id, this.clock());
      this.outputs.drop(id);
      this.streams.get(id)?.fail(error);
      this.streams.delete(id);
    }
  }

  /** Aborts every request, waits for the step in progress, and closes the runner. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.closed = true;
    for (const id of this.scheduler.requestIds()) this.abort(id);
    for (const id of this.grammarWait.ids()) this.abort(id);
    this.kick();
    if (this.inFlight) await this.inFlight.catch(() => undefined);
    await this.structured.close();
    await this.runner.close();
  }
}
