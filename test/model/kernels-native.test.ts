// The native kernels against the TypeScript reference (within 1e-4, relative to max(1, |ref|)),
// and their batch invariance: a row's bits must not depend on M, on the other rows, on the
// thread count, on prompt chunking or on where its KV blocks sit.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { createNativeKernels, nativeUnavailableReason, type NativeKernels } from '../../src/model/kernels/native.js';
import { getKernels } from '../../src/model/kernels/index.js';
import { KernelArgumentError, referenceKernels as ref } from '../../src/model/kernels/reference.js';
import type { AttentionMeta, KvStorage } from '../../src/model/kernels/types.js';
import type { ModelConfig } from '../../src/model/config.js';
import { createKvStorage } from '../../src/model/kv-storage.js';
import { DTYPE_INFO, quantize } from '../../src/model/kernels/quant.js';
import type { DType, WeightTensor } from '../../src/model/weights.js';

const skip = nativeUnavailableReason() ?? false;
const DTYPES = Object.keys(DTYPE_INFO) as DType[];

/** mulberry32: small, seeded, deterministic. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

function weight(dtype: DType, rows: number, cols: number, seed: number): WeightTensor {
  return { name: `w_${dtype}_${rows}x${cols}`, dtype, rows, cols, data: quantize(dtype, randomF32(rows * cols, seed), rows, cols) };
}

/** Asserts |a - b| <= 1e-4 * max(1, |b|) everywhere (b is the reference). */
/** Index of the first element that differs (any amount), or -1. */
function firstDiff(a: Float32Array, b: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function assertClose(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  for (let i = 0; i < a.length; i++) {
    const tol = 1e-4 * Math.max(1, Math.abs(b[i]!));
    if (!(Math.abs(a[i]! - b[i]!) <= tol)) assert.fail(`${what}: element ${i} is ${a[i]}, reference ${b[i]}`);
  }
}

/** Asserts identical bits. */
function assertSameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) {
    if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i} differs (${a[i]} vs ${b[i]})`);
  }
}

function kvStorage(numBlocks: number, blockSize: number, nKvHeads: number, headDim: number, seed: number): KvStorage {
  const n = numBlocks * blockSize * nKvHeads * headDim;
  return { numBlocks, blockSize, nLayers: 2, nKvHeads, headDim, k: [new Float32Array(n), randomF32(n, seed)], v: [new Float32Array(n), randomF32(n, seed + 1)] };
}

/** Attention rows: each entry is (sequence, position); sequences' block tables given per sequence. */
function meta(rows: Array<[seq: number, pos: number]>, tables: number[][], blockSize: number): AttentionMeta {
  const maxBlocksPerSeq = Math.max(...tables.map((t) => t.length));
  const blockTables = new Int32Array(tables.length * maxBlocksPerSeq);
  tables.forEach((t, s) => blockTables.set(t, s * maxBlocksPerSeq));
  return {
    numRows: rows.length,
    positions: Int32Array.from(rows.map((r) => r[1])),
    rowSeq: Int32Array.from(rows.map((r) => r[0])),
    blockTables,
    maxBlocksPerSeq,
    slotMapping: Int32Array.from(rows.map(([s, p]) => tables[s]![Math.floor(p / blockSize)]! * blockSize + (p % blockSize))),
  };
}

describe('native kernels', { skip }, () => {
  let nk: NativeKernels;
  let nk1: NativeKernels;
  before(() => {
    nk = createNativeKernels({ threads: 2 });
    nk1 = createNativeKernels({ threads: 1 });
  });
  after(() => {
    nk.close();
    nk1.close();
  });

  it('are named after their SIMD path and thread count', () => {
    assert.match(nk.name, /^native-(avx512-vnni|avx2|scalar) \(2 threads\)$/);
    assert.match(nk1.name, /^native-(avx512-vnni|avx2|scalar) \(1 thread\)$/);
  });

  for (const dtype of DTYPES) {
    it(`matmul on ${dtype} weights matches the reference`, () => {
      const block = DTYPE_INFO[dtype].blockSize;
      // Odd row counts (tile remainders); a long row (> 1024: column blocking); for float types
      // a width that is not a multiple of 8 (the scalar tail).
      const shapes: Array<[rows: number, cols: number]> = [[37, Math.max(block, 64)], [9, 1280]];
      if (block === 1) shapes.push([6, 203]);
      // Quantized weights: a row of 12 superblocks (the integer GEMM's column blocks hold 8), and
      // for 32-element blocks a width that ends inside a superblock.
      else shapes.push([11, 3072], ...(block === 32 ? [[5, 1376] as [number, number]] : []));
      for (const [rows, cols] of shapes) {
        const w = weight(dtype, rows, cols, rows * 31 + cols);
        for (const M of [1, 5]) {
          const x = randomF32(M * cols, M + cols);
          const got = new Float32Array(M * rows);
          const want = new Float32Array(M * rows);
          nk.matmul(got, x, w, M);
          ref.matmul(want, x, w, M);
          assertClose(got, want, `${dtype} ${rows}x${cols} M=${M}`);
        }
      }
    });

    it(`matmul on ${dtype} weights gives each row the same bits for any M, batch position and thread count`, () => {
      const rows = 38;
      // Column-blocked (the float GEMM cuts at 1024, the integer one at 2048), so the parked
      // partial sums are covered too.
      const cols = DTYPE_INFO[dtype].blockSize === 1 ? 1280 : 2560;
      const w = weight(dtype, rows, cols, 99);
      const x = randomF32(64 * cols, 5);
      const full = new Float32Array(64 * rows);
      nk.matmul(full, x, w, 64);
      const row = (m: number) => full.subarray(m * rows, (m + 1) * rows);
      for (const m of [0, 36, 63]) {
        const alone = new Float32Array(rows);
        nk.matmul(alone, x.subarray(m * cols, (m + 1) * cols), w, 1);
        assertSameBits(alone, row(m), `${dtype} row ${m}: M=1 vs M=64`);
      }
      // Small batches (2-4 rows: the quantized GEMMs' few-row path) against the same rows of M=64.
      for (const [m0, n] of [[10, 2], [20, 3], [60, 4]] as const) {
        const few = new Float32Array(n * rows);
        nk.matmul(few, x.subarray(m0 * cols, (m0 + n) * cols), w, n);
        assertSameBits(few, full.subarray(m0 * rows, (m0 + n) * rows), `${dtype} rows ${m0}..${m0 + n - 1}: M=${n} vs M=64`);
      }
      // The first 37 rows as their own batch, and rows in reverse order (each lands in a
      // different tile position), on one thread.
      const part = new Float32Array(37 * rows);
      nk1.matmul(part, x.subarray(0, 37 * cols), w, 37);
      assertSameBits(part, full.subarray(0, 37 * rows), `${dtype}: M=37 on 1 thread vs M=64 on 2`);
      const reversed = new Float32Array(64 * cols);
      for (let m = 0; m < 64; m++) reversed.set(x.subarray(m * cols, (m + 1) * cols), (63 - m) * cols);
      const rout = new Float32Array(64 * rows);
      nk.matmul(rout, reversed, w, 64);
      for (let m = 0; m < 64; m++) assertSameBits(rout.subarray((63 - m) * rows, (64 - m) * rows), row(m), `${dtype} row ${m} reversed`);
    });

    it(`embed gathers ${dtype} rows like the reference`, () => {
      const cols = Math.max(64, DTYPE_INFO[dtype].blockSize);
      const table = weight(dtype, 50, cols, 7);
      const tokens = Int32Array.from([3, 0, 49, 3, 17]);
      const got = new Float32Array(tokens.length * cols);
      const want = new Float32Array(tokens.length * cols);
      nk.embed(got, table, tokens, tokens.length);
      ref.embed(want, table, tokens, tokens.length);
      assertClose(got, want, `embed ${dtype}`);
    });
  }

  it('matmul at the model shapes (768 wide, 32000 rows) matches the reference on sampled rows', () => {
    const w = weight('q8_0', 32000, 768, 3);
    const x = randomF32(2 * 768, 4);
    const got = new Float32Array(2 * 32000);
    nk.matmul(got, x, w, 2);
    // The reference on a slice of the rows (the whole matrix would take seconds in JavaScript).
    const rb = (768 / 32) * 34;
    for (const r0 of [0, 12345, 31990]) {
      const slice: WeightTensor = { name: 'slice', dtype: 'q8_0', rows: 10, cols: 768, data: w.data.subarray(r0 * rb, (r0 + 10) * rb) };
      const want = new Float32Array(2 * 10);
      ref.matmul(want, x, slice, 2);
      const g = Float32Array.from([...got.subarray(r0, r0 + 10), ...got.subarray(32000 + r0, 32000 + r0 + 10)]);
      assertClose(g, want, `rows ${r0}..${r0 + 9}`);
    }
  });

  it('rmsnorm, rope, siluMul and add match the reference', () => {
    const M = 3;
    const dim = 100;
    const x = randomF32(M * dim, 1, 3);
    const wn = randomF32(dim, 2);
    const a = new Float32Array(M * dim);
    const b = new Float32Array(M * dim);
    nk.rmsnorm(a, x, wn, M, dim, 1e-5);
    ref.rmsnorm(b, x, wn, M, dim, 1e-5);
    assertClose(a, b, 'rmsnorm');
    const inPlace = x.slice();
    nk.rmsnorm(inPlace, inPlace, wn, M, dim, 1e-5);
    assertSameBits(inPlace, a, 'rmsnorm in place');

    const nHeads = 4;
    const headDim = 16;
    const q1 = randomF32(M * nHeads * headDim, 3);
    const q2 = q1.slice();
    const positions = Int32Array.from([0, 7, 511]);
    for (const ropeDim of [16, 8]) {
      nk.rope(q1, positions, M, nHeads, headDim, ropeDim, 10000);
      ref.rope(q2, positions, M, nHeads, headDim, ropeDim, 10000);
      assertClose(q1, q2, `rope ropeDim=${ropeDim}`);
    }
    // NeoX pairs, Llama 3.1 frequency factors, linear scaling (and the tables kept for several bases).
    const factors = Float32Array.from({ length: 8 }, (_, i) => 1 + i * 1.5);
    for (const opts of [{ style: 'neox' as const }, { freqFactors: factors }, { style: 'neox' as const, freqScale: 0.125, freqFactors: factors }]) {
      for (const theta of [10000, 1e6, 10000]) {
        nk.rope(q1, positions, M, nHeads, headDim, 16, theta, opts);
        ref.rope(q2, positions, M, nHeads, headDim, 16, theta, opts);
        assertClose(q1, q2, `rope ${JSON.stringify({ ...opts, theta })}`);
      }
    }
    const q3 = randomF32(M * nHeads * headDim, 3);
    const q4 = q3.slice();
    ref.rope(q3, positions, M, nHeads, headDim, 16, 10000, { style: 'neox' });
    ref.rope(q4, positions, M, nHeads, headDim, 16, 10000);
    assert.ok(firstDiff(q3, q4) >= 0, 'the NeoX style rotates other pairs than the normal one');

    const n = 1003;
    const gate = randomF32(n, 4, 12);
    const up = randomF32(n, 5);
    const s1 = new Float32Array(n);
    const s2 = new Float32Array(n);
    nk.siluMul(s1, gate, up, n);
    ref.siluMul(s2, gate, up, n);
    assertClose(s1, s2, 'siluMul');
    const ge1 = new Float32Array(n);
    const ge2 = new Float32Array(n);
    nk.geluMul(ge1, gate, up, n);
    ref.geluMul(ge2, gate, up, n);
    assertClose(ge1, ge2, 'geluMul');
    const bias = randomF32(40, 9);
    const xb1 = randomF32(7 * 40, 10);
    const xb2 = xb1.slice();
    nk.addBias(xb1, bias, 7, 40);
    ref.addBias(xb2, bias, 7, 40);
    assertSameBits(xb1, xb2, 'addBias');
    const g2 = gate.slice();
    nk.siluMul(g2, g2, up, n);
    assertSameBits(g2, s1, 'siluMul in place');

    const o1 = randomF32(n, 6);
    const o2 = o1.slice();
    nk.add(o1, up, n);
    ref.add(o2, up, n);
    assertSameBits(o1, o2, 'add');
  });

  it('rope gives a position the same bits whether its angles come from the cached table or not', () => {
    const width = 2 * 64;
    const x = randomF32(4 * width, 8);
    const positions = Int32Array.from([5, 20000, -3, 3000]);
    const fresh = createNativeKernels({ threads: 1 });
    const results = [0, 1, 2, 3].map((m) => {
      const row = x.slice(m * width, (m + 1) * width);
      fresh.rope(row, positions.subarray(m, m + 1), 1, 2, 64, 64, 10000);
      return row;
    });
    fresh.close();
    const all = x.slice();
    nk.rope(all, positions, 4, 2, 64, 64, 10000); // the table has grown past 5 and 3000 by now
    const want = x.slice();
    ref.rope(want, positions, 4, 2, 64, 64, 10000);
    assertClose(all, want, 'rope at 5, 20000, -3, 3000');
    for (let m = 0; m < 4; m++) assertSameBits(results[m]!, all.subarray(m * width, (m + 1) * width), `position ${positions[m]}`);
  });

  it('a pool of more threads than cores (each thread owns a block of tasks; late ones are taken over) gives one thread\'s bits', () => {
    // 5 threads on a machine of 2 cores: some are always descheduled, so others finish their blocks
    // of tasks. Whoever runs a task, every kernel's result is the same.
    const k5 = createNativeKernels({ threads: 5 });
    try {
      const cols = 512;
      for (const dtype of ['f32', 'bf16', 'q8_0', 'q4_0', 'q4_k', 'q3_k'] as DType[]) {
        const w = weight(dtype, 200, cols, 400);
        for (const M of [1, 37, 130]) {
          const x = randomF32(M * cols, M + 11);
          const a = new Float32Array(M * w.rows);
          const b = new Float32Array(M * w.rows);
          for (let rep = 0; rep < 3; rep++) {
            k5.matmul(a, x, w, M);
            nk1.matmul(b, x, w, M);
            assertSameBits(a, b, `${dtype} M=${M} 5 threads vs 1, try ${rep}`);
          }
        }
      }
      const xs = randomF32(300 * 256, 9);
      const wn = randomF32(256, 10);
      const r5 = new Float32Array(xs.length);
      const r1 = new Float32Array(xs.length);
      k5.rmsnorm(r5, xs, wn, 300, 256, 1e-6);
      nk1.rmsnorm(r1, xs, wn, 300, 256, 1e-6);
      assertSameBits(r5, r1, 'rmsnorm 5 threads vs 1');
    } finally {
      k5.close();
    }
  });

  it('matmulMany gives every output the bits of its own matmul, on 1 and 2 threads, for every dtype and batch size', () => {
    // Parts whose row counts end mid-group and mid-tile, so one call's tasks cross part boundaries
    // (one row), tiles run part by part (a few rows) and each row share spans all parts (130 rows).
    const cols = 512;
    for (const dtype of DTYPES) {
      const ws = [96, 40, 200].map((rows, i) => weight(dtype, rows, cols, 300 + i));
      for (const M of [1, 3, 37, 130]) {
        const x = randomF32(M * cols, M + 7);
        for (const k of [nk, nk1]) {
          const outs = ws.map((w) => new Float32Array(M * w.rows));
          k.matmulMany!(outs, x, ws, M);
          ws.forEach((w, i) => {
            const alone = new Float32Array(M * w.rows);
            k.matmul(alone, x, w, M);
            assertSameBits(outs[i]!, alone, `${dtype} part ${i} M=${M} threads ${k.threads}`);
          });
        }
      }
    }
    // Weights of different types go one by one: the same bits still.
    const mixed = [weight('q4_k', 64, cols, 1), weight('q6_k', 32, cols, 2)];
    const x = randomF32(2 * cols, 5);
    const outs = mixed.map((w) => new Float32Array(2 * w.rows));
    nk.matmulMany!(outs, x, mixed, 2);
    mixed.forEach((w, i) => {
      const alone = new Float32Array(2 * w.rows);
      nk.matmul(alone, x, w, 2);
      assertSameBits(outs[i]!, alone, `mixed part ${i}`);
    });
    assert.throws(() => nk.matmulMany!([outs[0]!], x, mixed, 2), KernelArgumentError);
    assert.throws(() => nk.matmulMany!([outs[0]!, outs[0]!], x, [mixed[0]!, mixed[0]!], 2), /overlaps another output/);
    assert.throws(() => nk.matmulMany!([outs[0]!, new Float32Array(3)], x, [mixed[0]!, mixed[0]!], 2), /out holds 3 elements/);
  });

  it('rope matches the reference bit for bit in both styles, with partial rotary widths and a tail of pairs', () => {
    // The AVX-512 build rotates 8 pairs at a time in double, the rest one by one: same operations.
    for (const style of ['normal', 'neox'] as const) {
      for (const [nHeads, headDim, ropeDim] of [[4, 64, 64], [3, 32, 22], [2, 128, 64], [2, 40, 40]] as const) {
        const M = 37;
        const x = randomF32(M * nHeads * headDim, 17 + ropeDim);
        const positions = Int32Array.from({ length: M }, (_, i) => (i * 977) % 9000);
        const got = x.slice();
        const want = x.slice();
        nk.rope(got, positions, M, nHeads, headDim, ropeDim, 10000, { style });
        ref.rope(want, positions, M, nHeads, headDim, ropeDim, 10000, { style });
        assertSameBits(got, want, `rope ${style} ${nHeads}x${headDim}, ropeDim ${ropeDim}`);
      }
    }
  });

  it('elementwise kernels are row-invariant, including the sizes that leave a vector tail', () => {
    const width = 172; // not a multiple of 8, like stories260K's hidden size
    const gate = randomF32(3 * width, 1, 8);
    const up = randomF32(3 * width, 2);
    const all = new Float32Array(3 * width);
    nk.siluMul(all, gate, up, 3 * width);
    for (let m = 0; m < 3; m++) {
      const one = new Float32Array(width);
      nk1.siluMul(one, gate.subarray(m * width, (m + 1) * width), up.subarray(m * width, (m + 1) * width), width);
      assertSameBits(one, all.subarray(m * width, (m + 1) * width), `siluMul row ${m}`);
    }
    // Big enough to be split across threads.
    const big = 300 * width;
    const bg = randomF32(big, 3, 8);
    const bu = randomF32(big, 4);
    const t2 = new Float32Array(big);
    const t1 = new Float32Array(big);
    nk.siluMul(t2, bg, bu, big);
    nk1.siluMul(t1, bg, bu, big);
    assertSameBits(t2, t1, 'siluMul 2 threads vs 1');
    const xs = randomF32(300 * 64, 5);
    const wn = randomF32(64, 6);
    const r2 = new Float32Array(xs.length);
    const r1 = new Float32Array(64);
    nk.rmsnorm(r2, xs, wn, 300, 64, 1e-6);
    nk1.rmsnorm(r1, xs.subarray(299 * 64), wn, 1, 64, 1e-6);
    assertSameBits(r1, r2.subarray(299 * 64), 'rmsnorm last row alone');
  });

  it('writeKv stores rows in their slots and skips padding rows', () => {
    const kv = kvStorage(4, 4, 2, 8, 1);
    const kv2 = kvStorage(4, 4, 2, 8, 1);
    const m = meta([[0, 0], [0, 5], [1, 2]], [[3, 1], [0]], 4);
    m.slotMapping[1] = -1;
    const k = randomF32(3 * 16, 2);
    const v = randomF32(3 * 16, 3);
    nk.writeKv(kv, 1, k, v, m);
    ref.writeKv(kv2, 1, k, v, m);
    assertSameBits(kv.k[1]!, kv2.k[1]!, 'K');
    assertSameBits(kv.v[1]!, kv2.v[1]!, 'V');
  });

  for (const [nHeads, nKvHeads, headDim] of [[8, 2, 16], [6, 6, 12], [4, 1, 64]] as const) {
    it(`attention matches the reference (${nHeads} heads, ${nKvHeads} KV heads, head width ${headDim})`, () => {
      const blockSize = 4;
      const kv = kvStorage(24, blockSize, nKvHeads, headDim, 11);
      // Three sequences with scattered blocks; rows at the start, inside and at the end of blocks.
      const tables = [[5, 2, 9, 7, 0, 11, 13, 1, 3, 4], [8, 6], [10, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]];
      const rows: Array<[number, number]> = [[0, 0], [0, 1], [0, 8], [0, 39], [1, 3], [1, 7], [2, 20], [2, 47]];
      const m = meta(rows, tables, blockSize);
      const q = randomF32(rows.length * nHeads * headDim, 12, 2);
      const got = new Float32Array(q.length);
      const want = new Float32Array(q.length);
      nk.attention(got, q, kv, 1, m, nHeads);
      ref.attention(want, q, kv, 1, m, nHeads);
      assertClose(got, want, 'attention');
      // Sliding windows (one shorter than a tile, one across tiles) and a custom scale.
      for (const opts of [{ window: 3 }, { window: 13, scale: 0.2 }, { scale: 0.05 }]) {
        nk.attention(got, q, kv, 1, m, nHeads, opts);
        ref.attention(want, q, kv, 1, m, nHeads, opts);
        assertClose(got, want, `attention ${JSON.stringify(opts)}`);
      }
      const full = new Float32Array(q.length);
      ref.attention(full, q, kv, 1, m, nHeads);
      assert.ok(firstDiff(want, full) >= 0, 'the options change the result');
    });
  }

  for (const dtype of ['f16', 'q8_0'] as const) {
    it(`a ${dtype} KV cache: writeKv stores the reference's bytes, attention matches the reference, rows stay batch invariant`, () => {
      const [nHeads, nKvHeads, headDim, blockSize] = [8, 2, 64, 4];
      const kvDim = nKvHeads * headDim;
      const make = () => createKvStorage({ nLayers: 2, nKvHeads, headDim } as ModelConfig, 12, blockSize, dtype);
      const a = make();
      const b = make();
      const tables = [[5, 2, 9, 7, 0, 11], [8, 6, 1]];
      const pos: Array<[number, number]> = [];
      for (let p = 0; p < 23; p++) pos.push([0, p]);
      for (let p = 0; p < 10; p++) pos.push([1, p]);
      const m = meta(pos, tables, blockSize);
      // Values with a wide range, a few exact halves' ties and zeros, so rounding paths are exercised.
      const k = randomF32(pos.length * kvDim, 31, 4);
      const v = randomF32(pos.length * kvDim, 32, 4);
      k.fill(0, 0, 32);
      k[40] = 1.00048828125; // half-way between two halves
      nk.writeKv(a, 1, k, v, m);
      ref.writeKv(b, 1, k, v, m);
      assert.deepEqual(new Uint8Array(a.k[1]!.buffer), new Uint8Array(b.k[1]!.buffer), 'K bytes');
      assert.deepEqual(new Uint8Array(a.v[1]!.buffer), new Uint8Array(b.v[1]!.buffer), 'V bytes');
      const rows: Array<[number, number]> = [[0, 0], [0, 9], [0, 22], [1, 3], [1, 9]];
      const q = randomF32(rows.length * nHeads * headDim, 33, 2);
      const got = new Float32Array(q.length);
      const want = new Float32Array(q.length);
      nk.attention(got, q, a, 1, meta(rows, tables, blockSize), nHeads);
      ref.attention(want, q, b, 1, meta(rows, tables, blockSize), nHeads);
      assertClose(got, want, `attention over ${dtype}`);
      // The f32 cache of the same rows gives (slightly) different numbers: the dtype is really used.
      const f = createKvStorage({ nLayers: 2, nKvHeads, headDim } as ModelConfig, 12, blockSize, 'f32');
      ref.writeKv(f, 1, k, v, m);
      const fwant = new Float32Array(q.length);
      ref.attention(fwant, q, f, 1, meta(rows, tables, blockSize), nHeads);
      assert.ok(firstDiff(fwant, want) >= 0, 'f32 and the quantized cache differ');
      // One row alone, on one thread, gives the bits it had in the batch.
      const one = new Float32Array(nHeads * headDim);
      nk1.attention(one, q.subarray(2 * nHeads * headDim, 3 * nHeads * headDim), a, 1, meta([[0, 22]], tables, blockSize), nHeads);
      assertSameBits(one, got.subarray(2 * nHeads * headDim, 3 * nHeads * headDim), 'row alone');
    });
  }

  it('a q8_0 KV cache refuses head widths that are not a multiple of 32', () => {
    assert.throws(() => createKvStorage({ nLayers: 1, nKvHeads: 2, headDim: 48 } as ModelConfig, 4, 4, 'q8_0'), /q8_0 KV cache needs a head dimension that is a multiple of 32, this model's is 48/);
  });

  it('attention gives each row the same bits however the prompt is chunked, batched, threaded or paged', () => {
    const nHeads = 8;
    const nKvHeads = 4;
    const headDim = 32;
    const blockSize = 8;
    const width = nHeads * headDim;
    const kv = kvStorage(16, blockSize, nKvHeads, headDim, 21);
    const table = [3, 9, 1, 14, 6, 0, 11];
    const n = 53;
    const q = randomF32(n * width, 22);
    // The whole prompt at once, with two threads.
    const whole = new Float32Array(n * width);
    nk.attention(whole, q, kv, 1, meta(Array.from({ length: n }, (_, p) => [0, p]), [table], blockSize), nHeads);
    // In chunks of 10, 1, 25 and 17 rows, on one thread, each chunk beside an unrelated sequence.
    let p0 = 0;
    for (const len of [10, 1, 25, 17]) {
      const rows: Array<[number, number]> = [[1, 30], ...Array.from({ length: len }, (_, i): [number, number] => [0, p0 + i])];
      const qb = new Float32Array(rows.length * width);
      qb.set(randomF32(width, 99));
      qb.set(q.subarray(p0 * width, (p0 + len) * width), width);
      const out = new Float32Array(rows.length * width);
      nk1.attention(out, qb, kv, 1, meta(rows, [table, [2, 4, 5, 7]], blockSize), nHeads);
      assertSameBits(out.subarray(width), whole.subarray(p0 * width, (p0 + len) * width), `chunk at ${p0}`);
      p0 += len;
    }
    // The same keys and values copied into other physical blocks give the same bits.
    const moved = [8, 2, 13, 5, 10, 12, 15];
    const blockFloats = blockSize * nKvHeads * headDim;
    for (let b = 0; b < table.length; b++) {
      kv.k[1]!.copyWithin(moved[b]! * blockFloats, table[b]! * blockFloats, (table[b]! + 1) * blockFloats);
      kv.v[1]!.copyWithin(moved[b]! * blockFloats, table[b]! * blockFloats, (table[b]! + 1) * blockFloats);
    }
    const last = new Float32Array(width);
    nk.attention(last, q.subarray((n - 1) * width), kv, 1, meta([[0, n - 1]], [moved], blockSize), nHeads);
    assertSameBits(last, whole.subarray((n - 1) * width), 'moved blocks');
  });

  for (const dtype of ['f32', 'f16', 'q8_0'] as const) {
    it(`a 40-row prompt with a sliding window over a ${dtype} cache gives each row the same bits however it is chunked (grouped-query heads, a head width with a tail)`, () => {
      // 3 query heads per KV head; width 40 leaves a tail after whole 16- and 8-lane chunks (q8_0
      // needs a multiple of 32). A window of 13 starts inside a key tile for most rows.
      const [nHeads, nKvHeads, headDim, blockSize, n, window] = [6, 2, dtype === 'q8_0' ? 64 : 40, 8, 40, 13];
      const width = nHeads * headDim;
      const kvDim = nKvHeads * headDim;
      const kv = createKvStorage({ nLayers: 1, nKvHeads, headDim } as ModelConfig, 8, blockSize, dtype);
      const table = [4, 0, 6, 2, 5];
      const other = [1, 3];  // an unrelated sequence, 9 keys
      const keyRows: Array<[number, number]> = [
        ...Array.from({ length: n }, (_, p): [number, number] => [0, p]),
        ...Array.from({ length: 9 }, (_, p): [number, number] => [1, p]),
      ];
      const all = meta(keyRows, [table, other], blockSize);
      nk.writeKv(kv, 0, randomF32(keyRows.length * kvDim, 41, 3), randomF32(keyRows.length * kvDim, 42), all);
      const q = randomF32(n * width, 43, 2);
      const rows = (from: number, len: number) => Array.from({ length: len }, (_, i): [number, number] => [0, from + i]);
      const whole = new Float32Array(n * width);
      nk.attention(whole, q, kv, 0, meta(rows(0, n), [table, other], blockSize), nHeads, { window });
      const want = new Float32Array(n * width);
      ref.attention(want, q, kv, 0, meta(rows(0, n), [table, other], blockSize), nHeads, { window });
      assertClose(whole, want, `attention over ${dtype} with a window`);
      // Chunks of 1, 5, 17 and 17 rows on one thread, each after a row of the other sequence.
      let p0 = 0;
      for (const len of [1, 5, 17, 17]) {
        const qb = new Float32Array((len + 1) * width);
        qb.set(randomF32(width, 44));
        qb.set(q.subarray(p0 * width, (p0 + len) * width), width);
        const out = new Float32Array(qb.length);
        nk1.attention(out, qb, kv, 0, meta([[1, 8], ...rows(p0, len)], [table, other], blockSize), nHeads, { window });
        assertSameBits(out.subarray(width), whole.subarray(p0 * width, (p0 + len) * width), `${dtype} chunk at ${p0}`);
        p0 += len;
      }
      // Rows alone, as decode steps: at the start, across the window's first tile edge, at the end.
      for (const p of [0, 12, 13, 21, 39]) {
        const one = new Float32Array(width);
        nk.attention(one, q.subarray(p * width, (p + 1) * width), kv, 0, meta([[0, p]], [table, other], blockSize), nHeads, { window });
        assertSameBits(one, whole.subarray(p * width, (p + 1) * width), `${dtype} row ${p} alone`);
      }
    });
  }

  it('reject bad arguments with a KernelArgumentError naming the problem', () => {
    const w = weight('f32', 4, 8, 1);
    const isArg = (re: RegExp) => (e: unknown) => e instanceof KernelArgumentError && re.test((e as Error).message);
    assert.throws(() => nk.matmul(new Float32Array(8), new Float32Array(15), w, 2), isArg(/^matmul: x holds 15 elements, 2 rows of weight w_f32_4x8's input width 8 need 16$/));
    assert.throws(() => nk.matmul(new Float32Array(7), new Float32Array(16), w, 2), isArg(/out holds 7 elements/));
    assert.throws(() => nk.matmul(new Float32Array(8), new Float32Array(16), { ...w, data: w.data.subarray(0, 100) }, 2), isArg(/holds 100 bytes, f32 4x8 needs 128/));
    assert.throws(() => nk.matmul(new Float32Array(8), new Float32Array(16), { ...w, dtype: 'q9' as DType }, 2), isArg(/unsupported dtype q9/));
    assert.throws(() => nk.matmul(new Float32Array(8), new Float32Array(16), { ...w, dtype: 'q8_0' }, 2), isArg(/8 columns, not a multiple of the q8_0 block size 32/));
    const shared = new Float32Array(32);
    assert.throws(() => nk.matmul(shared.subarray(0, 8), shared.subarray(4, 20), w, 2), isArg(/out and x overlap/));
    assert.throws(() => nk.matmul(new Float32Array(8), new Float32Array(16), w, 1.5), isArg(/M must be an integer >= 0, got 1.5/));
    assert.throws(() => nk.matmul(new Float32Array(8), new Float64Array(16) as unknown as Float32Array, w, 2), isArg(/x must be a Float32Array/));
    assert.throws(() => nk.embed(new Float32Array(16), w, Int32Array.from([1, 4]), 2), isArg(/^embed: token id 4 at row 1 is outside the vocabulary \(0..3\)$/));
    assert.throws(() => nk.rope(new Float32Array(16), new Int32Array(1), 1, 1, 16, 7, 1e4), isArg(/ropeDim 7 must be even/));
    assert.throws(() => nk.rmsnorm(new Float32Array(8), new Float32Array(8), new Float32Array(3), 2, 4, 1e-5), isArg(/weight holds 3 elements, dim 4 need 4/));
    assert.throws(() => nk.siluMul(new Float32Array(4), new Float32Array(4), new Float32Array(3), 4), isArg(/up holds 3 elements/));

    const kv = kvStorage(4, 4, 2, 8, 1);
    const m = meta([[0, 5]], [[3, 1]], 4);
    assert.throws(() => nk.attention(new Float32Array(32), new Float32Array(32), kv, 2, m, 2), isArg(/^attention: layer 2 outside 0..1$/));
    assert.throws(() => nk.attention(new Float32Array(32), new Float32Array(32), kv, 1, m, 3), isArg(/nHeads 3 is not a multiple of nKvHeads 2/));
    assert.throws(() => nk.attention(new Float32Array(32), new Float32Array(32), kv, 1, meta([[0, 5]], [[3, 4]], 4), 2), isArg(/uses block 4 at table index 1, outside 0..3/));
    assert.throws(() => nk.attention(new Float32Array(32), new Float32Array(32), kv, 1, { ...m, positions: Int32Array.from([8]) }, 2), isArg(/position 8 needs 3 blocks, block tables hold 2/));
    assert.throws(() => nk.attention(new Float32Array(32), new Float32Array(32), kv, 1, { ...m, rowSeq: Int32Array.from([1]) }, 2), isArg(/belongs to sequence 1, but block tables hold 1/));
    assert.throws(() => nk.writeKv(kv, 0, new Float32Array(16), new Float32Array(16), { ...m, slotMapping: Int32Array.from([16]) }), isArg(/^writeKv: row 0 maps to KV slot 16, outside 0..15$/));
  });

  it('throw a plain error once closed', () => {
    const k = createNativeKernels({ threads: 2 });
    k.close();
    assert.throws(() => k.add(new Float32Array(1), new Float32Array(1), 1), (e: Error) => !(e instanceof KernelArgumentError) && /closed/.test(e.message));
  });
});

describe('getKernels', () => {
  it('returns the reference kernels for typescript and rejects unknown backends and thread counts', async () => {
    assert.equal(await getKernels('typescript'), ref);
    await assert.rejects(getKernels('gpu' as 'auto'), /unknown kernel backend 'gpu'/);
    await assert.rejects(getKernels('auto', { threads: 0 }), /threads must be an integer from 1 to 256, got 0/);
  });

  it('returns the native kernels for native and auto when the addon is built', { skip }, async () => {
    const n = await getKernels('native', { threads: 1 });
    assert.match(n.name, /^native-.* \(1 thread\)$/);
    const a = await getKernels('auto');
    assert.match(a.name, /^native-/);
  });
});
