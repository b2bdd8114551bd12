// The batched, paged forward pass against the naive single-sequence oracle on the real stories260K
// checkpoint, and its batch invariance: the logits of a row must be bit-identical whatever else is in
// the batch, however the prompt was chunked, and whatever the KV block size.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { sharedModelFile, STORIES260K } from '../helpers/models.js';
import { loadModel, type LoadedModel } from '../../src/model/loaders/index.js';
import { TransformerModel, ModelInputError } from '../../src/model/transformer.js';
import { createKvStorage } from '../../src/model/kv-storage.js';
import { referenceKernels } from '../../src/model/kernels/reference.js';
import { NaiveLlama, argmax } from './naive-llama.js';
import { firstBitDifference, maxAbsDiff, randomTokens, runPlan, type Chunk } from './ragged-batch.js';

const file = sharedModelFile(STORIES260K);

describe('TransformerModel on stories260K', { skip: file.missing }, () => {
  let loaded: LoadedModel;
  let model: TransformerModel;
  before(async () => {
    loaded = await loadModel(file.path);
    model = new TransformerModel(loaded.config, loaded.weights, referenceKernels);
  });

  it('greedy decoding from BOS matches the naive oracle token for token (logits within 1e-4)', () => {
    const naive = new NaiveLlama(loaded.config, loaded.weights, 64);
    const blockSize = 4;
    const kv = createKvStorage(loaded.config, 16, blockSize);
    // Scattered physical blocks: position p lives in block table[p / 4].
    const table = Int32Array.from([5, 2, 11, 0, 7, 14, 3, 9, 1, 12, 6, 15]);
    let ours = 1;
    let theirs = 1;
    const generated: number[] = [];
    for (let pos = 0; pos < 40; pos++) {
      const logits = model.forward(
        {
          tokens: Int32Array.of(ours),
          logitRows: Int32Array.of(0),
          meta: { numRows: 1, positions: Int32Array.of(pos), rowSeq: Int32Array.of(0), blockTables: table, maxBlocksPerSeq: table.length, slotMapping: Int32Array.of(table[Math.floor(pos / blockSize)] * blockSize + (pos % blockSize)) },
        },
        kv,
      );
      const ref = naive.forward(theirs, pos);
      assert.equal(logits.length, loaded.config.vocabSize);
      const d = maxAbsDiff(logits, ref);
      assert.ok(d < 1e-4, `position ${pos}: max |logit difference| ${d}`);
      ours = argmax(logits);
      theirs = argmax(ref);
      assert.equal(ours, theirs, `greedy token at position ${pos + 1}`);
      generated.push(ours);
    }
    // A real model does not emit one token forever; guards against a degenerate forward pass.
    assert.ok(new Set(generated).size > 5, `greedy output looks degenerate: ${generated.join(' ')}`);
  });

  describe('batch invariance (bit for bit)', () => {
    // Four sequences: prompt of its own length, then 6 fixed "decoded" tokens fed one per step.
    const promptLens = [9, 1, 17, 5];
    const decodeLen = 6;
    let streams: number[][];
    let baseline: Float32Array[][];

    const decodePlan = (seqs: number[]): Chunk[][] => Array.from({ length: decodeLen }, () => seqs.map((seq) => ({ seq, n: 1 })));

    before(() => {
      const vocab = loaded.config.vocabSize;
      streams = promptLens.map((n, i) => [1, ...randomTokens(n - 1 + decodeLen, vocab, 100 + i)]);
      // Baseline: each sequence alone, whole prompt in one step, then one token per step.
      const plan: Chunk[][] = [];
      promptLens.forEach((n, seq) => {
        plan.push([{ seq, n }]);
        plan.push(...decodePlan([seq]));
      });
      baseline = runPlan(model, streams, plan, 16);
    });

    function assertSameAsBaseline(got: Float32Array[][], what: string): void {
      got.forEach((rows, seq) => {
        assert.equal(rows.length, streams[seq].length, `${what}: sequence ${seq} rows`);
        rows.forEach((row, pos) => {
          const at = firstBitDifference(row, baseline[seq][pos]);
          assert.equal(at, -1, `${what}: sequence ${seq} position ${pos} differs at logit ${at} (${row[at]} vs ${baseline[seq][pos][at]})`);
        });
      });
    }

    for (const blockSize of [1, 4, 16]) {
      it(`all sequences in one ragged batch, block size ${blockSize}`, () => {
        const all = promptLens.map((n, seq) => ({ seq, n }));
        const got = runPlan(model, streams, [all, ...decodePlan([0, 1, 2, 3])], blockSize, blockSize);
        assertSameAsBaseline(got, `ragged, block size ${blockSize}`);
      });
    }

    it('chunked prefill of various sizes, interleaved with other sequences decoding', () => {
      // Sequence 2 (17 tokens) arrives in chunks of 1, 3, 5, 8 while 0, 1 and 3 are prefilled and decode.
      const plan: Chunk[][] = [
        [{ seq: 2, n: 1 }, { seq: 0, n: 9 }],
        [{ seq: 0, n: 1 }, { seq: 2, n: 3 }, { seq: 1, n: 1 }],
        [{ seq: 3, n: 2 }, { seq: 1, n: 1 }, { seq: 0, n: 1 }, { seq: 2, n: 5 }],
        [{ seq: 2, n: 8 }, { seq: 3, n: 3 }, { seq: 0, n: 1 }, { seq: 1, n: 1 }],
      ];
      const fed = [12, 3, 17, 5];
      // Then everyone decodes what is left, one token per step.
      const left = streams.map((s, i) => s.length - fed[i]);
      for (let k = 0; k < Math.max(...left); k++) plan.push(streams.flatMap((_, seq) => (k < left[seq] ? [{ seq, n: 1 }] : [])));
      const got = runPlan(model, streams, plan, 4, 99);
      assertSameAsBaseline(got, 'chunked prefill');
    });

    it('prefill one token at a time equals prefill in one go', () => {
      const plan: Chunk[][] = [];
      for (let k = 0; k < streams[2].length; k++) plan.push([{ seq: 2, n: 1 }]);
      const got = runPlan(model, [streams[2]], plan.map((s) => s.map((c) => ({ ...c, seq: 0 }))), 4);
      got[0].forEach((row, pos) => assert.equal(firstBitDifference(row, baseline[2][pos]), -1, `position ${pos}`));
    });
  });

  it('rejects a token id outside the vocabulary with a clear error', () => {
    const kv = createKvStorage(loaded.config, 2, 4);
    const meta = { numRows: 1, positions: Int32Array.of(0), rowSeq: Int32Array.of(0), blockTables: Int32Array.of(0), maxBlocksPerSeq: 1, slotMapping: Int32Array.of(0) };
    assert.throws(() => model.forward({ tokens: Int32Array.of(512), logitRows: Int32Array.of(0), meta }, kv), (e: Error) => e instanceof ModelInputError && /token id 512/.test(e.message));
    assert.throws(() => model.forward({ tokens: Int32Array.of(1), logitRows: Int32Array.of(3), meta }, kv), /logit row 3/);
    assert.throws(
      () => model.forward({ tokens: Int32Array.of(1), logitRows: Int32Array.of(0), meta: { ...meta, positions: Int32Array.of(4) } }, kv),
      /position 4/,
    );
  });

  it('rejects weights that do not match the config', () => {
    assert.throws(() => new TransformerModel({ ...loaded.config, nLayers: 4 }, loaded.weights, referenceKernels), /5 layers, the config says 4/);
    assert.throws(() => new TransformerModel({ ...loaded.config, hiddenDim: 128 }, loaded.weights, referenceKernels), (e: Error) => e instanceof ModelInputError && /ffn gate/.test(e.message));
  });
});
