// The iteration-level scheduler. Every step it decides which sequences run and how many tokens each
// computes, under the sequence and token budgets and the KV cache's capacity, and hands the decision
// over as a plain SchedulerOutput. After the model runner has run it, update() appends the sampled
// tokens, decides who finished, and turns it all into per-request outputs.
//
// It is deliberately synchronous and clock-free (every call takes `now`), so the simulator can drive
// it with a virtual clock and the engine can wrap it in async machinery without either leaking in.
//
// Three batching policies share everything but the choice of who runs:
// - continuous: decodes first, then unfinished prefills, then new requests fill the token budget
//   (chunked prefill); a running sequence short of blocks preempts the lowest-ranked one.
// - static: request-level batching. A batch is formed, prefilled with every prompt padded to the
//   longest, and decoded until all of its requests finish; finished rows stay as padding; nobody joins.
// - none: one request at a time (static with a batch of one).

import { blocksFor, KvCacheManager } from './kv-cache.js';
import { SequenceOutputState } from './output-processor.js';
import { deriveSeed } from './sampling.js';
import { InvalidRequestError, PromptTooLongError, QueueFullError } from './request-errors.js';
import { RequestState, Sequence, type OutputStateLike } from './sequence.js';
import type { BatchingPolicy, StepSeqRecord } from './step-trace.js';
import type { Tokenizer } from '../model/tokenizer-types.js';
import type {
  FinishReason,
  ModelRunnerOutput,
  NewSequenceData,
  RequestOutput,
  SampledToken,
  SamplingParams,
  ScheduledSequence,
  SchedulerOutput,
} from './types.js';

export type SchedulingPolicy = 'fcfs' | 'priority';

export interface SchedulerOptions {
  policy: BatchingPolicy;
  schedulingPolicy: SchedulingPolicy;
  /** Sequences running at once (and so scheduled in one step) at most. */
  maxNumSeqs: number;
  /** Rows (tokens, padding included) in one step at most. */
  maxNumBatchedTokens: number;
  numBlocks: number;
  blockSize: number;
  enablePrefixCaching: boolean;
  /** Most prompt tokens one sequence may prefill per step (0: no cap beyond the token budget). */
  longPrefillTokenThreshold: number;
  /** Requests waiting for admission at most; more are rejected with QueueFullError (0: unbounded). */
  maxQueue: number;
  /** Requests per static batch. */
  staticBatchSize: number;
  /** Static policy: how long the oldest waiting request may wait for a batch to fill. */
  staticWaitMs: number;
  /** Static policy: free finished rows at once instead of computing them as padding. */
  staticDropFinished: boolean;
  /** Longest sequence (prompt + generated) a request may reach. */
  maxModelLen: number;
  tokenizer: Tokenizer | null;
  eogIds: number[];
  /** Builds the per-sequence output state (default: SequenceOutputState). */
  createOutputState?: (info: { params: SamplingParams; numPromptTokens: number }) => OutputStateLike;
}

export interface AddRequest {
  requestId?: string;
  promptTokenIds: number[];
  sampling: SamplingParams;
  /** Lower runs first under the priority policy (default 0). */
  priority?: number;
}

/** What schedule() did, besides the SchedulerOutput itself (for the step trace). */
export interface ScheduleSummary {
  step: number;
  seqs: StepSeqRecord[];
  numPrefillTokens: number;
  numDecodeTokens: number;
  numPadRows: number;
  numJoined: number;
  numPreempted: number;
  kvBlocksUsed: number;
  numWaiting: number;
  numRunning: number;
}

export interface SchedulerStats {
  /** Sequences admitted (holding KV blocks), and sequences waiting for (re)admission. */
  running: number;
  waiting: number;
  numBlocks: number;
  blocksUsed: number;
  blocksFree: number;
  /** Blocks holding a cached prefix (in use or evictable). */
  blocksCached: number;
  /** Fraction of KV blocks referenced by sequences (0..1). */
  kvUsage: number;
  /** Preemptions so far (a sequence's blocks freed and the sequence requeued for recompute). */
  preemptions: number;
  /** Tokens looked up in the prefix cache on admission, and those served from it. */
  prefixCacheQueries: number;
  prefixCacheHits: number;
  prefixCacheEvictions: number;
  requestsAdded: number;
  requestsFinished: number;
  requestsAborted: number;
  /** Requests failed because the runner failed a step they were in. */
  requestsFailed: number;
  promptTokens: number;
  generationTokens: number;
  /** Tokens whose KV the runner computed (prefill, recompute and decode; padding excluded). */
  computedTokens: number;
  /** Steps that ran. */
  steps: number;
}

/** Thrown by update() when the runner's output does not match the step (e.g. a missing token). */
export class RunnerOutputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunnerOutputError';
  }
}

interface PlanEntry {
  seq: Sequence;
  numNew: number;
  padRows: number;
  sample: boolean;
  copies: Array<[number, number]>;
}

