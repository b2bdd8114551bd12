// The engine on a real model (stories260K, reference kernels): scheduling decisions must never
// change what a request generates. Preemption under a KV cache ~10% of demand, prefix caching, n>1
// copy-on-write, and the static / none baselines all yield token ids and logprobs identical to an
// unconstrained continuous run, greedy and seeded sampling alike.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { sharedModelFile, STORIES260K } from '../helpers/models.js';
import { loadModel, type LoadedModel } from '../../src/model/loaders/index.js';
import { referenceKernels } from '../../src/model/kernels/reference.js';
import { LocalModelRunner } from '../../src/engine/model-runner.js';
import { Engine, type EngineOptions, type EngineRequest } from '../../src/engine/engine.js';
import { resolveSamplingParams } from '../../src/engine/sampling-params.js';
import { deriveSeed } from '../../src/engine/counter-rng.js';
import type { RequestOutput } from '../../src/engine/types.js';
import type { StepRecord } from '../../src/engine/step-trace.js';

const file = sharedModelFile(STORIES260K);
const EOS = 2;

interface Result {
  tokens: number[][];
  logprobs: number[][];
  top: string[];
  finish: string[];
  numCached: number;
  numPreemptions: number;
}

function options(model: LoadedModel, over: Partial<EngineOptions>): EngineOptions {
  return {
    policy: 'continuous',
    schedulingPolicy: 'fcfs',
    maxNumSeqs: 16,
    maxNumBatchedTokens: 256,
    numBlocks: 512,
    blockSize: 4,
    enablePrefixCaching: true,
    longPrefillTokenThreshold: 0,
    maxQueue: 0,
    staticBatchSize: 3,
    staticWaitMs: 0,
    staticDropFinished: false,
    maxModelLen: model.config.contextLength,
    tokenizer: null,
    eogIds: [EOS],
    ...over,
  };
}

/** Runs the requests (all added at once, or one after another) and collects every completion. */
async function run(model: LoadedModel, over: Partial<EngineOptions>, reqs: EngineRequest[], sequential = false) {
  const o = options(model, over);
  const runner = await LocalModelRunner.create({ model, kernels: referenceKernels, numBlocks: o.numBlocks, blockSize: o.blockSize, eogIds: o.eogIds });
  const engine = new Engine(runner, o);
  const trace: StepRecord[] = [];
  engine.onStep((r) => trace.push(r));
  const results = new Map<string, Result>();
  const consume = async (r: EngineRequest) => {
    const n = r.sampling.n;
    const res: Result = { tokens: [], logprobs: [], top: [], finish: [], numCached: 0, numPreemptions: 0 };
    for (let i = 0; i < n; i++) {
      res.tokens.push([]);
      res.logprobs.push([]);
      res.top.push('');
      res.finish.push('');
    }
    for await (const o2 of engine.addRequest(r) as AsyncIterable<RequestOutput>) {
      res.tokens[o2.index].push(...o2.newTokenIds);
      for (const l of o2.logprobs ?? []) {
        res.logprobs[o2.index].push(l.logprob);
        res.top[o2.index] += l.top.map((t) => `${t.tokenId}:${t.logprob}`).join(',') + ';';
      }
      if (o2.finished) res.finish[o2.index] = o2.finishReason!;
      res.numCached = o2.numCachedTokens;
      res.numPreemptions += o2.finished ? o2.numPreemptions : 0;
    }
    results.set(r.requestId!, res);
  };
  if (sequential) for (const r of reqs) await consume(r);
  else await Promise.all(reqs.map(consume));
  const stats = engine.stats();
  await engine.close();
  return { results, trace, stats };
}

/** Prompt of token ids: BOS then a deterministic walk over the 512-token vocabulary. */
function prompt(seed: number, len: number): number[] {
  const p = [1];
  for (let i = 1; i < len; i++) p.push(3 + ((seed * 131 + i * 37 + ((i * i) % 11)) % 500));
  return p;
}

