// The whole forward pass on the native kernels, on the real stories260K checkpoint (odd widths:
// hidden 172, head width 8, grouped-query attention): logits close to the TypeScript kernels',
// and bit-identical whatever the batch, the chunking, the block size or the thread count.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { createNativeKernels, nativeUnavailableReason } from '../../src/model/kernels/native.js';
import { referenceKernels } from '../../src/model/kernels/reference.js';
import { TransformerModel } from '../../src/model/transformer.js';
import { loadModel, type LoadedModel } from '../../src/model/loaders/index.js';
import { sharedModelFile, STORIES260K } from '../helpers/models.js';
import { firstBitDifference, randomTokens, runPlan, type Chunk } from './ragged-batch.js';

const file = sharedModelFile(STORIES260K);
const skip = nativeUnavailableReason() ?? file.missing ?? false;

describe('TransformerModel on the native kernels (stories260K)', { skip }, () => {
  let loaded: LoadedModel;
  let streams: number[][];
  const promptLens = [9, 1, 17, 5];
  const decodeLen = 6;
  const decodePlan = (seqs: number[]): Chunk[][] => Array.from({ length: decodeLen }, () => seqs.map((seq) => ({ seq, n: 1 })));
  let baseline: Float32Array[][];

  before(async () => {
    loaded = await loadModel(file.path);
    const vocab = loaded.config.vocabSize;
    streams = promptLens.map((n, i) => [1, ...randomTokens(n - 1 + decodeLen, vocab, 300 + i)]);
    // Baseline: each sequence alone, whole prompt in one step, then a token per step, 2 threads.
    const model = new TransformerModel(loaded.config, loaded.weights, createNativeKernels({ threads: 2 }));
    const plan: Chunk[][] = [];
    promptLens.forEach((n, seq) => plan.push([{ seq, n }], ...decodePlan([seq])));
    baseline = runPlan(model, streams, plan, 16);
  });

  function assertSameAsBaseline(got: Float32Array[][], what: string): void {
    got.forEach((rows, seq) => {
      rows.forEach((row, pos) => {
        const at = firstBitDifference(row, baseline[seq]![pos]!);
        assert.equal(at, -1, `${what}: sequence ${seq} position ${pos} differs at logit ${at}`);
      });
    });
  }

  it('gives logits within 1e-4 of the TypeScript kernels', () => {
    const model = new TransformerModel(loaded.config, loaded.weights, referenceKernels);
    const plan: Chunk[][] = [];
    promptLens.forEach((n, seq) => plan.push([{ seq, n }], ...decodePlan([seq])));
    const want = runPlan(model, streams, plan, 16);
    want.forEach((rows, seq) =>
      rows.forEach((row, pos) => {
        const got = baseline[seq]![pos]!;
        for (let i = 0; i < row.length; i++) {
          if (!(Math.abs(got[i]! - row[i]!) <= 1e-4 * Math.max(1, Math.abs(row[i]!)))) {
            assert.fail(`sequence ${seq} position ${pos} logit ${i}: ${got[i]} vs reference ${row[i]}`);
          }
        }
      }),
    );
  });

  it('gives the same bits with every sequence in one ragged batch, on one thread, block size 4', () => {
    const model = new TransformerModel(loaded.config, loaded.weights, createNativeKernels({ threads: 1 }));
    const all = promptLens.map((n, seq) => ({ seq, n }));
    assertSameAsBaseline(runPlan(model, streams, [all, ...decodePlan([0, 1, 2, 3])], 4, 4), 'ragged batch');
  });

  it('gives the same bits with chunked prefill interleaved with other sequences decoding', () => {
    const model = new TransformerModel(loaded.config, loaded.weights, createNativeKernels({ threads: 2 }));
    const plan: Chunk[][] = [
      [{ seq: 2, n: 1 }, { seq: 0, n: 9 }],
      [{ seq: 0, n: 1 }, { seq: 2, n: 3 }, { seq: 1, n: 1 }],
      [{ seq: 3, n: 2 }, { seq: 1, n: 1 }, { seq: 0, n: 1 }, { seq: 2, n: 5 }],
      [{ seq: 2, n: 8 }, { seq: 3, n: 3 }, { seq: 0, n: 1 }, { seq: 1, n: 1 }],
    ];
    const fed = [12, 3, 17, 5];
    const left = streams.map((s, i) => s.length - fed[i]!);
    for (let k = 0; k < Math.max(...left); k++) plan.push(streams.flatMap((_, seq) => (k < left[seq]! ? [{ seq, n: 1 }] : [])));
    assertSameAsBaseline(runPlan(model, streams, plan, 1, 99), 'chunked prefill');
  });
});
