// The iteration-level scheduler. Every step it decides which sequences run and how many tokens each
// computes, under the sequence and token budgets and the KV cache's capacity, and hands the decision
// over as a plain SchedulerOutput. After the model runner has run it, update() appends the sampled
// tokens, applies the token-level stops (stop-check.ts) and reports what happened as data; turning
// tokens into text is the output processor's job, afterwards.
//
// It is deliberately synchronous and clock-free (every call takes `now`), so the simulator can drive
// it with a virtual clock and the engine can wrap it in async machinery without either leaking in.
// Who runs is the batching policy's choice (policies/); blocks are the KV cache manager's business.

import { deriveSeed } from './counter-rng.js';
import { KvCacheManager, type BlockCopy } from './kv-cache-manager.js';
import { createPolicy } from './policies/index.js';
import type { BatchPolicy, SchedulerCore } from './policies/policy.js';
import { checkRequest, type AddRequest } from './request-checks.js';
import { InvalidRequestError, QueueFullError } from './request-errors.js';
import { validateSchedulerOptions, type SchedulerOptions } from './scheduler-options.js';
import { RequestState, Sequence } from './sequence.js';
import { SchedulerCounts, schedulerStats, type SchedulerStats } from './scheduler-stats.js';
import { acceptedDrafts, allocateWithLookahead, draftsToVerify, NO_DRAFTS, recordVerification, tokensBySeq } from './speculation.js';
import { insertRanked, removeItem } from './ranked-list.js';
import { StepPlan, type ScheduledStep } from './step-plan.js';
import { checkTokenStop, LENGTH_STOP, type TokenStop } from './stop-check.js';
import type { ModelRunnerOutput, SampledToken, SchedulerOutput, SequenceUpdate } from './types.js';

/** What update() did: per-sequence tokens (and token-level ends) for the output processor, and who finished. */
export interface StepUpdate {
  /** One per sequence that sampled a token, in step order. */
  updates: SequenceUpdate[];
  /** Requests whose every completion has now finished. */
  finishedRequestIds: string[];
  /** Sequences that finished. */
  numFinished: number;
  /** Speculative decoding: proposals accepted in this step. */
  numAcceptedTokens: number;
}

/** Thrown by update() when the runner's output does not match the step (e.g. a missing token). */
export class RunnerOutputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunnerOutputError';
  }
}

export class Scheduler implements SchedulerCore {
  readonly kv: KvCacheManager;
  readonly options: Readonly<SchedulerOptions>;
  private readonly policy: BatchPolicy;

  private readonly requests = new Map<string, RequestState>();
  private readonly seqById = new Map<number, Sequence>();
  private readonly waitingSeqs: Sequence[] = [];
  private runningSeqs: Sequence[] = [];
  /** Seats reserved for completions that will fork from a running parent. */
  private reservedForks = 0;
  /** Requests never admitted yet (what max_queue bounds). */
  private numQueuedRequests = 0;
  /** Sequences the runner must drop at the next step. */
  private pendingFinished: number[] = [];
  private readonly eogSet: ReadonlySet<number>;
  private readonly compare: (a: Sequence, b: Sequence) => number;

  private nextSeqId = 0;
  private nextArrival = 0;
  private stepCount = 0;
  private readonly counts = new SchedulerCounts();

  constructor(options: SchedulerOptions) {
    this.options = validateSchedulerOptions({ ...options });
    this.kv = new KvCacheManager({ numBlocks: options.numBlocks, blockSize: options.blockSize, enablePrefixCaching: options.enablePrefixCaching });
    this.policy = createPolicy(this.options);
    this.eogSet = new Set(options.eogIds);
    const byPriority = options.schedulingPolicy === 'priority';
    // Rank: (priority when that policy is on), then arrival, then completion index.
    this.compare = (a, b) =>
      (byPriority ? a.request.priority - b.request.priority : 0) ||
      a.request.arrivalOrder - b.request.arrivalOrder ||
      a.index - b.index;
  }

  // ---------------------------------------------------------------------------------------------
  // Requests in and out

