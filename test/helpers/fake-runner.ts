// A fast, deterministic stand-in for the model runner, for tests and the scheduler micro-benchmark.
//
// Its "model": the next token is a hash of the sequence's whole context (prompt + outputs so far)
// and, unless greedy, of (seed, output index). It never looks at seqIds or batch composition, so
// like the real model its outputs are batch-invariant and survive preemption and recompute.
//
// Its "KV cache": every slot holds a hash of the context up to and including that position, written
// through the block table exactly where the real model would write keys and values. Before using a
// sequence's context it checks, slot by slot, that the cache still holds that sequence's prefix, so
// a scheduler bug (a block freed while in use, shared without copy-on-write, copied wrongly, a bad
// block table) makes it throw FakeRunnerError instead of silently producing plausible tokens.

import type { ModelRunner, ModelRunnerOutput, SampledToken, SchedulerOutput, SamplingParams, TokenLogprob } from '../../src/engine/types.js';

export class FakeRunnerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FakeRunnerError';
  }
}

export interface FakeRunnerOptions {
  numBlocks: number;
  blockSize: number;
  /** Tokens are drawn from 0..vocabSize-1 (default 1000). */
  vocabSize?: number;
  /** Token that is drawn with eosProbability (default: none, so sequences run to maxTokens). */
  eosId?: number;
  eosProbability?: number;
  /** Check the KV slots against each sequence's context on every step (default true). */
  verifyKv?: boolean;
  /** Simulated compute time per step: a fixed part plus a part per batched row. */
  costMs?: { perStep?: number; perToken?: number };
  /** Makes execute() throw for the steps it returns true for (to test failure handling). */
  failWhen?: (step: SchedulerOutput) => boolean;
}

interface FakeSeq {
  params: SamplingParams;
  seedLo: number;
  seedHi: number;
  numPrompt: number;
  tokens: number[];
  /** prefixHash[p]: hash of tokens[0..p]. */
  prefixHash: number[];
}

