// An LLM whose runner is the engine's FakeModelRunner (hash "model", byte tokenizer): the real
// engine, scheduler and LLM class with no model file, for server tests that need a runner that fails
// on demand or costs a set time per step.
import { LLM, type ResolvedLoadOptions } from '../../src/llm.js';
import { Engine } from '../../src/engine/engine.js';
import { FakeModelRunner, type FakeRunnerOptions } from '../helpers/fake-runner.js';
import type { ModelConfig } from '../../src/model/config.js';
import { byteTokenizer } from './fake-tokenizer.js';

export function fakeLLM(opts: { runner?: Partial<FakeRunnerOptions>; engine?: Partial<ResolvedLoadOptions> } = {}): LLM {
  const tokenizer = byteTokenizer();
  const config: ModelConfig = {
    arch: 'llama', dim: 8, hiddenDim: 16, nLayers: 1, nHeads: 1, nKvHeads: 1, headDim: 8,
    vocabSize: tokenizer.vocabSize, contextLength: 256, ropeTheta: 10000, ropeDim: 8, normEps: 1e-5, tiedEmbeddings: true,
  };
  const options: ResolvedLoadOptions = {
    policy: 'continuous', schedulingPolicy: 'fcfs', maxNumSeqs: 16, maxNumBatchedTokens: 512, numBlocks: 256, blockSize: 16,
    enablePrefixCaching: true, longPrefillTokenThreshold: 0, maxQueue: 0, staticBatchSize: 16, staticWaitMs: 0,
    staticDropFinished: false, maxModelLen: 256, backend: 'typescript', threads: 1, inProcess: true,
    ...opts.engine,
  };
  const runner = new FakeModelRunner({ numBlocks: options.numBlocks, blockSize: options.blockSize, vocabSize: tokenizer.vocabSize, ...opts.runner });
  const { backend: _b, threads: _t, inProcess: _i, tokenizerPath: _p, ...engineOpts } = options;
  const engine = new Engine(runner, { ...engineOpts, tokenizer, eogIds: [...tokenizer.eogIds] });
  // LLM's constructor is private to keep callers on LLM.load(); a test may assemble one directly.
  const Ctor = LLM as unknown as new (...args: unknown[]) => LLM;
  return new Ctor(engine, tokenizer, config, {}, 'fake-model', 'fake', options);
}
