// The model runner executes what the scheduler decided: it turns a SchedulerOutput (plain data) into
// one ragged ForwardBatch over the paged KV cache, runs the model, and samples the rows that asked.
// It keeps, per sequence, what sampling needs to see (prompt and output ids, params, seed), so the
// scheduler never handles logits and the model never decides who runs.

import { performance } from 'node:perf_hooks';
import type { ModelRunner, ModelRunnerOutput, SampledToken, SchedulerOutput, ScheduledSequence, SamplingParams } from './types.js';
import type { Kernels, KvStorage } from '../model/kernels/types.js';
import type { LoadedModel } from '../model/loaders/index.js';
import { TransformerModel, type ForwardBatch } from '../model/transformer.js';
import { copyBlock, createKvStorage } from '../model/kv-storage.js';
import { DEFAULT_KV_CACHE_DTYPE, type KvCacheDtype } from '../model/kernels/kv-dtype.js';
import { sampleToken, verifyToken, type SampleResult } from './sampling.js';
import { DEFAULT_NGRAM, proposeNgram } from './spec/ngram-proposer.js';
import { DEFAULT_SPECULATIVE_DISABLE_BATCH_SIZE } from './speculation.js';

/** Thrown when a SchedulerOutput does not fit the runner's state (unknown sequence, short block table...). */
export class RunnerInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunnerInputError';
  }
}

/** What sampling needs for one sequence; outputTokenIds grows by one with every sampled token. */
interface SequenceSamplingState {
  params: SamplingParams;
  seed: number;
  promptTokenIds: number[];
  outputTokenIds: number[];
}

export interface LocalModelRunnerOptions {
  model: Pick<LoadedModel, 'config' | 'weights'>;
  kernels: Kernels;
  numBlocks: number;
  blockSize: number;
  /** KV cache element type (default f16). */
  kvCacheDtype?: KvCacheDtype;
  eogIds: number[];
  /** Speculative decoding: how the runner proposes tokens for the next step (none: no proposals). */
  speculative?: SpeculativeConfig;
}

/** Speculative decoding's proposer (the scheduler decides how many proposals a step verifies). */
export interface SpeculativeConfig {
  method: 'ngram';
  /** Tokens proposed per sequence and step at most. */
  numTokens: number;
  /** Prompt lookup: shortest and longest suffix looked for (default 1 and 4). */
  ngramMin?: number;
  ngramMax?: number;
  /** No proposals while a step samples more sequences than this (the scheduler would not verify them). */
  disableBatchSize?: number;
}

export class LocalModelRunner implements ModelRunner {
  readonly model: TransformerModel;
  readonly kv: KvStorage;
  readonly kernelsName: string;
  private readonly eogIds: ReadonlySet<number>;
  private readonly seqs = new Map<number, SequenceSamplingState>();
  private closed = false;
  /** Logits of the current step, reused from step to step (sampling reads them before the next). */
  private logitsBuf = new Float32Array(0);

  private constructor(
    model: TransformerModel,
    kv: KvStorage,
    eogIds: number[],
    private readonly speculative: SpeculativeConfig | undefined,
  ) {
    this.model = model;
    this.kv = kv;
    this.kernelsName = model.kernels.name;
    this.eogIds = new Set(eogIds);
  }

  static async create(opts: LocalModelRunnerOptions): Promise<LocalModelRunner> {
    const model = new TransformerModel(opts.model.config, opts.model.weights, opts.kernels);
    const kv = createKvStorage(opts.model.config, opts.numBlocks, opts.blockSize, opts.kvCacheDtype ?? DEFAULT_KV_CACHE_DTYPE);
    return new LocalModelRunner(model, kv, opts.eogIds, opts.speculative);
  }

  /** Sequences the runner currently keeps sampling state for (for tests and debugging). */
  get activeSeqIds(): number[] {
    return [...this.seqs.keys()];
  }

  async execute(step: SchedulerOutput): Promise<ModelRunnerOutput> {
    return this.executeSync(step);
  }

