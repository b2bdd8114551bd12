// Speculative decoding: the prompt-lookup proposer, the exactness of verification (greedy: the same
// tokens; sampled: the target distribution, checked by chi-square over many seeds), and the engine end
// to end — prompt lookup on stories260K, a draft model on tiny random models — greedy outputs
// bit-identical with and without speculation under batching, n > 1, prefix caching, chunked prefill
// and preemption, rejected slots given back, sampled outputs reproducible per seed, speculation
// paused for big batches and after low acceptance, a draft with another vocabulary refused.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeModel, modelSpec, PRESETS } from '../../src/model/make-model.js';
import { syntheticVocab } from '../../src/model/synthetic-vocab.js';
import { writeGgufFile } from '../../src/model/loaders/gguf-writer.js';
import { DraftModelError } from '../../src/engine/spec/draft-vocabulary.js';
import { proposeNgram } from '../../src/engine/spec/ngram-proposer.js';
import { samplingDistribution, sampleToken, verifyToken, type SamplingContext } from '../../src/engine/sampling.js';
import { resolveSamplingParams } from '../../src/engine/sampling-params.js';
import { LLM, type GenerateParams, type LoadOptions } from '../../src/llm.js';
import { sharedModelFile, STORIES260K } from '../helpers/models.js';
import type { StepRecord } from '../../src/engine/step-trace.js';
import { liveStep } from '../../src/server/routes/live-view.js';

describe('prompt-lookup proposals', () => {
  const opts = { numTokens: 3, min: 1, max: 3 };
  it('propose what followed the most recent earlier occurrence of the longest suffix', () => {
    assert.deepEqual(proposeNgram([1, 2, 3, 4], [5, 9, 2, 3], opts), [4, 5, 9]);
    // The 3-gram [7, 2, 3] occurred; it wins over the 2-gram's more recent occurrence.
    assert.deepEqual(proposeNgram([7, 2, 3, 8, 8, 2, 3, 6, 6, 7, 2, 3], [], opts), [8, 8, 2]);
    assert.deepEqual(proposeNgram([1], [2, 3], opts), []);
    assert.deepEqual(proposeNgram([5], [], opts), []);
  });
  it('in a loop, take the occurrence that leaves a full proposal', () => {
    assert.deepEqual(proposeNgram([4, 4], [4, 4, 4, 4], opts), [4, 4, 4]);
  });
});

describe('verification of a proposal', () => {
  const logits = Float32Array.from([2.0, 1.5, 0.3, -0.5, 1.0, 0.0]);
  const ctx = (seed: number, sampling: Parameters<typeof resolveSamplingParams>[0]): SamplingContext => ({
    params: resolveSamplingParams(sampling),
    seed,
    promptTokenIds: [1],
    outputTokenIds: [3, 3],
    eogIds: new Set(),
  });

  it('greedy: accepts exactly the argmax, and gives the argmax either way', () => {
    for (const d of [0, 1, 5]) {
      const r = verifyToken(logits, ctx(1, { temperature: 0 }), d);
      assert.equal(r.tokenId, sampleToken(logits, ctx(1, { temperature: 0 })).tokenId);
      assert.equal(r.accepted, d === 0);
    }
  });

  it('sampled: the token follows the target distribution exactly (chi-square over 6,000 seeds), reproducibly', () => {
    const settings = [{ temperature: 1 }, { temperature: 0.7, topK: 4 }, { temperature: 1.3, topP: 0.8, minP: 0.05 }];
    for (const sampling of settings) {
      const want = samplingDistribution(logits, ctx(0, sampling));
      for (const draft of [0, 2, 5]) {
        const counts = new Map<number, number>();
        const N = 6000;
        let accepted = 0;
        for (let seed = 0; seed < N; seed++) {
          const r = verifyToken(logits, ctx(seed, sampling), draft);
          counts.set(r.tokenId, (counts.get(r.tokenId) ?? 0) + 1);
          if (r.accepted) accepted++;
          if (seed < 20) assert.deepEqual(verifyToken(logits, ctx(seed, sampling), draft), r, 'the same seed gives the same result');
        }
        let chi2 = 0;
        for (const { tokenId, prob } of want) chi2 += ((counts.get(tokenId) ?? 0) - N * prob) ** 2 / (N * prob);
        for (const id of counts.keys()) assert.ok(want.some((w) => w.tokenId === id), `token ${id} is outside the distribution`);
        // df <= 5; the 0.1% critical value is 20.5.
        assert.ok(chi2 < 20.5, `${JSON.stringify(sampling)} draft ${draft}: chi2 ${chi2.toFixed(1)}`);
        const pd = want.find((w) => w.tokenId === draft)?.prob ?? 0;
        assert.ok(Math.abs(accepted / N - pd) < 0.03, `accepted ${accepted / N} vs p(draft) ${pd}`);
      }
    }
  });
});