  /** Queues a request; throws InvalidRequestError, PromptTooLongError or QueueFullError. */
  addRequest(r: AddRequest, now: number): RequestState {
    const o = this.options;
    checkRequest(r, o, (n) => this.kv.blocksNeeded(n));
    let requestId = r.requestId;
    if (requestId !== undefined) {
      if (this.requests.has(requestId)) throw new InvalidRequestError(`requestId '${requestId}' is already in use`);
    } else {
      let k = this.nextArrival;
      do requestId = `req-${k++}`;
      while (this.requests.has(requestId));
    }
    if (o.maxQueue > 0 && this.numQueuedRequests >= o.maxQueue) throw new QueueFullError(o.maxQueue);

    // A request without a seed gets a random one now, so a preempted sequence recomputes the very
    // same tokens (the runner's random stream is keyed by seed and token index).
    const sp = r.sampling;
    const baseSeed = sp.seed ?? deriveSeed(undefined, 0);
    const req = new RequestState(requestId, this.nextArrival++, r.priority ?? 0, [...r.promptTokenIds], sp, baseSeed, now);
    for (let i = 0; i < sp.n; i++) {
      const seq = new Sequence(this.nextSeqId++, req, i, deriveSeed(baseSeed, i), i === 0 ? 'waiting' : 'unforked');
      req.seqs.push(seq);
      this.seqById.set(seq.seqId, seq);
    }
    this.requests.set(requestId, req);
    this.insertSorted(this.waitingSeqs, req.seqs[0]);
    this.numQueuedRequests++;
    this.counts.added++;
    this.counts.promptTokens += req.promptTokenIds.length;
    return req;
  }

  /** Aborts a request at once, freeing its blocks; returns how each unfinished completion ended ([] if unknown). */
  abort(requestId: string, now: number): SequenceUpdate[] {
    const req = this.requests.get(requestId);
    if (!req) return [];
    const ends: SequenceUpdate[] = [];
    for (const seq of req.seqs) if (seq.status !== 'finished') ends.push(seq.toUpdate(undefined, 'abort'));
    this.removeRequest(req, now);
    this.counts.aborted++;
    return ends;
  }

  /**
   * The runner failed this step: drop every request that had a sequence in it (their blocks are
   * freed; their runner state is dropped next step) and return their ids. Other requests go on.
   */
  failStep(out: SchedulerOutput, now: number): string[] {
    const failed: string[] = [];
    const ids = new Set<number>([...out.scheduled.map((s) => s.seqId), ...out.newSequences.map((s) => s.seqId)]);
    for (const id of ids) {
      const req = this.seqById.get(id)?.request;
      if (!req || !this.requests.has(req.requestId) || failed.includes(req.requestId)) continue;
      // Every sequence announced to the runner (this step's new ones too) is queued for dropping.
      this.removeRequest(req, now);
      this.counts.failed++;
      failed.push(req.requestId);
    }
    // The runner may not have dropped these before failing; dropping twice is harmless.
    this.pendingFinished.push(...out.finishedSeqIds);
    return failed;
  }

  /** A step that scheduled nothing is not run: the sequences it told the runner to drop go with the next one. */
  skipStep(out: SchedulerOutput): void {
    if (out.scheduled.length > 0) throw new Error(`step ${out.step} scheduled work; it cannot be skipped`);
    this.pendingFinished.push(...out.finishedSeqIds);
  }

  hasWork(): boolean {
    return this.waitingSeqs.length > 0 || this.runningSeqs.length > 0;
  }

  /** When the static policy is holding back a batch for more arrivals: the time to try again. */
  nextWakeMs(): number | undefined {
    return this.policy.nextWakeMs();
  }

  getRequest(requestId: string): RequestState | undefined {
    return this.requests.get(requestId);
  }

  get waiting(): readonly Sequence[] {
    return this.waitingSeqs;
  }

  get running(): readonly Sequence[] {
    return this.runningSeqs;
  }