/** A step being put together; entries can be withdrawn when their sequence is preempted. */
class StepPlan {
  readonly entries = new Map<Sequence, PlanEntry>();
  readonly finishedSeqIds: number[];
  numPreempted = 0;
  numJoined = 0;

  constructor(public tokenBudget: number, finishedSeqIds: number[]) {
    this.finishedSeqIds = finishedSeqIds;
  }

  add(seq: Sequence, numNew: number, padRows: number, sample: boolean, copies: Array<[number, number]>): void {
    this.entries.set(seq, { seq, numNew, padRows, sample, copies });
    this.tokenBudget -= numNew + padRows;
  }

  withdraw(seq: Sequence): void {
    const e = this.entries.get(seq);
    if (!e) return;
    this.tokenBudget += e.numNew + e.padRows;
    this.entries.delete(seq);
  }
}

const POLICIES: readonly BatchingPolicy[] = ['continuous', 'static', 'none'];
const SCHEDULING_POLICIES: readonly SchedulingPolicy[] = ['fcfs', 'priority'];

function checkInt(name: string, v: unknown, min: number): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new RangeError(`scheduler option ${name} must be an integer >= ${min}, got ${String(v)}`);
  }
}

/** Checks the options and returns them (throws RangeError naming the bad option). */
export function validateSchedulerOptions(o: SchedulerOptions): SchedulerOptions {
  if (!POLICIES.includes(o.policy)) throw new RangeError(`scheduler option policy must be one of ${POLICIES.join(', ')}, got ${String(o.policy)}`);
  if (!SCHEDULING_POLICIES.includes(o.schedulingPolicy)) {
    throw new RangeError(`scheduler option schedulingPolicy must be one of ${SCHEDULING_POLICIES.join(', ')}, got ${String(o.schedulingPolicy)}`);
  }
  checkInt('maxNumSeqs', o.maxNumSeqs, 1);
  checkInt('maxNumBatchedTokens', o.maxNumBatchedTokens, 1);
  if (o.maxNumBatchedTokens < o.maxNumSeqs) {
    // Otherwise a full set of decodes could not fit one step.
    throw new RangeError(`scheduler option maxNumBatchedTokens (${o.maxNumBatchedTokens}) must be at least maxNumSeqs (${o.maxNumSeqs})`);
  }
  checkInt('numBlocks', o.numBlocks, 1);
  checkInt('blockSize', o.blockSize, 1);
  checkInt('longPrefillTokenThreshold', o.longPrefillTokenThreshold, 0);
  checkInt('maxQueue', o.maxQueue, 0);
  checkInt('staticBatchSize', o.staticBatchSize, 1);
  if (typeof o.staticWaitMs !== 'number' || !(o.staticWaitMs >= 0) || !Number.isFinite(o.staticWaitMs)) {
    throw new RangeError(`scheduler option staticWaitMs must be a finite number >= 0, got ${String(o.staticWaitMs)}`);
  }
  checkInt('maxModelLen', o.maxModelLen, 1);
  if (typeof o.enablePrefixCaching !== 'boolean') throw new RangeError('scheduler option enablePrefixCaching must be a boolean');
  if (typeof o.staticDropFinished !== 'boolean') throw new RangeError('scheduler option staticDropFinished must be a boolean');
  if (!Array.isArray(o.eogIds)) throw new RangeError('scheduler option eogIds must be an array of token ids');
  return o;
}

export class Scheduler {
  readonly kv: KvCacheManager;
  readonly options: Readonly<SchedulerOptions>;

  private readonly requests = new Map<string, RequestState>();
  private readonly seqById = new Map<number, Sequence>();
  /** Sequences waiting for (re)admission, best first. */
  private readonly waiting: Sequence[] = [];
  /** Admitted sequences holding blocks, best first; the last one is the first preemption victim. */
  private running: Sequence[] = [];
  /** Static batching: finished rows kept (with their blocks) as padding until the batch ends. */
  private held: Sequence[] = [];
  private batchPrefilling = false;
  /** Seats reserved for completions that will fork from a running parent. */
  private reservedForks = 0;
  /** Requests never admitted yet (what max_queue bounds). */
  private numQueuedRequests = 0;
  /** Sequences the runner must drop at the next step. */
  private pendingFinished: number[] = [];
  private wakeAtMs: number | undefined;
  private readonly eogSet: ReadonlySet<number>;
  private readonly compare: (a: Sequence, b: Sequence) => number;

  private nextSeqId = 0;
  private nextArrival = 0;
  private stepCount = 0;
  private numPreemptions = 0;
  private counts = { added: 0, finished: 0, aborted: 0, failed: 0, promptTokens: 0, generatedTokens: 0, computedTokens: 0 };
  lastSummary: ScheduleSummary | undefined;
  /** Sequences that finished in the last update() (for the step trace). */
  lastNumFinished = 0;