  /** The synchronous body of execute(), so a worker thread can run it without extra ticks. */
  executeSync(step: SchedulerOutput): ModelRunnerOutput {
    if (this.closed) throw new RunnerInputError('model runner is closed');
    // Finished sequences go first: their ids may be reused by new ones in the same step.
    for (const id of step.finishedSeqIds) this.seqs.delete(id);
    for (const ns of step.newSequences) {
      this.seqs.set(ns.seqId, {
        params: ns.sampling,
        seed: ns.seed,
        promptTokenIds: [...ns.promptTokenIds],
        outputTokenIds: [...ns.outputTokenIds],
      });
    }
    // Copy-on-write must land before any row of this step writes into the destination block.
    for (const [src, dst] of step.blockCopies) copyBlock(this.kv, src, dst);

    if (step.scheduled.length === 0) return { sampled: [], forwardMs: 0, sampleMs: 0 };
    for (const s of step.scheduled) {
      if (s.sample && !this.seqs.has(s.seqId)) {
        throw new RunnerInputError(`step ${step.step}: sequence ${s.seqId} is scheduled for sampling but was never announced in newSequences`);
      }
    }

    const { batch, sampleSeqIds, sampleCounts } = buildForwardBatch(step.scheduled, this.kv.blockSize);
    let sampled: SampledToken[] = [];
    let forwardMs = 0;
    let sampleMs = 0;
    if (batch.meta.numRows > 0) {
      const t0 = performance.now();
      const need = batch.logitRows.length * this.model.config.vocabSize;
      if (this.logitsBuf.length < need) this.logitsBuf = new Float32Array(Math.max(need, 2 * this.logitsBuf.length));
      const logits = this.model.forward(batch, this.kv, this.logitsBuf);
      const t1 = performance.now();
      sampled = this.sample(logits, sampleSeqIds, sampleCounts, step.scheduled);
      forwardMs = t1 - t0;
      sampleMs = performance.now() - t1;
    }
    const drafts = this.propose(sampled);
    return drafts ? { sampled, forwardMs, sampleMs, drafts } : { sampled, forwardMs, sampleMs };
  }

  /** Proposals for the next step of every sequence that just sampled (speculative decoding). */
  private propose(sampled: readonly SampledToken[]): ModelRunnerOutput['drafts'] {
    const spec = this.speculative;
    if (!spec || sampled.length === 0) return undefined;
    let numSeqs = 0;
    for (let i = 0; i < sampled.length; i++) if (i === 0 || sampled[i].seqId !== sampled[i - 1].seqId) numSeqs++;
    if (numSeqs > (spec.disableBatchSize ?? DEFAULT_SPECULATIVE_DISABLE_BATCH_SIZE)) return undefined;
    const opts = { numTokens: spec.numTokens, min: spec.ngramMin ?? DEFAULT_NGRAM.min, max: spec.ngramMax ?? DEFAULT_NGRAM.max };
    const drafts: NonNullable<ModelRunnerOutput['drafts']> = [];
    let last = -1;
    for (const t of sampled) {
      if (t.seqId === last) continue;
      last = t.seqId;
      const st = this.seqs.get(t.seqId)!;
      // Constrained sequences are not speculated on: their masks would have to follow the proposals.
      if (!st.params.speculative || st.params.structuredOutputs) continue;
      const tokenIds = proposeNgram(st.promptTokenIds, st.outputTokenIds, opts);
      if (tokenIds.length > 0) drafts.push({ seqId: t.seqId, tokenIds });
    }
    return drafts;
  }