const withoutPreemptionCounts = (m: Map<string, Result>) => new Map([...m].map(([k, v]) => [k, { ...v, numPreemptions: 0, numCached: 0 }]));

describe('engine on stories260K', { skip: file.missing }, () => {
  let model: LoadedModel;
  before(async () => {
    model = await loadModel(file.path);
  });

  it('KV capacity at ~10% of demand preempts many times yet yields identical tokens and logprobs, greedy and seeded', async () => {
    const reqs: EngineRequest[] = Array.from({ length: 12 }, (_, i) => ({
      requestId: `r${i}`,
      promptTokenIds: prompt(i, 4 + 2 * i),
      sampling: resolveSamplingParams(
        i % 2 === 0
          ? { temperature: 0, maxTokens: 24, logprobs: 2, ignoreEos: i % 4 === 0 }
          : { temperature: 0.9, topP: 0.95, seed: 1000 + i, maxTokens: 24, logprobs: 2, ignoreEos: true },
      ),
    }));
    const bs = 4;
    const demand = reqs.reduce((a, r) => a + Math.ceil((r.promptTokenIds.length + r.sampling.maxTokens) / bs), 0);
    const longest = Math.max(...reqs.map((r) => Math.ceil((r.promptTokenIds.length + r.sampling.maxTokens - 1) / bs)));
    const tight = Math.max(longest, Math.ceil(demand * 0.1));
    assert.ok(tight <= Math.ceil(demand * 0.11), `tight cache ${tight} blocks vs demand ${demand}`);
    const free = await run(model, { numBlocks: 512 }, reqs);
    const constrained = await run(model, { numBlocks: tight, enablePrefixCaching: false }, reqs);
    const constrainedCached = await run(model, { numBlocks: tight }, reqs);
    assert.equal(free.stats.preemptions, 0);
    assert.ok(constrained.stats.preemptions >= 10, `expected many preemptions, got ${constrained.stats.preemptions}`);
    assert.ok(constrainedCached.stats.preemptions >= 10, `expected many preemptions, got ${constrainedCached.stats.preemptions}`);
    const perRequest = [...constrained.results.values()].reduce((a, r) => a + r.numPreemptions, 0);
    assert.equal(perRequest, constrained.stats.preemptions, 'per-request preemption counts add up to the total');
    assert.deepEqual(withoutPreemptionCounts(constrained.results), withoutPreemptionCounts(free.results));
    assert.deepEqual(withoutPreemptionCounts(constrainedCached.results), withoutPreemptionCounts(free.results));
    // Both kinds of sampling were exercised and produced real output.
    assert.ok([...free.results.values()].every((r) => r.tokens[0].length > 0 && r.logprobs[0].length === r.tokens[0].length));
  });

  it('prefix caching: a request sharing a long prefix computes only its new tokens and yields identical output', async () => {
    const shared = prompt(42, 64);
    const reqs: EngineRequest[] = [
      { requestId: 'first', promptTokenIds: shared, sampling: resolveSamplingParams({ temperature: 0, maxTokens: 8, logprobs: 1 }) },
      { requestId: 'second', promptTokenIds: [...shared, ...prompt(7, 11).slice(1)], sampling: resolveSamplingParams({ temperature: 0.7, seed: 5, maxTokens: 8, logprobs: 1 }) },
    ];
    const cached = await run(model, { blockSize: 16 }, reqs, true);
    const plain = await run(model, { blockSize: 16, enablePrefixCaching: false }, reqs, true);
    const second = cached.results.get('second')!;
    assert.equal(second.numCached, 64);
    assert.equal(plain.results.get('second')!.numCached, 0);
    // The second request's first step computed only its 10 new prompt tokens.
    const firstStepOfSecond = cached.trace.find((r) => r.seqs.some((s) => s.requestId === 'second'))!;
    assert.deepEqual(firstStepOfSecond.seqs.map((s) => [s.requestId, s.prefillTokens]), [['second', 10]]);
    assert.equal(cached.stats.computedTokens + 64, plain.stats.computedTokens);
    assert.equal(cached.stats.prefixCacheHits, 64);
    assert.deepEqual(withoutPreemptionCounts(cached.results), withoutPreemptionCounts(plain.results));
  });

  it('n > 1 completions share the prompt blocks (copy-on-write) and equal separate requests seeded alike', async () => {
    const p = prompt(3, 10);
    const n3 = await run(model, {}, [{ requestId: 'n3', promptTokenIds: p, sampling: resolveSamplingParams({ n: 3, seed: 77, temperature: 1, maxTokens: 12, ignoreEos: true }) }]);
    const sep = await run(model, {}, [0, 1, 2].map((i) => ({ requestId: `s${i}`, promptTokenIds: p, sampling: resolveSamplingParams({ seed: deriveSeed(77, i), temperature: 1, maxTokens: 12, ignoreEos: true }) })));
    const got = n3.results.get('n3')!.tokens;
    assert.deepEqual(got, [0, 1, 2].map((i) => sep.results.get(`s${i}`)!.tokens[0]));
    assert.ok(n3.trace.some((r) => r.numBlockCopies > 0), 'the shared partial block was copied');
    assert.equal(new Set(got.map((t) => t.join(','))).size, 3);
  });

  it('static and none give every request the same output as continuous, with their expected step shapes', async () => {
    const reqs: EngineRequest[] = Array.from({ length: 6 }, (_, i) => ({
      requestId: `q${i}`,
      promptTokenIds: prompt(20 + i, 4 + 5 * i),
      sampling: resolveSamplingParams(i % 2 ? { temperature: 0.8, seed: i, maxTokens: 4 + 3 * i, logprobs: 0 } : { temperature: 0, maxTokens: 4 + 3 * i, logprobs: 0 }),
    }));
    const cont = await run(model, { policy: 'continuous' }, reqs);
    const stat = await run(model, { policy: 'static', staticBatchSize: 3 }, reqs);
    const none = await run(model, { policy: 'none' }, reqs);
    assert.deepEqual(withoutPreemptionCounts(stat.results), withoutPreemptionCounts(cont.results));
    assert.deepEqual(withoutPreemptionCounts(none.results), withoutPreemptionCounts(cont.results));

    // Static: a batch is joined only when the previous one has drained, prompts are padded to the
    // longest, and every decode step carries all rows of the batch (finished ones as padding).
    const batches: StepRecord[][] = [];
    for (const r of stat.trace) {
      if (r.numJoined > 0) {
        assert.ok(r.seqs.every((s) => s.prefillTokens > 0), 'joins happen only in a fresh batch\'s first step');
        batches.push([]);
      }
      batches.at(-1)!.push(r);
    }
    assert.equal(batches.length, 2);
    for (const b of batches) {
      const rows = b[0].seqs.length;
      assert.equal(rows, 3);
      const longest = Math.max(...b[0].seqs.map((s) => s.prefillTokens));
      assert.equal(b[0].numBatchedTokens, rows * longest, 'prefill padded to the longest prompt');
      assert.ok(b[0].numPadRows > 0);
      for (const r of b.slice(1)) assert.equal(r.seqs.length, rows, 'finished rows stay in the batch as padding');
    }
    // None: one request per step, each run to completion before the next starts.
    const order: string[] = [];
    for (const r of none.trace) {
      assert.equal(new Set(r.seqs.map((s) => s.requestId)).size, 1);
      if (order.at(-1) !== r.seqs[0].requestId) order.push(r.seqs[0].requestId);
    }
    assert.deepEqual(order, reqs.map((r) => r.requestId));
    // Continuous interleaves: some step runs several requests at once.
    assert.ok(cont.trace.some((r) => new Set(r.seqs.map((s) => s.requestId)).size > 1));
    assert.ok(cont.trace.length < none.trace.length);
  });
});