/** 32-bit mixing step (murmur3's finalizer applied to h ^ x). */
export function mix32(h: number, x: number): number {
  h = Math.imul(h ^ x, 0xcc9e2d51);
  h ^= h >>> 15;
  h = Math.imul(h, 0x1b873593);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The fake model's context hashes: prefixHash[p] covers tokens[0..p]. */
export function fakePrefixHashes(tokens: readonly number[]): number[] {
  const out: number[] = [];
  let h = 0x811c9dc5;
  for (const t of tokens) {
    h = mix32(h, t + 1);
    out.push(h);
  }
  return out;
}

export class FakeModelRunner implements ModelRunner {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly vocabSize: number;
  private readonly opts: FakeRunnerOptions;
  /** Context hash per KV slot, 0 when never written. */
  private readonly kv: Uint32Array;
  private readonly seqs = new Map<number, FakeSeq>();
  private closed = false;
  /** Steps executed and rows computed, for tests. */
  numSteps = 0;
  numRows = 0;

  constructor(opts: FakeRunnerOptions) {
    this.opts = opts;
    this.numBlocks = opts.numBlocks;
    this.blockSize = opts.blockSize;
    this.vocabSize = opts.vocabSize ?? 1000;
    this.kv = new Uint32Array(opts.numBlocks * opts.blockSize);
  }

  /** Sequences the runner holds state for. */
  get activeSeqIds(): number[] {
    return [...this.seqs.keys()];
  }

  async execute(step: SchedulerOutput): Promise<ModelRunnerOutput> {
    const out = this.executeSync(step);
    const c = this.opts.costMs;
    if (c) {
      const ms = (c.perStep ?? 0) + (c.perToken ?? 0) * step.numBatchedTokens;
      if (ms > 0) await new Promise((r) => setTimeout(r, ms));
      out.forwardMs = ms;
    }
    return out;
  }

  executeSync(step: SchedulerOutput): ModelRunnerOutput {
    if (this.closed) throw new FakeRunnerError('fake runner is closed');
    if (this.opts.failWhen?.(step)) throw new FakeRunnerError(`injected failure at step ${step.step}`);
    const bs = this.blockSize;
    const verify = this.opts.verifyKv ?? true;
    this.numSteps++;
    for (const id of step.finishedSeqIds) this.seqs.delete(id);
    for (const ns of step.newSequences) {
      const tokens = [...ns.promptTokenIds, ...ns.outputTokenIds];
      this.seqs.set(ns.seqId, {
        params: ns.sampling,
        seedLo: ns.seed >>> 0,
        seedHi: Math.floor(ns.seed / 4294967296) >>> 0,
        numPrompt: ns.promptTokenIds.length,
        tokens,
        prefixHash: fakePrefixHashes(tokens),
      });
    }
    for (const [src, dst] of step.blockCopies) {
      if (src === dst || !this.validBlock(src) || !this.validBlock(dst)) throw new FakeRunnerError(`step ${step.step}: bad block copy ${src} -> ${dst}`);
      this.kv.copyWithin(dst * bs, src * bs, (src + 1) * bs);
    }

    const sampled: SampledToken[] = [];
    let rows = 0;
    const written = new Set<number>();
    for (const s of step.scheduled) {
      const n = s.tokenIds.length;
      rows += n + (s.padRows ?? 0);
      if (n === 0) {
        // Padding only: it must still have a context to attend.
        const padPos = Math.max(0, s.startPosition - 1);
        if ((s.padRows ?? 0) > 0 && padPos >= s.blockTable.length * bs) {
          throw new FakeRunnerError(`step ${step.step}: sequence ${s.seqId} pads at position ${padPos} beyond its ${s.blockTable.length} blocks`);
        }
        if (s.sample) throw new FakeRunnerError(`step ${step.step}: sequence ${s.seqId} samples without tokens`);
        continue;
      }
      const st = this.seqs.get(s.seqId);
      if (!st) throw new FakeRunnerError(`step ${step.step}: sequence ${s.seqId} was never announced`);
      const end = s.startPosition + n;
      if (end > st.tokens.length) throw new FakeRunnerError(`step ${step.step}: sequence ${s.seqId} computes up to position ${end - 1} but has ${st.tokens.length} tokens`);
      if (end > s.blockTable.length * bs) throw new FakeRunnerError(`step ${step.step}: sequence ${s.seqId} needs ${Math.ceil(end / bs)} blocks, table has ${s.blockTable.length}`);
      for (const b of s.blockTable) if (!this.validBlock(b)) throw new FakeRunnerError(`step ${step.step}: sequence ${s.seqId} has block ${b} outside the cache`);
      if (verify) {
        for (let p = 0; p < s.startPosition; p++) {
          const slot = s.blockTable[Math.floor(p / bs)] * bs + (p % bs);
          if (this.kv[slot] !== st.prefixHash[p]) {
            throw new FakeRunnerError(`step ${step.step}: sequence ${s.seqId} position ${p} (block ${s.blockTable[Math.floor(p / bs)]}) holds another context's KV`);
          }
        }
      }
      for (let j = 0; j < n; j++) {
        const p = s.startPosition + j;
        if (s.tokenIds[j] !== st.tokens[p]) throw new FakeRunnerError(`step ${step.step}: sequence ${s.seqId} position ${p} is token ${s.tokenIds[j]}, expected ${st.tokens[p]}`);
        const slot = s.blockTable[Math.floor(p / bs)] * bs + (p % bs);
        // Two sequences writing one slot in one step means a block is shared without copy-on-write.
        if (verify && written.has(slot)) throw new FakeRunnerError(`step ${step.step}: KV slot ${slot} written twice in one step`);
        written.add(slot);
        this.kv[slot] = st.prefixHash[p];
      }
      if (s.sample) {
        if (end !== st.tokens.length) throw new FakeRunnerError(`step ${step.step}: sequence ${s.seqId} samples at position ${end - 1}, its newest token is at ${st.tokens.length - 1}`);
        sampled.push(this.sample(s.seqId, st));
      }
    }
    this.numRows += rows;
    return { sampled, forwardMs: 0, sampleMs: 0 };
  }

  /** The next token of a context: what a deterministic model plus counter-based sampler would give. */
  private sample(seqId: number, st: FakeSeq): SampledToken {
    const p = st.params;
    const numOut = st.tokens.length - st.numPrompt;
    const ctx = st.prefixHash[st.tokens.length - 1];
    const h = p.temperature === 0 ? mix32(ctx, 0x5bd1e995) : mix32(mix32(mix32(ctx, st.seedLo), st.seedHi), numOut + 1);
    const eos = this.opts.eosId;
    let tokenId = h % this.vocabSize;
    const eosAllowed = eos !== undefined && !p.ignoreEos && numOut + 1 >= p.minTokens;
    if (eosAllowed && mix32(h, 0x27d4eb2f) / 4294967296 < (this.opts.eosProbability ?? 0)) tokenId = eos;
    else if (tokenId === eos) tokenId = (tokenId + 1) % this.vocabSize;
    st.tokens.push(tokenId);
    st.prefixHash.push(mix32(ctx, tokenId + 1));
    const tok: SampledToken = { seqId, tokenId };
    if (p.logprobs !== null) {
      tok.logprob = -((h >>> 7) % 1000) / 100 - 0.01;
      const top: TokenLogprob[] = [];
      for (let i = 0; i < p.logprobs; i++) top.push({ tokenId: (tokenId + i) % this.vocabSize, logprob: tok.logprob - i });
      tok.topLogprobs = top;
    }
    return tok;
  }

  private validBlock(b: number): boolean {
    return Number.isInteger(b) && b >= 0 && b < this.numBlocks;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.seqs.clear();
  }
}