  get numWaiting(): number {
    return this.waitingSeqs.length;
  }

  get numRunning(): number {
    return this.runningSeqs.length;
  }

  requestIds(): string[] {
    return [...this.requests.keys()];
  }

  stats(): SchedulerStats {
    return schedulerStats(this.counts, this.kv, this.runningSeqs.length, this.waitingSeqs.length, this.stepCount);
  }

  // ---------------------------------------------------------------------------------------------
  // One step: decide

  schedule(now: number): ScheduledStep {
    const plan = new StepPlan(this.options.maxNumBatchedTokens, this.pendingFinished);
    this.pendingFinished = [];
    this.policy.schedule(this, plan, now);
    const kv = this.kv;
    const step = plan.toStep(this.stepCount, now, {
      policy: this.options.policy,
      kvBlocksUsed: kv.numUsedBlocks,
      kvBlocksTotal: kv.numBlocks,
      numWaiting: this.waitingSeqs.length,
      numRunning: this.runningSeqs.length,
    }, this.options);
    // Step numbers count steps that run; an empty one is skipped and its number reused.
    if (step.output.scheduled.length > 0) this.stepCount++;
    return step;
  }

  seatsNeeded(seq: Sequence): number {
    return 1 + (seq.index === 0 ? seq.request.pendingForks : 0);
  }

  seatsInUse(): number {
    return this.runningSeqs.length + this.policy.held.length + this.reservedForks;
  }

  admit(seq: Sequence, hits: readonly number[], numNew: number, plan: StepPlan): boolean {
    const copies = this.kv.allocateSlots(seq, numNew, 0, hits);
    if (!copies) return false;
    const req = seq.request;
    this.removeFrom(this.waitingSeqs, seq);
    seq.status = 'running';
    seq.prefillDone = false;
    this.insertSorted(this.runningSeqs, seq);
    if (seq.index === 0) this.reservedForks += req.pendingForks;
    if (!req.admitted) {
      req.admitted = true;
      req.numCachedTokens = seq.numComputed;
      this.numQueuedRequests--;
      plan.numJoined++;
    }
    if (numNew > 0) plan.add(seq, numNew, 0, seq.numComputed + numNew === seq.numTokens, copies);
    return true;
  }

  scheduleRunning(seq: Sequence, numNew: number, padRows: number, plan: StepPlan): boolean {
    const drafts = padRows > 0 ? NO_DRAFTS : draftsToVerify(seq, numNew, plan.tokenBudget, this.runningSeqs.length, this.options);
    let copies = padRows > 0 ? null : allocateWithLookahead(this.kv, seq, numNew, drafts.length, this.runningSeqs.length, this.options);
    while (!copies && !(copies = this.kv.allocateSlots(seq, numNew, drafts.length))) {
      // Re-asked after each preemption: the victim may have been the other holder of a shared block.
      const victim = this.runningSeqs[this.runningSeqs.length - 1];
      this.preempt(victim, plan);
      if (victim === seq) return false;
    }
    plan.add(seq, numNew, padRows, seq.numComputed + numNew === seq.numTokens, copies, drafts);
    return true;
  }

  /** Recompute-style preemption: free every block, requeue in rank order (the front, under FCFS). */
  private preempt(seq: Sequence, plan: StepPlan): void {
    plan.withdraw(seq);
    this.removeFrom(this.runningSeqs, seq);
    this.kv.free(seq);
    seq.drafts = NO_DRAFTS;
    seq.prefillDone = false;
    seq.status = 'waiting';
    seq.numPreemptions++;
    this.counts.preemptions++;
    plan.numPreempted++;
    if (seq.index === 0) this.reservedForks -= seq.request.pendingForks;
    if (seq.runnerKnows) {
      plan.finishedSeqIds.push(seq.seqId);
      seq.runnerKnows = false;
    }
    this.insertSorted(this.waitingSeqs, seq);
  }

  // ---------------------------------------------------------------------------------------------
  // One step: take the results