  constructor(options: SchedulerOptions) {
    this.options = validateSchedulerOptions({ ...options });
    this.kv = new KvCacheManager({ numBlocks: options.numBlocks, blockSize: options.blockSize, enablePrefixCaching: options.enablePrefixCaching });
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
    const prompt = r.promptTokenIds;
    if (!Array.isArray(prompt) || prompt.length === 0) throw new InvalidRequestError('prompt must contain at least one token id');
    for (let i = 0; i < prompt.length; i++) {
      const id = prompt[i];
      if (!Number.isSafeInteger(id) || id < 0) throw new InvalidRequestError(`prompt token ${i} must be an integer token id >= 0, got ${String(id)}`);
    }
    const priority = r.priority ?? 0;
    if (typeof priority !== 'number' || !Number.isFinite(priority)) throw new InvalidRequestError(`priority must be a finite number, got ${String(priority)}`);
    const sp = r.sampling;
    if (!sp || !Number.isSafeInteger(sp.maxTokens) || sp.maxTokens < 1) throw new InvalidRequestError(`maxTokens must be an integer >= 1, got ${String(sp?.maxTokens)}`);
    if (!Number.isSafeInteger(sp.n) || sp.n < 1) throw new InvalidRequestError(`n must be an integer >= 1, got ${String(sp.n)}`);
    if (sp.n > o.maxNumSeqs) throw new InvalidRequestError(`n (${sp.n}) exceeds max_num_seqs (${o.maxNumSeqs}): the completions of one request must run together`);
    const P = prompt.length;
    const M = sp.maxTokens;
    if (P > o.maxModelLen) {
      throw new PromptTooLongError(`prompt of ${P} tokens exceeds the maximum model length of ${o.maxModelLen} tokens`, P, M, o.maxModelLen);
    }
    if (P === o.maxModelLen) {
      throw new PromptTooLongError(`prompt of ${P} tokens fills the maximum model length of ${o.maxModelLen} tokens, leaving no room for max_tokens ${M}`, P, M, o.maxModelLen);
    }
    if (P + M > o.maxModelLen) {
      throw new PromptTooLongError(
        `prompt of ${P} tokens plus max_tokens ${M} is ${P + M} tokens, more than the maximum model length of ${o.maxModelLen}; ` +
          `lower max_tokens to ${o.maxModelLen - P} or shorten the prompt`,
        P, M, o.maxModelLen,
      );
    }
    // The last generated token is never fed back, so a sequence computes P + M - 1 positions.
    const blocksNeeded = blocksFor(P + M - 1, o.blockSize);
    if (blocksNeeded > o.numBlocks) {
      throw new PromptTooLongError(
        `prompt of ${P} tokens plus max_tokens ${M} needs ${blocksNeeded} KV blocks of ${o.blockSize} tokens, ` +
          `but the KV cache has only ${o.numBlocks} blocks (${o.numBlocks * o.blockSize} tokens)`,
        P, M, o.numBlocks * o.blockSize,
      );
    }
    let requestId = r.requestId;
    if (requestId !== undefined) {
      if (typeof requestId !== 'string' || requestId.length === 0) throw new InvalidRequestError('requestId must be a non-empty string');
      if (this.requests.has(requestId)) throw new InvalidRequestError(`requestId '${requestId}' is already in use`);
    } else {
      let k = this.nextArrival;
      do requestId = `req-${k++}`;
      while (this.requests.has(requestId));
    }
    if (o.maxQueue > 0 && this.numQueuedRequests >= o.maxQueue) throw new QueueFullError(o.maxQueue);

    // A request without a seed gets a random one now, so a preempted sequence recomputes the very
    // same tokens (the runner's random stream is keyed by seed and token index).
    const baseSeed = sp.seed ?? deriveSeed(undefined, 0);
    const req = new RequestState(requestId, this.nextArrival++, priority, [...prompt], sp, baseSeed, now);
    for (let i = 0; i < sp.n; i++) {
      const seq = new Sequence(this.nextSeqId++, req, i, deriveSeed(baseSeed, i), this.makeOutputState(sp, P), i === 0 ? 'waiting' : 'unforked');
      req.seqs.push(seq);
      this.seqById.set(seq.seqId, seq);
    }
    this.requests.set(requestId, req);
    this.insertSorted(this.waiting, req.seqs[0]);
    this.numQueuedRequests++;
    this.counts.added++;
    this.counts.promptTokens += P;
    return req;
  }

  /** Aborts a request at once, freeing its blocks; returns its final 'abort' outputs ([] if unknown). */
  abort(requestId: string, now: number): RequestOutput[] {
    const req = this.requests.get(requestId);
    if (!req) return [];
    const outs: RequestOutput[] = [];
    for (const seq of req.seqs) {
      if (seq.status === 'finished') continue;
      // Text held back (a partial UTF-8 character or stop string) is released rather than lost.
      const text = seq.status === 'unforked' ? '' : (seq.outputState.finish?.('abort').text ?? '');
      outs.push(this.output(seq, [], text, undefined, true, 'abort'));
    }
    this.removeRequest(req, 'abort', now);
    this.counts.aborted++;
    return outs;
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
      this.removeRequest(req, 'abort', now);
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
    return this.waiting.length > 0 || this.running.length > 0;
  }