  /**
   * Samples every sequence's next token from its logit row; a sequence that verifies proposals has
   * one row per proposal plus one, and its tokens are the proposals accepted in order, then one of
   * its own (the correction of the first rejected proposal, or the token after the last).
   */
  private sample(logits: Float32Array, seqIds: number[], counts: number[], scheduled: readonly ScheduledSequence[]): SampledToken[] {
    const vocab = this.model.config.vocabSize;
    const bySeq = new Map<number, ScheduledSequence>();
    for (const s of scheduled) bySeq.set(s.seqId, s);
    const out: SampledToken[] = [];
    let row = 0;
    for (let i = 0; i < seqIds.length; i++) {
      const seqId = seqIds[i];
      const st = this.seqs.get(seqId)!;
      const s = bySeq.get(seqId)!;
      const drafts = s.draftTokenIds ?? [];
      const ctx = { params: st.params, seed: st.seed, promptTokenIds: st.promptTokenIds, outputTokenIds: st.outputTokenIds, eogIds: this.eogIds, allowedTokens: s.grammarBitmask };
      for (let j = 0; j < counts[i]; j++) {
        const rowLogits = logits.subarray((row + j) * vocab, (row + j + 1) * vocab);
        const r: SampleResult & { accepted?: boolean } = j < drafts.length ? verifyToken(rowLogits, ctx, drafts[j]) : sampleToken(rowLogits, ctx);
        st.outputTokenIds.push(r.tokenId);
        const tok: SampledToken = { seqId, tokenId: r.tokenId };
        if (r.logprob !== undefined) tok.logprob = r.logprob;
        if (r.topLogprobs !== undefined) tok.topLogprobs = r.topLogprobs;
        out.push(tok);
        if (r.accepted === false) break;
      }
      row += counts[i];
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.seqs.clear();
  }
}

/** The grammar bitmasks of the step's constrained rows, by sequence id. */
function grammarBitmasks(scheduled: readonly ScheduledSequence[]): Map<number, Int32Array> {
  const m = new Map<number, Int32Array>();
  for (const s of scheduled) if (s.grammarBitmask) m.set(s.seqId, s.grammarBitmask);
  return m;
}

/**
 * Flattens the scheduled sequences into one ragged batch. Rows are each sequence's tokenIds in
 * order, then its padding rows; row positions count up from startPosition; a row's KV slot comes
 * from its block table. The logit rows are the last real row of each sequence that samples, in
 * scheduled order (sampleSeqIds says whose each is); a sequence verifying k proposals gives its
 * last k + 1 rows (sampleCounts says how many each has). Padding rows of finished sequences add
 * logit rows after those, which nobody samples.
 */
export function buildForwardBatch(scheduled: readonly ScheduledSequence[], blockSize: number): { batch: ForwardBatch; sampleSeqIds: number[]; sampleCounts: number[] } {
  let numRows = 0;
  let maxBlocks = 0;
  for (const s of scheduled) {
    const pad = s.padRows ?? 0;
    if (!Number.isInteger(pad) || pad < 0) throw new RunnerInputError(`sequence ${s.seqId}: padRows ${pad} must be a non-negative integer`);
    if (!Number.isInteger(s.startPosition) || s.startPosition < 0) throw new RunnerInputError(`sequence ${s.seqId}: startPosition ${s.startPosition} must be a non-negative integer`);
    numRows += s.tokenIds.length + pad;
    maxBlocks = Math.max(maxBlocks, s.blockTable.length);
  }
  const tokens = new Int32Array(numRows);
  const positions = new Int32Array(numRows);
  const rowSeq = new Int32Array(numRows);
  const slotMapping = new Int32Array(numRows);
  const stride = Math.max(1, maxBlocks);
  const blockTables = new Int32Array(scheduled.length * stride);
  const logitRows: number[] = [];
  const sampleSeqIds: number[] = [];
  const sampleCounts: number[] = [];
  const discardedLogitRows: number[] = [];

  let r = 0;
  scheduled.forEach((s, i) => {
    const n = s.tokenIds.length;
    // Every position this step touches must have a block: the newest is startPosition + n - 1.
    const lastPos = s.startPosition + n - 1;
    if (lastPos >= s.blockTable.length * blockSize) {
      throw new RunnerInputError(`sequence ${s.seqId}: position ${lastPos} needs block ${Math.floor(lastPos / blockSize)}, its block table has ${s.blockTable.length} blocks`);
    }
    blockTables.set(s.blockTable, i * stride);
    for (let j = 0; j < n; j++, r++) {
      const pos = s.startPosition + j;
      tokens[r] = s.tokenIds[j];
      positions[r] = pos;
      rowSeq[r] = i;
      slotMapping[r] = s.blockTable[Math.floor(pos / blockSize)] * blockSize + (pos % blockSize);
    }
    if (s.sample) {
      if (n === 0) throw new RunnerInputError(`sequence ${s.seqId}: sample is set but no tokens are scheduled`);
      const k = s.draftTokenIds?.length ?? 0;
      if (k >= n) throw new RunnerInputError(`sequence ${s.seqId}: ${k} proposals need more than ${n} scheduled tokens`);
      for (let j = k; j >= 0; j--) logitRows.push(r - 1 - j);
      sampleSeqIds.push(s.seqId);
      sampleCounts.push(k + 1);
    }
    // Padding rows (static batching's wasted work): token 0 at the newest token's position, attending
    // its context, writing nothing. A finished sequence held in the batch has no new token; its
    // newest token is the last one already cached.
    const pad = s.padRows ?? 0;
    const padPos = n > 0 ? lastPos : Math.max(0, s.startPosition - 1);
    if (pad > 0 && padPos >= s.blockTable.length * blockSize) {
      throw new RunnerInputError(`sequence ${s.seqId}: padding at position ${padPos} has no block in its ${s.blockTable.length}-block table`);
    }
    for (let j = 0; j < pad; j++, r++) {
      tokens[r] = 0;
      positions[r] = padPos;
      rowSeq[r] = i;
      slotMapping[r] = -1;
      // A finished sequence's row gets its logits too, thrown away after the others': static
      // batching as implemented (HF generate, FasterTransformer) runs the output head over the
      // whole batch every step, and a row without it would cost 40% less than a live one.
      if (n === 0) discardedLogitRows.push(r);
    }
  });
  for (const row of discardedLogitRows) logitRows.push(row);

  return {
    batch: {
      tokens,
      logitRows: Int32Array.from(logitRows),
      meta: { numRows, positions, rowSeq, blockTables, maxBlocksPerSeq: stride, slotMapping },
    },
    sampleSeqIds,
    sampleCounts,
  };
}