  /** Applies the runner's results for `out`: appends the tokens, caches full blocks, ends sequences a token-level rule stops. */
  update(out: SchedulerOutput, result: ModelRunnerOutput, now: number): StepUpdate {
    const sampled = tokensBySeq(result.sampled);
    // Check before changing anything, so a bad result can fail the step cleanly.
    for (const s of out.scheduled) {
      if (!s.sample) continue;
      const seq = this.seqById.get(s.seqId);
      if (seq && seq.status === 'running' && !sampled.has(s.seqId)) {
        throw new RunnerOutputError(`step ${out.step}: the runner returned no token for sequence ${s.seqId}`);
      }
    }
    const updates: SequenceUpdate[] = [];
    const finishedRequestIds: string[] = [];
    let numFinished = 0;
    let numAccepted = 0;
    for (const s of out.scheduled) {
      const seq = this.seqById.get(s.seqId);
      // Aborted while the step ran, or a static padding row: nothing to apply.
      if (!seq || seq.status !== 'running' || s.tokenIds.length === 0) continue;
      const drafts = s.draftTokenIds ?? NO_DRAFTS;
      const real = s.tokenIds.length - drafts.length;
      if (!s.sample) {
        this.kv.cacheBlocks(seq, s.startPosition + real);
        this.counts.computedTokens += real;
        continue;
      }
      const toks = sampled.get(s.seqId)!;
      const accepted = acceptedDrafts(drafts, toks, (m) => new RunnerOutputError(`step ${out.step}: sequence ${s.seqId} ${m}`));
      let stop: TokenStop | undefined;
      let n = 0;
      for (const tok of toks) {
        stop = this.appendToken(seq, tok, now);
        updates.push(seq.toUpdate(tok, stop?.finishReason, stop?.stopTokenId));
        n++;
        if (stop) break;
      }
      // Keys and values of the accepted proposals are valid; the rejected ones' slots go back.
      this.kv.cacheBlocks(seq, s.startPosition + real + Math.min(accepted, n));
      this.counts.computedTokens += real + Math.min(accepted, n);
      seq.drafts = NO_DRAFTS;
      if (drafts.length > 0) {
        this.kv.rollback(seq, 0, this.options.numLookaheadSlots);
        recordVerification(seq, drafts.length, accepted, this.options, this.counts);
        numAccepted += accepted;
      }
      if (!stop) continue;
      numFinished++;
      if (this.finishSeq(seq, now)) finishedRequestIds.push(seq.request.requestId);
    }
    for (const d of result.drafts ?? []) {
      const seq = this.seqById.get(d.seqId);
      if (seq?.status === 'running') seq.drafts = d.tokenIds;
    }
    if (numFinished > 0) this.runningSeqs = this.runningSeqs.filter((s) => s.status === 'running');
    this.policy.afterUpdate(this);
    return { updates, finishedRequestIds, numFinished, numAcceptedTokens: numAccepted };
  }

  /**
   * Ends sequences that the output processor stopped after update() (a stop string matched) and
   * returns the requests that are now finished.
   */
  finishStopped(stopped: ReadonlyArray<{ requestId: string; index: number }>, now: number): string[] {
    const done: string[] = [];
    if (stopped.length === 0) return done;
    for (const { requestId, index } of stopped) {
      const seq = this.requests.get(requestId)?.seqs[index];
      if (seq?.status === 'running' && this.finishSeq(seq, now)) done.push(requestId);
    }
    this.runningSeqs = this.runningSeqs.filter((s) => s.status === 'running');
    this.policy.afterUpdate(this);
    return done;
  }

  /** Appends one sampled token; returns why the sequence ends there, if it does. */
  private appendToken(seq: Sequence, tok: SampledToken, now: number): TokenStop | undefined {
    const req = seq.request;
    if (seq.index === 0 && req.pendingForks > 0) this.fork(req);
    seq.tokenIds.push(tok.tokenId);
    seq.prefillDone = true;
    this.counts.generatedTokens++;
    req.timing.firstTokenMs ??= now;
    req.timing.tokenTimesMs[seq.index].push(now);
    // Generation is also capped at the model length (addRequest normally rules that out up front).
    return checkTokenStop(req.sampling, this.eogSet, seq.numOutputTokens, tok.tokenId) ?? (seq.numTokens >= this.options.maxModelLen ? LENGTH_STOP : undefined);
  }