  /** When the static policy is holding back a batch for more arrivals: the time to try again. */
  nextWakeMs(): number | undefined {
    return this.wakeAtMs;
  }

  getRequest(requestId: string): RequestState | undefined {
    return this.requests.get(requestId);
  }

  get numWaiting(): number {
    return this.waiting.length;
  }

  get numRunning(): number {
    return this.running.length;
  }

  requestIds(): string[] {
    return [...this.requests.keys()];
  }

  stats(): SchedulerStats {
    const kv = this.kv;
    const c = this.counts;
    return {
      running: this.running.length,
      waiting: this.waiting.length,
      numBlocks: kv.numBlocks,
      blocksUsed: kv.numUsedBlocks,
      blocksFree: kv.numFreeBlocks,
      blocksCached: kv.numCachedBlocks,
      kvUsage: kv.usage(),
      preemptions: this.numPreemptions,
      prefixCacheQueries: kv.prefixQueries,
      prefixCacheHits: kv.prefixHits,
      prefixCacheEvictions: kv.evictions,
      requestsAdded: c.added,
      requestsFinished: c.finished,
      requestsAborted: c.aborted,
      requestsFailed: c.failed,
      promptTokens: c.promptTokens,
      generationTokens: c.generatedTokens,
      computedTokens: c.computedTokens,
      steps: this.stepCount,
    };
  }

  // ---------------------------------------------------------------------------------------------
  // One step: decide

  schedule(now: number): SchedulerOutput {
    const step = this.stepCount;
    this.wakeAtMs = undefined;
    const plan = new StepPlan(this.options.maxNumBatchedTokens, this.pendingFinished);
    this.pendingFinished = [];
    if (this.options.policy === 'continuous') this.scheduleContinuous(plan);
    else this.scheduleStatic(plan, now);

    const scheduled: ScheduledSequence[] = [];
    const newSequences: NewSequenceData[] = [];
    const blockCopies: Array<[number, number]> = [];
    const seqs: StepSeqRecord[] = [];
    let numBatchedTokens = 0;
    let numPrefill = 0;
    let numDecode = 0;
    let numPad = 0;
    for (const e of plan.entries.values()) {
      const seq = e.seq;
      const req = seq.request;
      if (e.numNew > 0 && !seq.runnerKnows) {
        newSequences.push({
          seqId: seq.seqId,
          promptTokenIds: [...req.promptTokenIds],
          outputTokenIds: seq.outputTokenIds,
          sampling: req.sampling,
          seed: seq.seed,
        });
        seq.runnerKnows = true;
      }
      if (req.timing.firstScheduledMs === undefined) req.timing.firstScheduledMs = now;
      blockCopies.push(...e.copies);
      const s: ScheduledSequence = {
        seqId: seq.seqId,
        tokenIds: seq.tokenIds.slice(seq.numComputed, seq.numComputed + e.numNew),
        startPosition: seq.numComputed,
        blockTable: seq.blockTable.slice(),
        sample: e.sample,
      };
      if (e.padRows > 0) s.padRows = e.padRows;
      scheduled.push(s);
      numBatchedTokens += e.numNew + e.padRows;
      // A decode feeds back exactly the newest generated token; everything else is prefill work.
      const isDecode = e.numNew === 1 && seq.numComputed === seq.numTokens - 1 && seq.numComputed >= seq.numPromptTokens;
      const rec: StepSeqRecord = {
        requestId: req.requestId,
        seqId: seq.seqId,
        index: seq.index,
        prefillTokens: isDecode ? 0 : e.numNew,
        decodeTokens: isDecode ? 1 : 0,
        padRows: e.padRows,
        sampled: e.sample,
      };
      seqs.push(rec);
      numPrefill += rec.prefillTokens;
      numDecode += rec.decodeTokens;
      numPad += e.padRows;
    }
    this.lastSummary = {
      step,
      seqs,
      numPrefillTokens: numPrefill,
      numDecodeTokens: numDecode,
      numPadRows: numPad,
      numJoined: plan.numJoined,
      numPreempted: plan.numPreempted,
      kvBlocksUsed: this.kv.numUsedBlocks,
      numWaiting: this.waiting.length,
      numRunning: this.running.length,
    };
    // Step numbers count steps that run; an empty one is skipped and its number reused.
    if (scheduled.length > 0) this.stepCount++;
    return { step, scheduled, newSequences, finishedSeqIds: plan.finishedSeqIds, blockCopies, numBatchedTokens };
  }

