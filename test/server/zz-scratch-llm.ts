import { Engine } from '../../src/engine/engine.js';
import { FakeModelRunner } from '../../src/engine/fake-runner.js';
import { resolveSamplingParams } from '../../src/engine/sampling.js';
import { byteTokenizer } from './fake-tokenizer.js';
export function scratchLLM(runnerOpts: object = {}, engineOpts: object = {}): any {
  const tokenizer = byteTokenizer();
  const options: any = { policy: 'continuous', schedulingPolicy: 'fcfs', maxNumSeqs: 16, maxNumBatchedTokens: 512, numBlocks: 256, blockSize: 16,
    enablePrefixCaching: true, longPrefillTokenThreshold: 0, maxQueue: 0, staticBatchSize: 16, staticWaitMs: 0,
    staticDropFinished: false, maxModelLen: 256, backend: 'typescript', threads: 1, inProcess: true, ...engineOpts };
  const engine = new Engine(new FakeModelRunner({ numBlocks: 256, blockSize: 16, vocabSize: 259, ...runnerOpts }), { ...options, tokenizer, eogIds: [2] });
  return {
    engine, tokenizer, config: { vocabSize: 259, contextLength: 256 }, metadata: {}, modelName: 'fake-model', backend: 'fake', options,
    encode: (p: any) => (typeof p === 'string' ? tokenizer.encode(p) : [...p]),
    stream(prompt: any, params: any = {}) {
      const { priority, requestId, signal, ...sampling } = params;
      return engine.addRequest({ requestId, promptTokenIds: this.encode(prompt), sampling: resolveSamplingParams(sampling), priority });
    },
    close: () => engine.close(),
  };
}
