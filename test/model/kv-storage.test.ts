import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { blocksForMemory, createKvStorage, copyBlock, KvStorageError } from '../../src/model/kv-storage.js';
import type { ModelConfig } from '../../src/model/config.js';
import { kvBytesPerToken } from '../../src/util/kv-bytes.js';

const config: ModelConfig = {
  arch: 'llama', dim: 16, hiddenDim: 32, nLayers: 3, nHeads: 4, nKvHeads: 2, headDim: 4, vocabSize: 8,
  contextLength: 32, ropeTheta: 10000, ropeDim: 4, normEps: 1e-5, tiedEmbeddings: true,
};

describe('KV storage', () => {
  it('holds numBlocks*blockSize slots of nKvHeads*headDim floats per layer, K and V', () => {
    const kv = createKvStorage(config, 5, 4);
    assert.equal(kv.k.length, 3);
    assert.equal(kv.v.length, 3);
    for (const a of [...kv.k, ...kv.v]) assert.equal(a.length, 5 * 4 * 2 * 4);
    assert.deepEqual([kv.numBlocks, kv.blockSize, kv.nLayers, kv.nKvHeads, kv.headDim], [5, 4, 3, 2, 4]);
  });

  it('copyBlock copies one block in every layer and touches nothing else', () => {
    const kv = createKvStorage(config, 4, 2);
    const bf = 2 * 2 * 4; // floats per block
    kv.k.forEach((a, l) => a.forEach((_, i) => (a[i] = l * 1000 + i)));
    kv.v.forEach((a, l) => a.forEach((_, i) => (a[i] = -(l * 1000 + i))));
    copyBlock(kv, 1, 3);
    for (let l = 0; l < 3; l++) {
      for (let i = 0; i < bf; i++) {
        assert.equal(kv.k[l][3 * bf + i], l * 1000 + bf + i);
        assert.equal(kv.v[l][3 * bf + i], -(l * 1000 + bf + i));
      }
      // Blocks 0..2 unchanged.
      for (let i = 0; i < 3 * bf; i++) assert.equal(kv.k[l][i], l * 1000 + i);
    }
  });

  it('rejects bad sizes and block ids with clear errors', () => {
    assert.throws(() => createKvStorage(config, 0, 4), (e: Error) => e instanceof KvStorageError && /numBlocks must be a positive integer, got 0/.test(e.message));
    assert.throws(() => createKvStorage(config, 4, 1.5), /blockSize must be a positive integer, got 1.5/);
    assert.throws(() => createKvStorage(config, 2 ** 26, 256), /use fewer blocks/);
    const kv = createKvStorage(config, 4, 2);
    assert.throws(() => copyBlock(kv, 0, 4), /dst block 4 outside 0\.\.3/);
    assert.throws(() => copyBlock(kv, -1, 0), /src block -1/);
  });
});

describe('KV memory budget', () => {
  const budgetConfig: ModelConfig = {
    arch: 'llama', dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, headDim: 8,
    vocabSize: 512, contextLength: 512, ropeTheta: 10000, ropeDim: 8, normEps: 1e-5, tiedEmbeddings: true,
  };

  it('blocksForMemory converts bytes to whole blocks using kvBytesPerToken', () => {
    const perBlock = kvBytesPerToken(budgetConfig, 4) * 16; // 2*5*4*8*4 = 1280 bytes/token
    assert.equal(kvBytesPerToken(budgetConfig, 4), 1280);
    assert.equal(blocksForMemory(perBlock * 10, budgetConfig, 16), 10);
    assert.equal(blocksForMemory(perBlock * 10 - 1, budgetConfig, 16), 9);
    assert.equal(blocksForMemory(0, budgetConfig, 16), 0);
    assert.throws(() => blocksForMemory(-1, budgetConfig, 16), /non-negative/);
    assert.throws(() => blocksForMemory(1000, budgetConfig, 0), /block size/);
  });
});