/**
 * Generates `prompts` on a fresh in-process engine (8 sequences, 4-token blocks unless `load` says
 * otherwise), with the step trace; every block, look-ahead blocks included, must be given back.
 */
async function generateTraced(path: string, prompts: number[][], load: LoadOptions, params: GenerateParams) {
  const llm = await LLM.load(path, { inProcess: true, threads: 1, maxNumSeqs: 8, blockSize: 4, ...load });
  const steps: StepRecord[] = [];
  const off = llm.engine.onStep((r) => steps.push(r));
  try {
    const results = await llm.generate(prompts, params);
    const stats = llm.engine.stats();
    assert.equal(stats.blocksUsed, 0, 'every block is given back');
    return { tokens: results.map((r) => r.completions.map((c) => c.tokenIds)), steps, stats };
  } finally {
    off();
    await llm.close();
  }
}
type Traced = Awaited<ReturnType<typeof generateTraced>>;

const file = sharedModelFile(STORIES260K);

describe('speculative decoding in the engine (stories260K)', { skip: file.missing }, () => {
  const spec = { method: 'ngram' as const, numTokens: 4 };
  // Repetitive prompts so that proposals exist and some are accepted.
  const prompts = Array.from({ length: 6 }, (_, i) => [1, ...Array.from({ length: 10 + 7 * i }, (_, j) => 300 + ((j * (i + 2)) % (5 + i)))]);

  const run = (load: LoadOptions, params: GenerateParams) => generateTraced(file.path, prompts, load, params);

  let plain: Traced;
  before(async () => {
    plain = await run({}, { maxTokens: 60, temperature: 0, ignoreEos: true });
  });

  it('greedy outputs are bit-identical with speculation, batched, with prefix caching and under preemption', async () => {
    const specd = await run({ speculative: spec }, { maxTokens: 60, temperature: 0, ignoreEos: true });
    assert.deepEqual(specd.tokens, plain.tokens);
    assert.ok(specd.stats.specDraftTokens > 0 && specd.stats.specAcceptedTokens > 0, `${specd.stats.specAcceptedTokens} of ${specd.stats.specDraftTokens} proposals accepted`);
    assert.ok(specd.stats.specAcceptedTokens <= specd.stats.specDraftTokens);
    assert.ok(specd.steps.length < plain.steps.length, `${specd.steps.length} steps vs ${plain.steps.length}`);
    // The step trace (and the live view drawn from it) shows what was proposed and accepted.
    const verified = specd.steps.filter((s) => (s.numDraftTokens ?? 0) > 0);
    assert.ok(verified.length > 0);
    assert.equal(verified.reduce((a, s) => a + (s.numAcceptedTokens ?? 0), 0), specd.stats.specAcceptedTokens);
    const live = liveStep(verified[0]!, () => 1);
    assert.deepEqual([live.proposed, live.accepted], [verified[0]!.numDraftTokens, verified[0]!.numAcceptedTokens]);
    const perPos = specd.stats.specAcceptedPerPos;
    for (let i = 1; i < perPos.length; i++) assert.ok(perPos[i]! <= perPos[i - 1]!, 'acceptance by position never grows');
    // A tight cache: preemption and recompute on top of speculation.
    const tight = await run({ speculative: spec, numBlocks: 48, maxModelLen: 120, enablePrefixCaching: false }, { maxTokens: 60, temperature: 0, ignoreEos: true });
    assert.ok(tight.stats.preemptions > 0, 'the tight cache preempts');
    assert.deepEqual(tight.tokens, plain.tokens);
  });

  it('sampled outputs are reproducible per seed, n > 1 included, and stop where a stop token says', async () => {
    const params = { maxTokens: 40, temperature: 0.9, seed: 11, n: 2, stopTokenIds: [301] };
    const a = await run({ speculative: spec }, params);
    const b = await run({ speculative: spec }, params);
    assert.deepEqual(a.tokens, b.tokens);
    for (const completions of a.tokens) {
      for (const t of completions) {
        const at = t.indexOf(301);
        assert.ok(at < 0 || at === t.length - 1, 'nothing follows the stop token');
      }
    }
  });

  it('pauses speculation while the batch is bigger than speculativeDisableBatchSize', async () => {
    const big = await run({ speculative: spec, speculativeDisableBatchSize: 2 }, { maxTokens: 30, temperature: 0, ignoreEos: true });
    for (const s of big.steps) if (s.numRunning > 2) assert.equal(s.numDraftTokens ?? 0, 0, `step ${s.step} with ${s.numRunning} running verified proposals`);
    assert.deepEqual(big.tokens.map((t) => t.map((x) => x.slice(0, 30))), plain.tokens.map((t) => t.map((x) => x.slice(0, 30))));
  });

  it('a request may opt out', async () => {
    const out = await run({ speculative: spec }, { maxTokens: 30, temperature: 0, ignoreEos: true, speculative: false });
    assert.equal(out.stats.specDraftTokens, 0);
  });
});