  /** Continuous batching: decodes, then unfinished prefills, then admissions, in rank order. */
  private scheduleContinuous(plan: StepPlan): void {
    const threshold = this.options.longPrefillTokenThreshold;
    for (const decodePass of [true, false]) {
      // A snapshot, because preemption edits the running list as we go.
      for (const seq of this.running.slice()) {
        if (seq.status !== 'running' || plan.entries.has(seq)) continue;
        const remaining = seq.numUncomputed;
        if ((remaining === 1) !== decodePass) continue;
        if (plan.tokenBudget <= 0) break;
        let numNew = Math.min(remaining, plan.tokenBudget);
        if (threshold > 0) numNew = Math.min(numNew, threshold);
        const copies = this.reserveBlocks(seq, numNew, plan);
        if (!copies) continue; // the sequence itself was preempted
        plan.add(seq, numNew, 0, seq.numComputed + numNew === seq.numTokens, copies);
      }
    }
    // Like vLLM: a step that had to preempt admits nobody, or the victims would bounce straight back.
    if (plan.numPreempted === 0) this.admitWaiting(plan);
  }

  /**
   * Admits waiting sequences in rank order while seats, tokens and blocks allow. Strictly in order:
   * when the best waiting sequence does not fit, nobody behind it jumps ahead (no starvation).
   */
  private admitWaiting(plan: StepPlan): void {
    const o = this.options;
    const bs = o.blockSize;
    while (this.waiting.length > 0 && plan.tokenBudget > 0) {
      const seq = this.waiting[0];
      if (this.seatsInUse() + this.seatsNeeded(seq) > o.maxNumSeqs) break;
      const hits = this.findPrefix(seq);
      const cached = hits.length * bs;
      let numNew = Math.min(seq.numTokens - cached, plan.tokenBudget);
      if (o.longPrefillTokenThreshold > 0) numNew = Math.min(numNew, o.longPrefillTokenThreshold);
      const needed = blocksFor(cached + numNew, bs) - hits.length;
      if (this.kv.numFreeBlocks - this.kv.countEvictable(hits) < needed) break;
      this.waiting.shift();
      this.admit(seq, hits, plan);
      for (let i = 0; i < needed; i++) seq.blockTable.push(this.kv.allocate());
      plan.add(seq, numNew, 0, seq.numComputed + numNew === seq.numTokens, []);
    }
  }

  /** Static batching (and 'none', a batch of one): form a batch when idle, then prefill or decode it. */
  private scheduleStatic(plan: StepPlan, now: number): void {
    if (this.running.length === 0) {
      this.endBatch();
      this.formBatch(plan, now);
      if (this.running.length === 0) return;
    }
    const rows = this.running.length + this.held.length;
    if (this.batchPrefilling && this.running.some((s) => !s.prefillDone)) {
      // Prompts padded to the longest; when they do not fit the token budget together, the padded
      // prompt is computed in column chunks, every row doing the same number of rows per step.
      let longest = 0;
      for (const s of this.running) if (!s.prefillDone) longest = Math.max(longest, s.numUncomputed);
      const width = Math.min(longest, Math.max(1, Math.floor(plan.tokenBudget / rows)));
      for (const seq of this.running.slice()) {
        if (seq.status !== 'running' || plan.entries.has(seq)) continue;
        if (seq.prefillDone) {
          plan.add(seq, 0, width, false, []);
          continue;
        }
        const numNew = Math.min(width, seq.numUncomputed);
        const copies = this.reserveBlocks(seq, numNew, plan);
        if (!copies) continue;
        plan.add(seq, numNew, width - numNew, seq.numComputed + numNew === seq.numTokens, copies);
      }
      for (const seq of this.held) plan.add(seq, 0, width, false, []);
      return;
    }
    this.batchPrefilling = false;
    for (const seq of this.running.slice()) {
      if (seq.status !== 'running' || plan.entries.has(seq)) continue;
      const numNew = Math.min(seq.numUncomputed, plan.tokenBudget);
      if (numNew <= 0) break;
      const copies = this.reserveBlocks(seq, numNew, plan);
      if (!copies) continue;
      plan.add(seq, numNew, 0, seq.numComputed + numNew === seq.numTokens, copies);
    }
    for (const seq of this.held) plan.add(seq, 0, 1, false, []);
  }

