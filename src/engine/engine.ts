// The engine loop: step() = scheduler.schedule() -> runner.execute() -> scheduler.update(). The
// scheduler's decision crosses to the runner as a plain SchedulerOutput, so the runner can live in a
// worker thread. Around that loop sits the async API: addRequest() returns a stream of outputs,
// abort() ends one at any moment, and a background loop runs steps while there is work and sleeps
// (no busy-wait) when there is none.

import { performance } from 'node:perf_hooks';
import { Scheduler, type SchedulerOptions, type SchedulerStats } from './scheduler.js';
import { EngineClosedError, InvalidRequestError } from './request-errors.js';
import { StepTrace, DEFAULT_TRACE_CAPACITY, type StepListener, type StepRecord } from './step-trace.js';
import type { RequestTiming } from './sequence.js';
import type { ModelRunner, ModelRunnerOutput, RequestOutput, SamplingParams, SchedulerOutput } from './types.js';
import { StructuredOutputManager } from './structured/structured-output-manager.js';
import type { GrammarVocab } from './structured/grammar-compiler.js';
import { resolveConstraint, type StructuredOutputsParams } from './structured/constraint.js';

export { QueueFullError, PromptTooLongError, InvalidRequestError, EngineClosedError } from './request-errors.js';

/** The scheduler's options (documented on SchedulerOptions) plus the engine loop's own. */
export interface EngineOptions extends Omit<SchedulerOptions, 'createOutputState'> {
  /** Step records kept in the trace's ring buffer (default 4096). */
  traceCapacity?: number;
  /** Milliseconds clock (default performance.now). */
  clock?: () => number;
  /** Run steps in the background as soon as there is work (default true). False: call step() yourself. */
  autoRun?: boolean;
  /** The vocabulary structured outputs compile grammars against (none: requests with a constraint are refused). */
  grammarVocab?: GrammarVocab;
}

/** Defaults for everything but numBlocks, maxModelLen, tokenizer and eogIds (which depend on the model). */
export const DEFAULT_ENGINE_OPTIONS = {
  policy: 'continuous',
  schedulingPolicy: 'fcfs',
  maxNumSeqs: 64,
  maxNumBatchedTokens: 2048,
  blockSize: 16,
  enablePrefixCaching: true,
  longPrefillTokenThreshold: 0,
  maxQueue: 0,
  staticBatchSize: 64,
  staticWaitMs: 0,
  staticDropFinished: false,
} as const satisfies Partial<EngineOptions>;

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

/**
 * The outputs of one request, as an async iterable. A request with n > 1 yields the outputs of all
 * its completions, told apart by `index`; the stream ends when every completion has finished. It
 * throws if the step computing the request failed. Leaving a for-await loop early aborts the request.
 */
export class RequestStream implements AsyncIterable<RequestOutput> {
  private readonly queue: RequestOutput[] = [];
  private waiter: { resolve: () => void } | undefined;
  private done = false;
  private error: unknown;
  private iterating = false;

  constructor(
    readonly requestId: string,
    private liveTiming: RequestTiming,
    private readonly onCancel: () => void,
  ) {}

  /** Live per-request timestamps (arrival, first scheduled, first token, every token, finish). */
  get timing(): RequestTiming {
    return this.liveTiming;
  }

  /** @internal The scheduler's timing, once a request held for its grammar has reached the scheduler. */
  bindTiming(t: RequestTiming): void {
    this.liveTiming = t;
  }

  /** Whether the request has ended (finished, aborted or failed). */
  get finished(): boolean {
    return this.done;
  }

  /** @internal */
  push(out: RequestOutput): void {
    if (this.done) return;
    this.queue.push(out);
    this.wake();
  }

  /** @internal */
  end(): void {
    this.done = true;
    this.wake();
  }

  /** @internal */
  fail(err: unknown): void {
    if (this.done) return;
    this.error = err;
    this.done = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.resolve();
  }

