// The reference kernels against direct formulas, and their batch invariance at the kernel level.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { referenceKernels as K, KernelArgumentError } from '../../src/model/kernels/reference.js';
import { createKvStorage } from '../../src/model/kv-storage.js';
import type { WeightTensor } from '../../src/model/weights.js';
import type { ModelConfig } from '../../src/model/config.js';
import type { AttentionMeta } from '../../src/model/kernels/types.js';
import { f32ToF16, f16ToF32 } from '../../src/model/kernels/quant.js';
import { firstBitDifference, rng } from './ragged-batch.js';

function randomF32(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

function f32Tensor(values: Float32Array, rows: number, cols: number): WeightTensor {
  return { name: 'w', dtype: 'f32', rows, cols, data: new Uint8Array(values.buffer.slice(0)) };
}

describe('reference kernels', () => {
  it('matmul (f32) equals the textbook sum, and a row does not depend on the other rows', () => {
    const rows = 7; // not a multiple of 4: exercises the grouped and the tail paths
    const cols = 13;
    const W = randomF32(rows * cols, 1);
    const w = f32Tensor(W, rows, cols);
    const M = 5;
    const x = randomF32(M * cols, 2);
    const out = new Float32Array(M * rows);
    K.matmul(out, x, w, M);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < rows; n++) {
        let s = 0;
        for (let k = 0; k < cols; k++) s += x[m * cols + k] * W[n * cols + k];
        assert.ok(Math.abs(out[m * rows + n] - s) < 1e-6, `out[${m}][${n}]`);
      }
      // The same row alone (M = 1) gives the same bits.
      const alone = new Float32Array(rows);
      K.matmul(alone, x.slice(m * cols, (m + 1) * cols), w, 1);
      assert.equal(firstBitDifference(alone, out.slice(m * rows, (m + 1) * rows)), -1, `row ${m} alone`);
    }
  });

  it('matmul on f16 weights uses the dequantized values', () => {
    const rows = 4;
    const cols = 8;
    const W = randomF32(rows * cols, 3);
    const bytes = new Uint8Array(rows * cols * 2);
    const dv = new DataView(bytes.buffer);
    W.forEach((v, i) => dv.setUint16(i * 2, f32ToF16(v), true));
    const w: WeightTensor = { name: 'w16', dtype: 'f16', rows, cols, data: bytes };
    const x = randomF32(cols, 4);
    const out = new Float32Array(rows);
    K.matmul(out, x, w, 1);
    for (let n = 0; n < rows; n++) {
      let s = 0;
      for (let k = 0; k < cols; k++) s += x[k] * f16ToF32(f32ToF16(W[n * cols + k]));
      assert.ok(Math.abs(out[n] - s) < 1e-6, `out[${n}] ${out[n]} vs ${s}`);
    }
  });

  it('matmul names the mismatch when buffers are too small', () => {
    const w = f32Tensor(randomF32(6, 5), 2, 3);
    assert.throws(() => K.matmul(new Float32Array(4), new Float32Array(5), w, 2), (e: Error) => e instanceof KernelArgumentError && /x holds 5 floats/.test(e.message));
    assert.throws(() => K.matmul(new Float32Array(3), new Float32Array(6), w, 2), /out holds 3 floats/);
  });

  it('rmsnorm normalises each row by its own root mean square', () => {
    const dim = 6;
    const x = randomF32(2 * dim, 6);
    const weight = randomF32(dim, 7);
    const out = new Float32Array(2 * dim);
    K.rmsnorm(out, x, weight, 2, dim, 1e-5);
    for (let m = 0; m < 2; m++) {
      let ss = 0;
      for (let i = 0; i < dim; i++) ss += x[m * dim + i] ** 2;
      const scale = 1 / Math.sqrt(ss / dim + 1e-5);
      for (let i = 0; i < dim; i++) assert.ok(Math.abs(out[m * dim + i] - x[m * dim + i] * scale * weight[i]) < 1e-6);
    }
    // In place gives the same result.
    const y = x.slice();
    K.rmsnorm(y, y, weight, 2, dim, 1e-5);
    assert.equal(firstBitDifference(y, out), -1);
  });

  it('rope rotates adjacent pairs of the first ropeDim dims by pos * theta^(-2i/ropeDim)', () => {
    const nHeads = 2;
    const headDim = 8;
    const ropeDim = 4;
    const x = randomF32(2 * nHeads * headDim, 8);
    const orig = x.slice();
    K.rope(x, Int32Array.of(0, 5), 2, nHeads, headDim, ropeDim, 10000);
    // Position 0 is the identity.
    assert.equal(firstBitDifference(x.slice(0, nHeads * headDim), orig.slice(0, nHeads * headDim)), -1);
    for (let h = 0; h < nHeads; h++) {
      const o = nHeads * headDim + h * headDim;
      for (let i = 0; i < ropeDim / 2; i++) {
        const ang = 5 * Math.pow(10000, (-2 * i) / ropeDim);
        const a = orig[o + 2 * i];
        const b = orig[o + 2 * i + 1];
        assert.ok(Math.abs(x[o + 2 * i] - (a * Math.cos(ang) - b * Math.sin(ang))) < 1e-6);
        assert.ok(Math.abs(x[o + 2 * i + 1] - (a * Math.sin(ang) + b * Math.cos(ang))) < 1e-6);
      }
      // Dims past ropeDim are untouched.
      for (let d = ropeDim; d < headDim; d++) assert.equal(x[o + d], orig[o + d]);
    }
    assert.throws(() => K.rope(x, Int32Array.of(0, 1), 2, nHeads, headDim, 3, 10000), /ropeDim 3/);
  });

  it('siluMul, add and embed', () => {
    const g = Float32Array.of(-2, 0, 1.5);
    const u = Float32Array.of(3, 4, -1);
    const o = new Float32Array(3);
    K.siluMul(o, g, u, 3);
    g.forEach((v, i) => assert.ok(Math.abs(o[i] - (v / (1 + Math.exp(-v))) * u[i]) < 1e-6));
    const a = Float32Array.of(1, 2, 3);
    K.add(a, Float32Array.of(0.5, 0.5, 0.5), 3);
    assert.deepEqual([...a], [1.5, 2.5, 3.5]);
    const table = f32Tensor(Float32Array.from({ length: 12 }, (_, i) => i), 4, 3);
    const e = new Float32Array(6);
    K.embed(e, table, Int32Array.of(2, 0), 2);
    assert.deepEqual([...e], [6, 7, 8, 0, 1, 2]);
    assert.throws(() => K.embed(e, table, Int32Array.of(4, 0), 2), /token id 4 at row 0 is outside the vocabulary/);
  });

  describe('paged attention', () => {
    const config: ModelConfig = {
      arch: 'llama', dim: 16, hiddenDim: 32, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 4, vocabSize: 8,
      contextLength: 32, ropeTheta: 10000, ropeDim: 4, normEps: 1e-5, tiedEmbeddings: true,
    };
    const kvDim = config.nKvHeads * config.headDim;
    const qDim = config.nHeads * config.headDim;
    const T = 7; // one sequence of 7 tokens
    const keys = randomF32(T * kvDim, 10);
    const values = randomF32(T * kvDim, 11);
    const queries = randomF32(T * qDim, 12);

    /** Writes the sequence into storage with the given block size/table, then attends all T rows. */
    function attend(blockSize: number, table: number[], layer = 1): Float32Array {
      const kv = createKvStorage(config, 8, blockSize);
      const slots = Int32Array.from({ length: T }, (_, p) => table[Math.floor(p / blockSize)] * blockSize + (p % blockSize));
      const meta: AttentionMeta = { numRows: T, positions: Int32Array.from({ length: T }, (_, p) => p), rowSeq: new Int32Array(T), blockTables: Int32Array.from(table), maxBlocksPerSeq: table.length, slotMapping: slots };
      K.writeKv(kv, layer, keys, values, meta);
      const out = new Float32Array(T * qDim);
      K.attention(out, queries, kv, layer, meta, config.nHeads);
      return out;
    }

    it('equals causal softmax attention with grouped KV heads', () => {
      const out = attend(4, [3, 1]);
      for (let p = 0; p < T; p++) {
        for (let h = 0; h < config.nHeads; h++) {
          const kvh = Math.floor(h / 2);
          const s: number[] = [];
          for (let t = 0; t <= p; t++) {
            let d = 0;
            for (let i = 0; i < 4; i++) d += queries[p * qDim + h * 4 + i] * keys[t * kvDim + kvh * 4 + i];
            s.push(d / 2);
          }
          const mx = Math.max(...s);
          const e = s.map((v) => Math.exp(v - mx));
          const z = e.reduce((a, b) => a + b, 0);
          for (let i = 0; i < 4; i++) {
            let want = 0;
            for (let t = 0; t <= p; t++) want += (e[t] / z) * values[t * kvDim + kvh * 4 + i];
            assert.ok(Math.abs(out[p * qDim + h * 4 + i] - want) < 1e-6, `pos ${p} head ${h} dim ${i}`);
          }
        }
      }
    });

    it('gives the same bits for any block size and block placement', () => {
      const ref = attend(8, [0]);
      assert.equal(firstBitDifference(attend(1, [6, 2, 7, 0, 5, 1, 3]), ref), -1);
      assert.equal(firstBitDifference(attend(2, [7, 0, 3, 5]), ref), -1);
      assert.equal(firstBitDifference(attend(4, [1, 0], 0), ref), -1);
    });

    it('writeKv skips padding rows and rejects slots outside the cache', () => {
      const kv = createKvStorage(config, 2, 2);
      const meta: AttentionMeta = { numRows: 2, positions: Int32Array.of(0, 0), rowSeq: Int32Array.of(0, 0), blockTables: Int32Array.of(1), maxBlocksPerSeq: 1, slotMapping: Int32Array.of(-1, 3) };
      K.writeKv(kv, 0, keys, values, meta);
      assert.ok(kv.k[0].subarray(0, 3 * kvDim).every((v) => v === 0), 'padding row wrote nothing');
      assert.deepEqual([...kv.k[0].subarray(3 * kvDim, 4 * kvDim)], [...keys.subarray(kvDim, 2 * kvDim)]);
      assert.throws(() => K.writeKv(kv, 0, keys, values, { ...meta, slotMapping: Int32Array.of(4, 0) }), /row 0 maps to KV slot 4, outside 0\.\.3/);
      assert.throws(() => K.attention(new Float32Array(qDim), queries, kv, 0, { ...meta, numRows: 1, positions: Int32Array.of(2) }, 4), /position 2 needs 2 blocks/);
    });
  });
});