  /**
   * Takes up to a batch of waiting requests (policy 'none': one). With staticWaitMs, a batch that is
   * not full waits until its oldest request has waited that long. A batch is limited to the requests
   * whose full length (prompt + max_tokens, every completion) fits the free blocks, so it never has
   * to preempt; the first request is always taken, so an oversized one still runs (alone).
   */
  private formBatch(plan: StepPlan, now: number): void {
    const o = this.options;
    if (this.waiting.length === 0) return;
    const B = o.policy === 'none' ? 1 : o.staticBatchSize;
    if (o.policy === 'static' && o.staticWaitMs > 0 && this.waiting.length < B) {
      let oldest = Infinity;
      for (const s of this.waiting) oldest = Math.min(oldest, s.request.timing.arrivalMs);
      if (now < oldest + o.staticWaitMs) {
        this.wakeAtMs = oldest + o.staticWaitMs;
        return;
      }
    }
    let seats = 0;
    let reserve = 0;
    const taken: Sequence[] = [];
    for (const seq of this.waiting) {
      if (taken.length >= B) break;
      const need = this.seatsNeeded(seq);
      if (seats + need > o.maxNumSeqs) break;
      const sp = seq.request.sampling;
      const finalLen = Math.min(seq.numPromptTokens + sp.maxTokens, o.maxModelLen);
      const blocks = need * blocksFor(finalLen - 1, o.blockSize);
      if (taken.length > 0 && reserve + blocks > this.kv.numFreeBlocks) break;
      taken.push(seq);
      seats += need;
      reserve += blocks;
    }
    for (const seq of taken) {
      this.waiting.splice(this.waiting.indexOf(seq), 1);
      this.admit(seq, this.findPrefix(seq), plan);
    }
    this.batchPrefilling = true;
  }

  /** Ends a static batch: its padding rows give their blocks back. */
  private endBatch(): void {
    for (const seq of this.held) this.freeBlocks(seq);
    this.held = [];
    this.batchPrefilling = false;
  }

  /** Cached full blocks of the sequence's longest cached prefix (never its last token: it needs logits). */
  private findPrefix(seq: Sequence): number[] {
    if (!this.options.enablePrefixCaching) return [];
    const bs = this.options.blockSize;
    const maxBlocks = Math.floor((seq.numTokens - 1) / bs);
    seq.ensureBlockHashes(maxBlocks, bs);
    return this.kv.findCachedPrefix(seq.blockHashes, seq.tokenIds, maxBlocks);
  }

  /** Moves a waiting sequence to running with the cached blocks it hit. */
  private admit(seq: Sequence, hits: number[], plan: StepPlan): void {
    const req = seq.request;
    this.kv.acquire(hits);
    seq.blockTable = hits.slice();
    seq.numComputed = hits.length * this.options.blockSize;
    seq.numRegisteredBlocks = hits.length;
    seq.status = 'running';
    seq.prefillDone = false;
    this.insertSorted(this.running, seq);
    if (seq.index === 0) this.reservedForks += req.pendingForks;
    if (this.options.enablePrefixCaching) {
      this.kv.prefixQueries += seq.numTokens;
      this.kv.prefixHits += seq.numComputed;
    }
    if (!req.admitted) {
      req.admitted = true;
      req.numCachedTokens = seq.numComputed;
      this.numQueuedRequests--;
      plan.numJoined++;
    }
  }

  /**
   * Makes room in the block table for numNew more tokens: new blocks past its end, and a private copy
   * of the block about to be written when that block is shared or cached (copy-on-write). Preempts
   * the lowest-ranked running sequences while blocks are short. Returns the copies to make, or null
   * if `seq` itself had to be preempted.
   */
  private reserveBlocks(seq: Sequence, numNew: number, plan: StepPlan): Array<[number, number]> | null {
    const bs = this.options.blockSize;
    const table = seq.blockTable;
    const first = Math.floor(seq.numComputed / bs);
    const fresh = Math.max(0, blocksFor(seq.numComputed + numNew, bs) - table.length);
    let cow: boolean;
    for (;;) {
      // Re-evaluated after each preemption: the victim may have been the other holder of the block.
      cow = first < table.length && (this.kv.refCount(table[first]) > 1 || this.kv.isCached(table[first]));
      if (this.kv.numFreeBlocks >= fresh + (cow ? 1 : 0)) break;
      const victim = this.running[this.running.length - 1];
      this.preempt(victim, plan);
      if (victim === seq) return null;
    }
    const copies: Array<[number, number]> = [];
    if (cow) {
      const src = table[first];
      const dst = this.kv.allocate();
      copies.push([src, dst]);
      this.kv.release(src);
      table[first] = dst;
    }
    for (let i = 0; i < fresh; i++) table.push(this.kv.allocate());
    return copies;
  }

  /** Recompute-style preemption: free every block, requeue in rank order (the front, under FCFS). */
  private preempt(seq: Sequence, plan: StepPlan): void {
    plan.withdraw(seq);
    this.removeFrom(this.running, seq);
    this.freeBlocks(seq);
    seq.numComputed = 0;
    seq.numRegisteredBlocks = 0;
    seq.prefillDone = false;
    seq.status = 'waiting';
    seq.numPreemptions++;
    this.numPreemptions++;
    plan.numPreempted++;
    if (seq.index === 0) this.reservedForks -= seq.request.pendingForks;
    if (seq.runnerKnows) {
      plan.finishedSeqIds.push(seq.seqId);
      seq.runnerKnows = false;
    }
    this.insertSorted(this.waiting, seq);
  }

