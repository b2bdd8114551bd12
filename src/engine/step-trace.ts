// A record of every engine step: who ran with how much work, how full the KV cache and the queue
// were, and where the time went. It feeds the benchmark's timeline chart, the server's live view and
// the simulator's calibration. A fixed-size ring buffer keeps it cheap enough to leave on.

export type BatchingPolicy = 'continuous' | 'static' | 'none';

/** One sequence's share of a step. */
export interface StepSeqRecord {
  requestId: string;
  seqId: number;
  /** Completion index within its request. */
  index: number;
  /** Tokens computed that were not the single newest generated token (prompt, recompute, fork). */
  prefillTokens: number;
  /** 1 when the sequence decoded its newest generated token, else 0. */
  decodeTokens: number;
  /** Static batching's thrown-away rows. */
  padRows: number;
  /** A next token was sampled for it. */
  sampled: boolean;
}

export interface StepRecord {
  step: number;
  policy: BatchingPolicy;
  /** Clock time (ms) when scheduling of this step began. */
  startMs: number;
  seqs: StepSeqRecord[];
  numPrefillTokens: number;
  numDecodeTokens: number;
  numPadRows: number;
  /** Rows of the forward pass (prefill + decode + padding). */
  numBatchedTokens: number;
  /** Requests scheduled for the first time in this step. */
  numJoined: number;
  /** Sequences preempted (blocks freed, requeued for recompute) while scheduling this step. */
  numPreempted: number;
  numBlockCopies: number;
  /** Sequences that finished (or were dropped) when this step's tokens came back. */
  numFinished: number;
  /** KV blocks referenced during the forward pass, and the total. */
  kvBlocksUsed: number;
  kvBlocksTotal: number;
  /** Waiting sequences and running sequences after scheduling. */
  numWaiting: number;
  numRunning: number;
  /** Time split (ms): scheduling, the runner's forward and sampling, the whole runner call, update. */
  scheduleMs: number;
  forwardMs: number;
  sampleMs: number;
  executeMs: number;
  updateMs: number;
  totalMs: number;
  /** Structured outputs: time spent computing the step's grammar bitmasks (part of executeMs's lead-in, before the runner call). */
  grammarMs?: number;
  /** Speculative decoding: sequences that verified proposals, the proposed tokens (rows among numBatchedTokens), and those accepted. */
  numDrafts?: number;
  numDraftTokens?: number;
  numAcceptedTokens?: number;
  /** Speculative decoding: time the runner spent proposing tokens for the next step (a draft model's passes; part of executeMs). */
  proposeMs?: number;
  /** Set when the runner failed this step (its requests were failed). */
  error?: string;
}

export type StepListener = (record: StepRecord) => void;

/** What schedule() decided, as the step record reports it: everything but who finished and the times. */
export type StepSummary = Omit<StepRecord, 'numFinished' | keyof StepTimes | 'error' | 'grammarMs' | 'numAcceptedTokens' | 'proposeMs'>;

/** Where a step's time went (ms on the engine's clock, or virtual time in the simulator). */
export type StepTimes = Pick<StepRecord, 'startMs' | 'scheduleMs' | 'forwardMs' | 'sampleMs' | 'executeMs' | 'updateMs' | 'totalMs'>;

/** The one place a StepRecord is put together, for the engine and the simulator alike. */
export function stepRecord(s: StepSummary, numFinished: number, t: StepTimes): StepRecord {
  return {
    step: s.step,
    policy: s.policy,
    startMs: t.startMs,
    seqs: s.seqs,
    numPrefillTokens: s.numPrefillTokens,
    numDecodeTokens: s.numDecodeTokens,
    numPadRows: s.numPadRows,
    numBatchedTokens: s.numBatchedTokens,
    numJoined: s.numJoined,
    numPreempted: s.numPreempted,
    numBlockCopies: s.numBlockCopies,
    numFinished,
    kvBlocksUsed: s.kvBlocksUsed,
    kvBlocksTotal: s.kvBlocksTotal,
    numWaiting: s.numWaiting,
    numRunning: s.numRunning,
    scheduleMs: t.scheduleMs,
    forwardMs: t.forwardMs,
    sampleMs: t.sampleMs,
    executeMs: t.executeMs,
    updateMs: t.updateMs,
    totalMs: t.totalMs,
    ...(s.numDrafts ? { numDrafts: s.numDrafts, numDraftTokens: s.numDraftTokens } : {}),
  };
}

export const DEFAULT_TRACE_CAPACITY = 4096;

export class StepTrace {
  readonly capacity: number;
  private readonly buf: (StepRecord | undefined)[];
  private next = 0;
  private count = 0;
  /** Records pushed since creation (including those the ring has overwritten). */
  totalRecorded = 0;
  private readonly listeners = new Set<StepListener>();

  constructor(capacity = DEFAULT_TRACE_CAPACITY) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`trace capacity must be an integer >= 1, got ${capacity}`);
    this.capacity = capacity;
    this.buf = new Array<StepRecord | undefined>(capacity);
  }

  push(record: StepRecord): void {
    this.buf[this.next] = record;
    this.next = (this.next + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
    this.totalRecorded++;
    for (const l of this.listeners) {
      // A faulty listener (a dashboard, a logger) must not take the engine down with it.
      try {
        l(record);
      } catch (e) {
        console.error('step trace listener failed:', e);
      }
    }
  }

  /** Records held, oldest first. */
  records(): StepRecord[] {
    const out: StepRecord[] = [];
    const start = (this.next - this.count + this.capacity) % this.capacity;
    for (let i = 0; i < this.count; i++) out.push(this.buf[(start + i) % this.capacity]!);
    return out;
  }

  /** The newest record. */
  last(): StepRecord | undefined {
    return this.count === 0 ? undefined : this.buf[(this.next - 1 + this.capacity) % this.capacity];
  }

  get size(): number {
    return this.count;
  }

  /** Calls `listener` with every new record; returns a function that unsubscribes it. */
  onStep(listener: StepListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  clear(): void {
    this.buf.fill(undefined);
    this.next = 0;
    this.count = 0;
  }
}
