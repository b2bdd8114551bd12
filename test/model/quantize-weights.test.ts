// Re-encoding a loaded model in memory (what `--draft-dtype` drafts with): the Q4_0 copy of a model
// is byte for byte the Q4_0 file make-model writes from the same seed; the output projection gets its
// own type unless tied; vectors stay as they are.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeModel } from '../../src/model/make-model.js';
import { loadModel, type LoadedModel } from '../../src/model/loaders/index.js';
import { requantizeWeights } from '../../src/model/quantize-weights.js';
import type { LlamaWeights, WeightTensor } from '../../src/model/weights.js';

function matrices(w: LlamaWeights): WeightTensor[] {
  return [w.tokenEmbedding, w.output, ...w.layers.flatMap((l) => [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown])];
}

describe('requantizeWeights', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stepwise-requant-'));
  let f32: LoadedModel;
  let q4: LoadedModel;
  let untied: LoadedModel;
  before(async () => {
    await makeModel({ preset: 'tiny', dtype: 'f32', seed: 1, out: join(dir, 'f32.gguf') });
    await makeModel({ preset: 'tiny', dtype: 'q4_0', seed: 1, out: join(dir, 'q4_0.gguf') });
    await makeModel({ preset: 'tiny', dtype: 'f32', seed: 1, tied: false, out: join(dir, 'untied.gguf') });
    [f32, q4, untied] = await Promise.all(['f32', 'q4_0', 'untied'].map((n) => loadModel(join(dir, `${n}.gguf`))));
  });

  it('the Q4_0 copy of an F32 model is the Q4_0 file of the same seed, tied output included', () => {
    const w = requantizeWeights(f32.weights, 'q4_0', { outputDtype: 'q4_0' });
    assert.equal(w.output, w.tokenEmbedding, 'a tied projection stays tied');
    const got = matrices(w);
    const want = matrices(q4.weights);
    for (let i = 0; i < got.length; i++) {
      assert.equal(got[i]!.dtype, 'q4_0', got[i]!.name);
      assert.ok(Buffer.from(got[i]!.data).equals(Buffer.from(want[i]!.data)), `${got[i]!.name} differs from the file's bytes`);
    }
    assert.equal(w.layers[0]!.attnNorm, f32.weights.layers[0]!.attnNorm, 'vectors are kept');
  });

  it('an untied output projection gets its own type (q8_0 by default)', () => {
    const w = requantizeWeights(untied.weights, 'q4_0');
    assert.equal(w.output.dtype, 'q8_0');
    assert.equal(w.tokenEmbedding.dtype, 'q4_0');
    assert.equal(w.layers[1]!.wDown.dtype, 'q4_0');
  });
});