  // ---------------------------------------------------------------------------------------------
  // One step: take the results

  /** Applies the runner's results for `out`; returns the outputs to deliver, one per sequence that produced something. */
  update(out: SchedulerOutput, result: ModelRunnerOutput, now: number): RequestOutput[] {
    const sampled = new Map<number, SampledToken>();
    for (const t of result.sampled) sampled.set(t.seqId, t);
    // Check before changing anything, so a bad result can fail the step cleanly.
    for (const s of out.scheduled) {
      if (!s.sample) continue;
      const seq = this.seqById.get(s.seqId);
      if (seq && seq.status === 'running' && !sampled.has(s.seqId)) {
        throw new RunnerOutputError(`step ${out.step}: the runner returned no token for sequence ${s.seqId}`);
      }
    }
    const outputs: RequestOutput[] = [];
    let finished = 0;
    for (const s of out.scheduled) {
      const seq = this.seqById.get(s.seqId);
      // Aborted while the step ran, or a static padding row: nothing to apply.
      if (!seq || seq.status !== 'running' || s.tokenIds.length === 0) continue;
      seq.numComputed = s.startPosition + s.tokenIds.length;
      this.counts.computedTokens += s.tokenIds.length;
      this.registerComputedBlocks(seq);
      if (!s.sample) continue;
      if (this.appendToken(seq, sampled.get(s.seqId)!, now, outputs)) finished++;
    }
    this.lastNumFinished = finished;
    if (finished > 0) this.running = this.running.filter((s) => s.status === 'running');
    if (this.options.policy !== 'continuous') {
      if (this.running.length === 0) this.endBatch();
      else if (this.batchPrefilling && this.running.every((s) => s.prefillDone)) this.batchPrefilling = false;
    }
    return outputs;
  }

  /** Puts full, computed blocks into the prefix cache so later requests can reuse them. */
  private registerComputedBlocks(seq: Sequence): void {
    if (!this.options.enablePrefixCaching) return;
    const bs = this.options.blockSize;
    const full = Math.floor(seq.numComputed / bs);
    if (full <= seq.numRegisteredBlocks) return;
    seq.ensureBlockHashes(full, bs);
    for (let j = seq.numRegisteredBlocks; j < full; j++) this.kv.register(seq.blockTable[j], seq.blockHashes[j], seq.tokenIds, j * bs);
    seq.numRegisteredBlocks = full;
  }

  /** Appends one sampled token; returns whether the sequence finished. */
  private appendToken(seq: Sequence, tok: SampledToken, now: number, outputs: RequestOutput[]): boolean {
    const req = seq.request;
    if (seq.index === 0 && req.pendingForks > 0) this.fork(req);
    seq.tokenIds.push(tok.tokenId);
    seq.prefillDone = true;
    this.counts.generatedTokens++;
    req.timing.firstTokenMs ??= now;
    req.timing.tokenTimesMs[seq.index].push(now);
    const d = seq.outputState.append(tok);
    let finished = d.finished;
    let reason = d.finishReason;
    let text = d.text;
    if (!finished && seq.numTokens >= this.options.maxModelLen) {
      // Generation is capped at the model length (addRequest normally rules this out up front).
      finished = true;
      reason = 'length';
      text += seq.outputState.finish?.('length').text ?? '';
    }
    const lp = tok.logprob === undefined ? undefined : [{ tokenId: tok.tokenId, logprob: tok.logprob, top: tok.topLogprobs ?? [] }];
    outputs.push(this.output(seq, [tok.tokenId], text, lp, finished, finished ? (reason ?? 'stop') : undefined, d.stopReason));
    if (finished) this.finishSeq(seq, reason ?? 'stop', now);
    return finished;
  }

  /**
   * Completions 1..n-1 start once completion 0 has the prompt in the cache: they share its blocks and
   * recompute only the last prompt token (which writes into a private copy of its block) to get
   * their own first token.
   */
  private fork(req: RequestState): void {
    const parent = req.seqs[0];
    const bs = this.options.blockSize;
    const L = req.promptTokenIds.length;
    const nBlocks = blocksFor(L, bs);
    for (let i = 1; i < req.seqs.length; i++) {
      const child = req.seqs[i];
      if (child.status !== 'unforked') continue;
      child.blockTable = parent.blockTable.slice(0, nBlocks);
      for (const b of child.blockTable) this.kv.share(b);
      child.numComputed = L - 1;
      child.blockHashes.push(...parent.blockHashes.slice(0, Math.floor(L / bs)));
      child.numRegisteredBlocks = Math.floor((L - 1) / bs);
      child.status = 'running';
      child.prefillDone = true;
      this.insertSorted(this.running, child);
    }
    this.reservedForks -= req.pendingForks;
    req.pendingForks = 0;
  }