  [Symbol.asyncIterator](): AsyncIterator<RequestOutput> {
    if (this.iterating) throw new Error(`request ${this.requestId}: its output stream can be iterated only once`);
    this.iterating = true;
    return {
      next: async (): Promise<IteratorResult<RequestOutput>> => {
        for (;;) {
          if (this.queue.length > 0) return { value: this.queue.shift()!, done: false };
          if (this.done) {
            if (this.error !== undefined) {
              const e = this.error;
              this.error = undefined;
              throw e;
            }
            return { value: undefined, done: true };
          }
          await new Promise<void>((resolve) => (this.waiter = { resolve }));
        }
      },
      return: async (): Promise<IteratorResult<RequestOutput>> => {
        // The consumer stopped listening (e.g. a client disconnected): stop computing for it.
        if (!this.done) this.onCancel();
        this.queue.length = 0;
        return { value: undefined, done: true };
      },
    };
  }
}

export class Engine {
  readonly scheduler: Scheduler;
  readonly trace: StepTrace;
  private readonly runner: ModelRunner;
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
  private readonly heldForGrammar = new Set<string>();
  private numHeldForGrammar = 0;

  constructor(runner: ModelRunner, opts: EngineOptions) {
    const schedOpts: SchedulerOptions = {
      policy: opts.policy,
      schedulingPolicy: opts.schedulingPolicy,
      maxNumSeqs: opts.maxNumSeqs,
      maxNumBatchedTokens: opts.maxNumBatchedTokens,
      numBlocks: opts.numBlocks,
      blockSize: opts.blockSize,
      enablePrefixCaching: opts.enablePrefixCaching,
      longPrefillTokenThreshold: opts.longPrefillTokenThreshold,
      maxQueue: opts.maxQueue,
      staticBatchSize: opts.staticBatchSize,
      staticWaitMs: opts.staticWaitMs,
      staticDropFinished: opts.staticDropFinished,
      maxModelLen: opts.maxModelLen,
      tokenizer: opts.tokenizer,
      eogIds: opts.eogIds,
    };
    this.scheduler = new Scheduler(schedOpts);
    this.runner = runner;
    this.trace = new StepTrace(opts.traceCapacity ?? DEFAULT_TRACE_CAPACITY);
    this.clock = opts.clock ?? (() => performance.now());
    this.autoRun = opts.autoRun ?? true;
    this.structured = new StructuredOutputManager(opts.grammarVocab ?? null);
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
    if (so && !this.structured.isCompiled(so)) return this.addAfterCompile(r, so);
    const req = this.scheduler.addRequest(r, this.clock());
    const stream = new RequestStream(req.requestId, req.timing, () => this.abort(req.requestId));
    this.streams.set(req.requestId, stream);
    this.kick();
    return stream;
  }

  /**
   * Compiles an output constraint so requests using it are scheduled at once (a server does this
   * before answering, so a bad schema is a 400). Throws InvalidParamError naming what is wrong.
   */
  compileStructuredOutputs(params: StructuredOutputsParams, param?: string): Promise<void> {
    return this.structured.compile(params, param);
  }

  private addAfterCompile(r: EngineRequest, so: StructuredOutputsParams): RequestStream {
    resolveConstraint(so); // a malformed constraint is refused now, like any bad parameter
    const requestId = r.requestId ?? `grammar-${++this.numHeldForGrammar}`;
    if (this.streams.has(requestId) || this.scheduler.getRequest(requestId)) throw new InvalidRequestError(`request id '${requestId}' is already in use`);
    const arrivalMs = this.clock();
    const stream = new RequestStream(requestId, { arrivalMs, tokenTimesMs: [] }, () => this.abort(requestId));
    this.streams.set(requestId, stream);
    this.heldForGrammar.add(requestId);
    this.structured.compile(so).then(
      () => {
        if (!this.heldForGrammar.delete(requestId)) return; // aborted meanwhile
        try {
          if (this.closed) throw new EngineClosedError();
          stream.bindTiming(this.scheduler.addRequest({ ...r, requestId }, arrivalMs).timing);
          this.kick();
        } catch (e) {
          this.streams.delete(requestId);
          stream.fail(e);
        }
      },
      (e: unknown) => {
        if (!this.heldForGrammar.delete(requestId)) return;
        this.streams.delete(requestId);
        stream.fail(e);
      },
    );
    return stream;
  }

