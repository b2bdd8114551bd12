// The model runner executes what the scheduler decided: it turns a SchedulerOutput (plain data) into
// one ragged ForwardBatch over the paged KV cache, runs the model, and samples the rows that asked.
// It keeps, per sequence, what sampling needs to see (prompt and output ids, params, seed), so the
// scheduler never handles logits and the model never decides who runs. With speculative decoding on,
// it then asks its proposer (prompt lookup, or a draft model) for the tokens the scheduler wants
// proposed, and returns them with the step.

import { performance } from 'node:perf_hooks';
import type { ModelRunner, ModelRunnerOutput, SampledToken, SchedulerOutput, ScheduledSequence, SamplingParams } from './types.js';
import type { Kernels, KvStorage } from '../model/kernels/types.js';
import type { LoadedModel } from '../model/loaders/index.js';
import { TransformerModel } from '../model/transformer.js';
import { copyBlock, createKvStorage } from '../model/kv-storage.js';
import { DEFAULT_KV_CACHE_DTYPE, type KvCacheDtype } from '../model/kernels/kv-dtype.js';
import { buildForwardBatch, RunnerInputError } from './forward-batch.js';
import { sampleToken, verifyToken, type SampleResult } from './sampling.js';
import { createProposer } from './spec/create-proposer.js';
import type { Proposer, ProposalRequest } from './spec/proposer.js';
import type { SpeculativeConfig } from './spec/speculative-config.js';

export { buildForwardBatch, RunnerInputError } from './forward-batch.js';
export type { SpeculativeConfig } from './spec/speculative-config.js';

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
    private readonly proposer: Proposer | undefined,
  ) {
    this.model = model;
    this.kv = kv;
    this.kernelsName = model.kernels.name;
    this.eogIds = new Set(eogIds);
  }

  static async create(opts: LocalModelRunnerOptions): Promise<LocalModelRunner> {
    const model = new TransformerModel(opts.model.config, opts.model.weights, opts.kernels);
    const kvCacheDtype = opts.kvCacheDtype ?? DEFAULT_KV_CACHE_DTYPE;
    const kv = createKvStorage(opts.model.config, opts.numBlocks, opts.blockSize, kvCacheDtype);
    const proposer = opts.speculative
      ? await createProposer(opts.speculative, { target: opts.model, kernels: opts.kernels, numBlocks: opts.numBlocks, blockSize: opts.blockSize, kvCacheDtype })
      : undefined;
    return new LocalModelRunner(model, kv, opts.eogIds, proposer);
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
    for (const id of step.finishedSeqIds) {
      this.seqs.delete(id);
      this.proposer?.drop(id);
    }
    for (const ns of step.newSequences) {
      this.proposer?.drop(ns.seqId);
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
    if (!this.proposer) return { sampled, forwardMs, sampleMs };
    const requests = this.proposalRequests(sampled, step.scheduled);
    if (requests.length === 0) return { sampled, forwardMs, sampleMs, drafts: [] };
    const t2 = performance.now();
    const drafts = this.proposer.propose(requests);
    return { sampled, forwardMs, sampleMs, drafts, proposeMs: performance.now() - t2 };
  }

  /**
   * What to propose for the next step: the sequences the scheduler asked proposals for (proposeTokens), as
   * many as it will verify: after a rejection in this step, one past the accepted run (the adaptive
   * rule of recordVerification), else what it asked.
   */
  private proposalRequests(sampled: readonly SampledToken[], scheduled: readonly ScheduledSequence[]): ProposalRequest[] {
    const got = new Map<number, number>();
    for (const t of sampled) got.set(t.seqId, (got.get(t.seqId) ?? 0) + 1);
    const requests: ProposalRequest[] = [];
    for (const s of scheduled) {
      const n = got.get(s.seqId);
      if (!s.proposeTokens || n === undefined) continue;
      const verified = s.draftTokenIds?.length ?? 0;
      const accepted = n - 1;
      const numTokens = verified > 0 && accepted < verified ? Math.min(s.proposeTokens, accepted + 1) : s.proposeTokens;
      const st = this.seqs.get(s.seqId)!;
      requests.push({ seqId: s.seqId, promptTokenIds: st.promptTokenIds, outputTokenIds: st.outputTokenIds, blockTable: s.blockTable, numTokens });
    }
    return requests;
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