  private finishSeq(seq: Sequence, reason: FinishReason, now: number): void {
    const req = seq.request;
    seq.status = 'finished';
    seq.finishReason = reason;
    req.numFinished++;
    if (this.options.policy !== 'continuous' && !this.options.staticDropFinished) this.held.push(seq);
    else this.freeBlocks(seq);
    if (seq.runnerKnows) {
      this.pendingFinished.push(seq.seqId);
      seq.runnerKnows = false;
    }
    if (req.finished) {
      req.timing.finishedMs = now;
      this.requests.delete(req.requestId);
      // Held padding rows need no lookups: update() skips rows without tokens.
      for (const s of req.seqs) this.seqById.delete(s.seqId);
      this.counts.finished++;
    }
  }

  /** Takes a request out of every queue and frees its blocks at once (abort and failure). */
  private removeRequest(req: RequestState, reason: FinishReason, now: number): void {
    for (const seq of req.seqs) {
      if (seq.status === 'running' || seq.status === 'waiting') {
        if (seq.index === 0 && seq.status === 'running') this.reservedForks -= req.pendingForks;
        this.removeFrom(seq.status === 'running' ? this.running : this.waiting, seq);
      }
      const heldAt = this.held.indexOf(seq);
      if (heldAt >= 0) this.held.splice(heldAt, 1);
      this.freeBlocks(seq);
      if (seq.status !== 'finished') {
        seq.status = 'finished';
        seq.finishReason = reason;
      }
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
    if (this.options.policy !== 'continuous' && this.running.length === 0) this.endBatch();
  }

  private freeBlocks(seq: Sequence): void {
    if (seq.blockTable.length > 0) this.kv.free(seq.blockTable);
    // A new array rather than truncation: a step in flight may still hold the old one.
    seq.blockTable = [];
  }

  private output(
    seq: Sequence,
    newTokenIds: number[],
    text: string,
    logprobs: RequestOutput['logprobs'],
    finished: boolean,
    finishReason?: FinishReason,
    stopReason?: string | number,
  ): RequestOutput {
    const req = seq.request;
    const o: RequestOutput = {
      requestId: req.requestId,
      index: seq.index,
      newTokenIds,
      text,
      finished,
      numPromptTokens: req.promptTokenIds.length,
      numCachedTokens: req.numCachedTokens,
      numOutputTokens: seq.numOutputTokens,
      numPreemptions: seq.numPreemptions,
    };
    if (logprobs) o.logprobs = logprobs;
    if (finishReason !== undefined) o.finishReason = finishReason;
    if (stopReason !== undefined) o.stopReason = stopReason;
    return o;
  }

  // ---------------------------------------------------------------------------------------------
  // Helpers

  private makeOutputState(params: SamplingParams, numPromptTokens: number): OutputStateLike {
    if (this.options.createOutputState) return this.options.createOutputState({ params, numPromptTokens });
    return new SequenceOutputState({ tokenizer: this.options.tokenizer, params, eogIds: this.eogSet, numPromptTokens });
  }

  /** Seats a waiting sequence takes when admitted: itself, plus the completions it will fork. */
  private seatsNeeded(seq: Sequence): number {
    return 1 + (seq.index === 0 ? seq.request.pendingForks : 0);
  }

  private seatsInUse(): number {
    return this.running.length + this.held.length + this.reservedForks;
  }

  private insertSorted(list: Sequence[], seq: Sequence): void {
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.compare(list[mid], seq) <= 0) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, seq);
  }

  private removeFrom(list: Sequence[], seq: Sequence): void {
    const i = list.lastIndexOf(seq);
    if (i >= 0) list.splice(i, 1);
  }

  /**
   * Throws unless the books balance: the KV manager's invariants against every live block table,
   * the seat count, and every sequence in exactly the list its status says. For tests.
   */
  checkInvariants(): void {
    const tables: number[][] = [];
    for (const s of this.running) {
      if (s.status !== 'running') throw new Error(`running list holds sequence ${s.seqId} in status ${s.status}`);
      tables.push(s.blockTable);
      if (s.blockTable.length < blocksFor(s.numComputed, this.options.blockSize)) {
        throw new Error(`sequence ${s.seqId} has ${s.numComputed} computed tokens but only ${s.blockTable.length} blocks`);
      }
    }
    for (const s of this.held) tables.push(s.blockTable);
    for (const s of this.waiting) {
      if (s.status !== 'waiting' || s.blockTable.length > 0) throw new Error(`waiting sequence ${s.seqId} is ${s.status} with ${s.blockTable.length} blocks`);
    }
    this.kv.checkInvariants(tables);
    let forks = 0;
    for (const s of this.running) if (s.index === 0) forks += s.request.pendingForks;
    if (forks !== this.reservedForks) throw new Error(`reserved fork seats ${this.reservedForks} != pending forks of running parents ${forks}`);
    if (this.seatsInUse() > this.options.maxNumSeqs) throw new Error(`${this.seatsInUse()} seats in use exceed max_num_seqs ${this.options.maxNumSeqs}`);
  }
}
