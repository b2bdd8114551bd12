// Structured outputs inside the batched step, as vLLM v1's StructuredOutputManager: grammars are
// compiled once per constraint (grammar-compiler.ts), every constrained sequence has a matcher, and
// each step the engine asks for the token bitmasks of the scheduled rows that sample, which travel
// with the SchedulerOutput to the runner; the runner masks those rows' logits before any sampling
// step (sampling.ts), and the tokens sampled are fed back to the matchers after update().
//
// A sequence that is preempted and recomputed keeps the tokens it generated, so its matcher is
// rebuilt from them when the runner is told about the sequence again (NewSequenceData carries
// them): the grammar state always equals the tokens the sequence holds.

import type { SchedulerOutput } from '../types.js';
import { resolveConstraint, type StructuredOutputsParams } from './constraint.js';
import { GrammarCompilerCache, type GrammarVocab } from './grammar-compiler.js';
import type { GrammarMatcher } from './xgrammar.js';

export class StructuredOutputUnavailableError extends Error {
  constructor() {
    super('structured outputs need a tokenizer: this model has none (it is driven by token ids)');
    this.name = 'StructuredOutputUnavailableError';
  }
}

export class StructuredOutputManager {
  private compilerCache: Promise<GrammarCompilerCache> | undefined;
  private readonly matchers = new Map<number, GrammarMatcher>();
  private readonly compiled = new Set<string>();

  constructor(private readonly vocab: GrammarVocab | null) {}

  private compiler(): Promise<GrammarCompilerCache> {
    if (!this.vocab) return Promise.reject(new StructuredOutputUnavailableError());
    // The vocabulary goes to XGrammar on first use (a few hundred ms for 100k+ tokens), not at load.
    this.compilerCache ??= GrammarCompilerCache.create(this.vocab);
    return this.compilerCache;
  }

  /** Compiles a constraint (once; cached by its text). Throws InvalidParamError for a bad one. */
  async compile(params: StructuredOutputsParams, param?: string): Promise<void> {
    const c = resolveConstraint(params, param);
    await (await this.compiler()).compile(c, param);
    this.compiled.add(c.key);
  }

  /** Whether compile() already succeeded for this constraint. */
  isCompiled(params: StructuredOutputsParams): boolean {
    return this.compiled.has(resolveConstraint(params).key);
  }

  /** Number of sequences with a live matcher. */
  get numSequences(): number {
    return this.matchers.size;
  }

  /**
   * Brings the matchers up to a step: drops those of finished sequences, builds those of sequences
   * announced (or re-announced after preemption), and returns the bitmask of every scheduled row
   * that samples under a constraint, by sequence id.
   */
  async prepareStep(out: SchedulerOutput): Promise<Map<number, Int32Array>> {
    for (const id of out.finishedSeqIds) this.release(id);
    for (const ns of out.newSequences) {
      const params = ns.sampling.structuredOutputs;
      this.release(ns.seqId);
      if (!params) continue;
      const cache = await this.compiler();
      const m = await cache.matcher(await cache.compile(resolveConstraint(params)));
      for (const t of ns.outputTokenIds) m.acceptToken(t);
      this.matchers.set(ns.seqId, m);
    }
    const masks = new Map<number, Int32Array>();
    for (const s of out.scheduled) {
      if (!s.sample) continue;
      const m = this.matchers.get(s.seqId);
      if (!m) continue;
      // A grammar that has ended (its stop token sampled, but ignoreEos or minTokens keep the
      // sequence going) allows only end-of-generation tokens from then on: hidden from the text, so
      // the answer stays what the grammar accepted.
      masks.set(s.seqId, m.isTerminated() ? this.endedMask() : await m.getNextTokenBitmask());
    }
    return masks;
  }

  private ended: Int32Array | undefined;

  private endedMask(): Int32Array {
    if (!this.ended) {
      const v = this.vocab!;
      this.ended = new Int32Array(Math.ceil(v.vocabSize / 32));
      for (const id of v.stopIds) this.ended[id >> 5]! |= 1 << (id & 31);
    }
    return this.ended;
  }

  /**
   * Puts the grammar bitmask on every constrained row that samples in this step (and keeps the
   * matchers in step with the sequences); returns the milliseconds it took (0: nothing constrained).
   */
  async applyToStep(out: SchedulerOutput, clock: () => number): Promise<number> {
    if (this.matchers.size === 0 && !out.newSequences.some((ns) => ns.sampling.structuredOutputs)) return 0;
    const t = clock();
    const masks = await this.prepareStep(out);
    for (const s of out.scheduled) {
      const m = masks.get(s.seqId);
      if (m) s.grammarBitmask = m;
    }
    return clock() - t;
  }

  /** Advances a sequence's matcher by a sampled token (no-op for unconstrained sequences). */
  accept(seqId: number, tokenId: number): void {
    const m = this.matchers.get(seqId);
    // A token the grammar refuses can only be one that ends the sequence anyway (a request's own
    // stop id): the matcher is left as it was.
    if (m && !m.isTerminated()) m.acceptToken(tokenId);
  }

  release(seqId: number): void {
    const m = this.matchers.get(seqId);
    if (!m) return;
    m.dispose();
    this.matchers.delete(seqId);
  }

  async close(): Promise<void> {
    for (const id of [...this.matchers.keys()]) this.release(id);
    if (this.compilerCache) (await this.compilerCache.catch(() => undefined))?.dispose();
  }
}
