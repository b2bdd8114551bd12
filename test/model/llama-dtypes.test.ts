// Every weight type the loaders accept runs through the batched forward pass and agrees with the
// naive oracle (which dequantizes everything up front, independently of the reference matmul).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeModel } from '../../src/model/make-model.js';
import { loadModel } from '../../src/model/loaders/index.js';
import { TransformerModel } from '../../src/model/transformer.js';
import { createKvStorage } from '../../src/model/kv-storage.js';
import { referenceKernels } from '../../src/model/kernels/reference.js';
import { NaiveLlama } from './naive-llama.js';
import { maxAbsDiff, randomTokens } from './ragged-batch.js';

describe('TransformerModel on every weight type vs the naive oracle', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'stepwise-dtypes-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  // K-quants need rows of whole 256-blocks: the tiny preset (dim 64) would fall back to 32-blocks.
  const cases = [['f16', 'tiny'], ['bf16', 'tiny'], ['q8_0', 'tiny'], ['q4_0', 'tiny'], ['q4_k', 'small'], ['q6_k', 'small']] as const;
  for (const [dtype, preset] of cases) {
    it(`${dtype} (${preset}): a 12-token prompt in one batch gives the oracle's logits at every position (1e-4)`, async () => {
      const path = join(dir, `${dtype}.gguf`);
      await makeModel({ preset, dtype, seed: 3, out: path });
      const m = await loadModel(path);
      assert.equal(m.weights.layers[0].wq.dtype, dtype, 'the case must exercise its weight type');
      const c = m.config;
      const prompt = [1, ...randomTokens(11, c.vocabSize, 9)];
      const N = prompt.length;
      const model = new TransformerModel(c, m.weights, referenceKernels);
      const kv = createKvStorage(c, 4, 4);
      const rows = Int32Array.from({ length: N }, (_, i) => i);
      const table = Int32Array.of(2, 0, 3);
      const logits = model.forward(
        { tokens: Int32Array.from(prompt), logitRows: rows, meta: { numRows: N, positions: rows, rowSeq: new Int32Array(N), blockTables: table, maxBlocksPerSeq: 3, slotMapping: rows.map((p) => table[p >> 2] * 4 + (p & 3)) } },
        kv,
      );
      const naive = new NaiveLlama(c, m.weights, N);
      prompt.forEach((t, p) => {
        const d = maxAbsDiff(logits.subarray(p * c.vocabSize, (p + 1) * c.vocabSize), naive.forward(t, p));
        assert.ok(d < 1e-4, `${dtype} position ${p}: max |logit difference| ${d}`);
      });
    });
  }
});