  /** Ends a request now: its blocks are freed and its stream ends with finishReason 'abort'. Unknown ids are ignored. */
  abort(requestId: string): boolean {
    const stream = this.streams.get(requestId);
    if (this.heldForGrammar.delete(requestId)) {
      this.streams.delete(requestId);
      stream?.end();
      return true;
    }
    const outs = this.scheduler.abort(requestId, this.clock());
    this.kick(); // freed blocks may let a waiting request in
    if (!stream) return false;
    for (const o of outs) stream.push(o);
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
    const out = sched.schedule(t0);
    const t1 = this.clock();
    if (out.scheduled.length === 0) {
      // Nothing to run (idle, or a static batch waiting to fill): no runner call.
      sched.skipStep(out);
      return false;
    }
    let result: ModelRunnerOutput;
    let grammarMs = 0;
    try {
      grammarMs = await this.applyGrammars(out);
      result = await this.runner.execute(out);
    } catch (err) {
      this.failStep(out, err, t0, t1);
      return true;
    }
    const t2 = this.clock();
    let outputs: RequestOutput[];
    try {
      outputs = sched.update(out, result, t2);
    } catch (err) {
      this.failStep(out, err, t0, t1);
      return true;
    }
    for (const tok of result.sampled) this.structured.accept(tok.seqId, tok.tokenId);
    const t3 = this.clock();
    const ended = new Set<string>();
    for (const o of outputs) {
      this.streams.get(o.requestId)?.push(o);
      if (o.finished && !sched.getRequest(o.requestId)) ended.add(o.requestId);
    }
    // Only after every output of the step: several completions of one request can finish together.
    for (const id of ended) {
      this.streams.get(id)?.end();
      this.streams.delete(id);
    }
    const rec = this.record(out, t0, t1, t2, t3, result, sched.lastNumFinished);
    if (grammarMs > 0) rec.grammarMs = grammarMs;
    this.trace.push(rec);
    return true;
  }

  /**
   * Puts the grammar bitmask on every constrained row that samples in this step (and keeps the
   * matchers in step with the sequences); returns the milliseconds it took.
   */
  private async applyGrammars(out: SchedulerOutput): Promise<number> {
    if (this.structured.numSequences === 0 && !out.newSequences.some((ns) => ns.sampling.structuredOutputs)) return 0;
    const t = this.clock();
    const masks = await this.structured.prepareStep(out);
    for (const s of out.scheduled) {
      const m = masks.get(s.seqId);
      if (m) s.grammarBitmask = m;
    }
    return this.clock() - t;
  }

  /** A failed runner call fails only the requests of that step; the engine goes on. */
  private failStep(out: SchedulerOutput, err: unknown, t0: number, t1: number): void {
    this.numFailedSteps++;
    const t = this.clock();
    const failed = this.scheduler.failStep(out, t);
    const error = err instanceof Error ? err : new Error(String(err));
    for (const id of failed) {
      this.streams.get(id)?.fail(error);
      this.streams.delete(id);
    }
    const rec = this.record(out, t0, t1, t, t, { sampled: [], forwardMs: 0, sampleMs: 0 }, 0);
    rec.error = error.message;
    this.trace.push(rec);
  }

  private record(out: SchedulerOutput, t0: number, t1: number, t2: number, t3: number, result: ModelRunnerOutput, numFinished: number): StepRecord {
    const s = this.scheduler.lastSummary!;
    return {
      step: out.step,
      policy: this.scheduler.options.policy,
      startMs: t0,
      seqs: s.seqs,
      numPrefillTokens: s.numPrefillTokens,
      numDecodeTokens: s.numDecodeTokens,
      numPadRows: s.numPadRows,
      numBatchedTokens: out.numBatchedTokens,
      numJoined: s.numJoined,
      numPreempted: s.numPreempted,
      numBlockCopies: out.blockCopies.length,
      numFinished,
      kvBlocksUsed: s.kvBlocksUsed,
      kvBlocksTotal: this.scheduler.kv.numBlocks,
      numWaiting: s.numWaiting,
      numRunning: s.numRunning,
      scheduleMs: t1 - t0,
      forwardMs: result.forwardMs,
      sampleMs: result.sampleMs,
      executeMs: t2 - t1,
      updateMs: t3 - t2,
      totalMs: t3 - t0,
    };
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
    this.kick();
    for (const id of [...this.heldForGrammar]) this.abort(id);
    if (this.inFlight) await this.inFlight.catch(() => undefined);
    await this.structured.close();
    await this.runner.close();
  }
}