  /**
   * Completions 1..n-1 start once completion 0 has the prompt in the cache: they share its blocks and
   * recompute only the last prompt token to get their own first token.
   */
  private fork(req: RequestState): void {
    const parent = req.seqs[0];
    for (let i = 1; i < req.seqs.length; i++) {
      const child = req.seqs[i];
      if (child.status !== 'unforked') continue;
      this.kv.fork(parent, child, req.promptTokenIds.length);
      child.status = 'running';
      child.prefillDone = true;
      this.insertSorted(this.runningSeqs, child);
    }
    this.reservedForks -= req.pendingForks;
    req.pendingForks = 0;
  }

  /** Marks a sequence finished (its blocks freed, or held by the policy); returns whether its request is done. */
  private finishSeq(seq: Sequence, now: number): boolean {
    const req = seq.request;
    seq.status = 'finished';
    req.numFinished++;
    if (!this.policy.retire(seq)) this.kv.free(seq);
    if (seq.runnerKnows) {
      this.pendingFinished.push(seq.seqId);
      seq.runnerKnows = false;
    }
    if (!req.finished) return false;
    req.timing.finishedMs = now;
    this.requests.delete(req.requestId);
    // Held padding rows need no lookups: update() skips rows without tokens.
    for (const s of req.seqs) this.seqById.delete(s.seqId);
    this.counts.finished++;
    return true;
  }

  /** Takes a request out of every queue and frees its blocks at once (abort and failure). */
  private removeRequest(req: RequestState, now: number): void {
    for (const seq of req.seqs) {
      if (seq.status === 'running' || seq.status === 'waiting') {
        if (seq.index === 0 && seq.status === 'running') this.reservedForks -= req.pendingForks;
        this.removeFrom(seq.status === 'running' ? this.runningSeqs : this.waitingSeqs, seq);
      }
      this.policy.forget(seq);
      this.kv.free(seq);
      seq.status = 'finished';
      if (seq.runnerKnows) {
        this.pendingFinished.push(seq.seqId);
        seq.runnerKnows = false;
      }
      this.seqById.delete(seq.seqId);
    }
    req.pendingForks = 0;
    req.numFinished = req.seqs.length;
    req.timing.finishedMs = now;
    if (!req.admitted) this.numQueuedRequests--;
    this.requests.delete(req.requestId);
    this.policy.afterUpdate(this);
  }

  private insertSorted(list: Sequence[], seq: Sequence): void {
    insertRanked(list, seq, this.compare);
  }

  private removeFrom(list: Sequence[], seq: Sequence): void {
    removeItem(list, seq);
  }

  /**
   * Throws unless the books balance: the KV manager's invariants against every sequence holding
   * blocks, the seat count, and every sequence in exactly the list its status says. For tests.
   */
  checkInvariants(): void {
    for (const s of this.runningSeqs) if (s.status !== 'running') throw new Error(`running list holds sequence ${s.seqId} in status ${s.status}`);
    for (const s of this.waitingSeqs) {
      if (s.status !== 'waiting' || s.blockTable.length > 0) throw new Error(`waiting sequence ${s.seqId} is ${s.status} with ${s.blockTable.length} blocks`);
    }
    this.kv.checkInvariants([...this.runningSeqs, ...this.policy.held]);
    let forks = 0;
    for (const s of this.runningSeqs) if (s.index === 0) forks += s.request.pendingForks;
    if (forks !== this.reservedForks) throw new Error(`reserved fork seats ${this.reservedForks} != pending forks of running parents ${forks}`);
    if (this.seatsInUse() > this.options.maxNumSeqs) throw new Error(`${this.seatsInUse()} seats in use exceed max_num_seqs ${this.options.maxNumSeqs}`);
  }
}
