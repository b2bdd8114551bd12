// Test helpers: drive TransformerModel over hand-made ragged batches on a paged KV cache, recording the
// logits of every row, so different schedules of the same token streams can be compared.

import { TransformerModel } from '../../src/model/transformer.js';
import { createKvStorage } from '../../src/model/kv-storage.js';
import type { KvStorage } from '../../src/model/kernels/types.js';

/** Small deterministic PRNG (mulberry32) for token ids and block shuffles. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomTokens(n: number, vocab: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * vocab));
}

/** One step's share of a sequence: feed its next `n` tokens. */
export interface Chunk {
  seq: number;
  n: number;
}

/**
 * Feeds every sequence's tokens to the model following `plan` (one entry per step) and returns, per
 * sequence, the logits row computed at each of its positions. Blocks come from a shuffled pool so
 * block tables are scattered, as they are under a real allocator.
 */
export function runPlan(model: TransformerModel, streams: number[][], plan: Chunk[][], blockSize: number, shuffleSeed = 7): Float32Array[][] {
  const vocab = model.config.vocabSize;
  const blocksPer = streams.map((s) => Math.ceil(s.length / blockSize));
  const numBlocks = blocksPer.reduce((a, b) => a + b, 0);
  const kv: KvStorage = createKvStorage(model.config, numBlocks, blockSize);
  const pool = Array.from({ length: numBlocks }, (_, i) => i);
  const r = rng(shuffleSeed);
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  const tables = blocksPer.map((n) => pool.splice(0, n));
  const done = streams.map(() => 0);
  const out: Float32Array[][] = streams.map(() => []);

  for (const step of plan) {
    const maxBlocks = Math.max(...step.map((c) => tables[c.seq].length));
    const numRows = step.reduce((a, c) => a + c.n, 0);
    const tokens = new Int32Array(numRows);
    const positions = new Int32Array(numRows);
    const rowSeq = new Int32Array(numRows);
    const slotMapping = new Int32Array(numRows);
    const blockTables = new Int32Array(step.length * maxBlocks);
    const owner: Array<[seq: number, pos: number]> = [];
    let row = 0;
    step.forEach((c, i) => {
      blockTables.set(tables[c.seq], i * maxBlocks);
      for (let j = 0; j < c.n; j++, row++) {
        const pos = done[c.seq] + j;
        tokens[row] = streams[c.seq][pos];
        positions[row] = pos;
        rowSeq[row] = i;
        slotMapping[row] = tables[c.seq][Math.floor(pos / blockSize)] * blockSize + (pos % blockSize);
        owner.push([c.seq, pos]);
      }
      done[c.seq] += c.n;
    });
    const logitRows = Int32Array.from({ length: numRows }, (_, i) => i);
    const logits = model.forward({ tokens, logitRows, meta: { numRows, positions, rowSeq, blockTables, maxBlocksPerSeq: maxBlocks, slotMapping } }, kv);
    owner.forEach(([seq, pos], i) => {
      out[seq][pos] = logits.slice(i * vocab, (i + 1) * vocab);
    });
  }
  return out;
}

/** Index of the first element where two float arrays differ bit for bit, or -1. */
export function firstBitDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