describe('speculative decoding with a draft model (tiny random models)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stepwise-draft-'));
  const target = join(dir, 'target.gguf');
  const other = join(dir, 'other-seed.gguf');
  // Three prompts share a 12-token prefix (prefix cache hits on 4-token blocks); the longer ones are
  // prefilled in chunks of 8.
  const shared = [1, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50];
  const prompts = [
    ...Array.from({ length: 3 }, (_, i) => [...shared, 60 + i, 70 + i]),
    ...Array.from({ length: 3 }, (_, i) => [1, ...Array.from({ length: 9 + 11 * i }, (_, j) => 100 + ((j * (i + 3)) % 37))]),
  ];
  const greedy = { maxTokens: 48, temperature: 0, ignoreEos: true, n: 2 };

  const run = (load: LoadOptions, params: GenerateParams) =>
    generateTraced(target, prompts, { maxNumBatchedTokens: 16, longPrefillTokenThreshold: 8, ...load }, params);
  /** Share of decoding sequence-steps that verified proposals. */
  const verifiedShare = (r: Traced) => r.stats.specDrafts / r.steps.reduce((a, s) => a + s.numDecodeTokens, 0);

  let plain: Traced;
  before(async () => {
    await makeModel({ preset: 'tiny', dtype: 'f32', seed: 1, out: target });
    await makeModel({ preset: 'tiny', dtype: 'f32', seed: 2, out: other });
    plain = await run({}, greedy);
  });

  it('the model drafting for itself has every proposal accepted: its KV follows batching, n > 1, prefix hits, chunked prefill and preemption', async () => {
    const self = { method: 'draft' as const, model: target, numTokens: 4 };
    const specd = await run({ speculative: self }, greedy);
    assert.deepEqual(specd.tokens, plain.tokens);
    assert.ok(specd.stats.prefixCacheHits > 0, 'prompts hit the prefix cache');
    assert.ok(specd.stats.specDraftTokens > 100, `${specd.stats.specDraftTokens} proposals`);
    // Any row of the draft's KV cache out of step with the target's would show as a rejection.
    assert.equal(specd.stats.specAcceptedTokens, specd.stats.specDraftTokens);
    assert.ok(specd.steps.length < plain.steps.length / 2, `${specd.steps.length} steps vs ${plain.steps.length}`);
    assert.ok(verifiedShare(specd) > 0.8, `${verifiedShare(specd)} of decodes verified proposals`);
    assert.ok(specd.steps.some((s) => (s.proposeMs ?? 0) > 0), 'the step trace carries the draft passes\' time');
    const tight = await run({ speculative: self, numBlocks: 40, maxModelLen: 80 }, greedy);
    assert.ok(tight.stats.preemptions > 0, 'the tight cache preempts');
    assert.deepEqual(tight.tokens, plain.tokens);
    assert.equal(tight.stats.specAcceptedTokens, tight.stats.specDraftTokens);
  });

  it('greedy outputs are bit-identical with a weaker draft (another model, the Q4_0 self-copy); k adapts down and low acceptance pauses speculation', async () => {
    const weak = await run({ speculative: { method: 'draft', model: other, numTokens: 4 } }, greedy);
    assert.deepEqual(weak.tokens, plain.tokens);
    assert.ok(weak.stats.specAcceptedTokens < weak.stats.specDraftTokens, 'some proposals are rejected');
    assert.ok(weak.stats.specDraftTokens / weak.stats.specDrafts < 2.5, `mean k ${weak.stats.specDraftTokens / weak.stats.specDrafts} after rejections`);
    assert.ok(verifiedShare(weak) < 0.5, `${verifiedShare(weak)} of decodes verified proposals despite low acceptance`);
    const q4 = await run({ speculative: { method: 'draft', dtype: 'q4_0', numTokens: 4 } }, greedy);
    assert.deepEqual(q4.tokens, plain.tokens);
    assert.ok(q4.stats.specAcceptedTokens > 0 && q4.stats.specDraftTokens > 0);
  });

  it('sampled outputs are reproducible per seed, and stop where a stop token says', async () => {
    const params = { maxTokens: 40, temperature: 0.9, seed: 11, n: 2, stopTokenIds: [200] };
    const spec = { method: 'draft' as const, dtype: 'q8_0' as const, numTokens: 3 };
    const a = await run({ speculative: spec }, params);
    const b = await run({ speculative: spec }, params);
    assert.deepEqual(a.tokens, b.tokens);
    assert.ok(a.stats.specAcceptedTokens > 0);
    for (const t of a.tokens.flat()) {
      const at = t.indexOf(200);
      assert.ok(at < 0 || at === t.length - 1, 'nothing follows the stop token');
    }
  });

  it('the draft does not run while the batch is bigger than speculativeDisableBatchSize, and catches up when it shrinks', async () => {
    const big = await run({ speculative: { method: 'draft', model: target, numTokens: 4 }, speculativeDisableBatchSize: 2 }, greedy);
    assert.deepEqual(big.tokens, plain.tokens);
    const busy = big.steps.filter((s) => s.numRunning > 2);
    assert.ok(busy.length > 0);
    for (const s of busy) {
      assert.equal(s.numDraftTokens ?? 0, 0, `step ${s.step} with ${s.numRunning} running verified proposals`);
      assert.equal(s.proposeMs, undefined, `step ${s.step} with ${s.numRunning} running ran the draft`);
    }
    // One long request outlives five short ones: once it runs alone, the draft catches up with its
    // prompt and the tokens it generated without a draft, then drafts it exactly.
    const llm = await LLM.load(target, { inProcess: true, threads: 1, blockSize: 4, speculative: { method: 'draft', model: target, numTokens: 4 }, speculativeDisableBatchSize: 2 });
    const long = llm.generate(prompts[5]!, { maxTokens: 60, temperature: 0, ignoreEos: true });
    await llm.generate(prompts.slice(0, 5), { maxTokens: 10, temperature: 0, ignoreEos: true });
    const [alone] = await long;
    const stats = llm.engine.stats();
    await llm.close();
    assert.deepEqual(alone!.tokenIds.slice(0, greedy.maxTokens), plain.tokens[5]![0]);
    assert.ok(stats.specDraftTokens > 20, `${stats.specDraftTokens} proposals after the batch shrank`);
    assert.equal(stats.specAcceptedTokens, stats.specDraftTokens);
  });

  it('a draft\'s KV cache shares the memory budget', async () => {
    const budget = { kvCacheMemory: 2 ** 20 };
    const alone = await LLM.load(target, { inProcess: true, threads: 1, ...budget });
    const withDraft = await LLM.load(target, { inProcess: true, threads: 1, ...budget, speculative: { method: 'draft', model: target, numTokens: 4 } });
    assert.equal(withDraft.options.numBlocks, Math.floor(alone.options.numBlocks / 2));
    await alone.close();
    await withDraft.close();
  });

  it('a draft model with another vocabulary is refused at load, naming the difference', async () => {
    const write = (name: string, vocab: ReturnType<typeof syntheticVocab>) => {
      const path = join(dir, name);
      writeGgufFile(path, modelSpec({ shape: { ...PRESETS.tiny, vocabSize: vocab.pieces.length }, dtype: 'f32', seed: 1, vocab, name }).spec);
      return path;
    };
    const bigger = write('vocab-600.gguf', syntheticVocab(600));
    const renamed = syntheticVocab(512);
    const was = renamed.pieces[300];
    renamed.pieces[300] = 'hello';
    const different = write('vocab-renamed.gguf', renamed);
    await assert.rejects(
      LLM.load(target, { inProcess: true, speculative: { method: 'draft', model: bigger, numTokens: 4 } }),
      (e: unknown) => e instanceof DraftModelError && /vocab-600\.gguf has a vocabulary of 600 tokens, the target model's has 512/.test(e.message),
    );
    await assert.rejects(
      LLM.load(target, { inProcess: true, speculative: { method: 'draft', model: different, numTokens: 4 } }),
      (e: unknown) => e instanceof DraftModelError && e.message.includes(`token 300 is "hello" there, ${JSON.stringify(was)} in the target model`) && !e.message.includes('\n'),
    );
    await assert.rejects(LLM.load(target, { inProcess: true, speculative: { method: 'draft', numTokens: 4 } }), /needs a draft model file \(model\) or a weight type/);
  });
});
