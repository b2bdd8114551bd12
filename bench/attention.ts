// Paged attention benchmark: the native `attention` kernel at the 110m preset's shape (12 heads,
// head dim 64) on an f16 KV cache (the default), for a prompt (one sequence, every row of a
// 512-token prefill in one call) and for decode (32 sequences, one row each at position ~300).
//
//   npx tsx bench/attention.ts [--threads 1,2] [--prompt 512] [--seqs 32] [--context 300]
//                              [--kv-dtype f16] [--time-ms 1500] [--cases prefill,decode]
//
// Each measurement repeats the call for about --time-ms and reports the fastest run (the least
// disturbed on a shared machine). To compare builds, point STEPWISE_NATIVE_ADDON at another
// build's .node file and alternate the runs. GFLOP/s counts 4*headDim multiply-adds' FLOPs per
// (row, head, key): QK^T and PV, causal (row p sees p+1 keys). Not a test: nothing here asserts.

import { parseArgs } from 'node:util';

import type { ModelConfig } from '../src/model/config.js';
import { createNativeKernels, selectedNativeAddonPath, type NativeKernels } from '../src/model/kernels/native.js';
import type { KvCacheDtype } from '../src/model/kernels/kv-dtype.js';
import type { AttentionMeta } from '../src/model/kernels/types.js';
import { createKvStorage } from '../src/model/kv-storage.js';

const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: '1,2' },
    prompt: { type: 'string', default: '512' },
    seqs: { type: 'string', default: '32' },
    context: { type: 'string', default: '300' },
    'kv-dtype': { type: 'string', default: 'f16' },
    'time-ms': { type: 'string', default: '1500' },
    cases: { type: 'string', default: 'prefill,decode' },
  },
});
const nHeads = 12;
const headDim = 64;
const blockSize = 16;
const dtype = args['kv-dtype'] as KvCacheDtype;
const timeMs = Number(args['time-ms']);

/** Fastest of repeated runs of fn (ms), after one warm-up call. */
function fastest(fn: () => void, minRuns = 5): number {
  fn();
  let best = Infinity;
  const start = performance.now();
  for (let runs = 0; runs < minRuns || performance.now() - start < timeMs; runs++) {
    const t = performance.now();
    fn();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

/** A sine-filled value of width `n` (deterministic, varied enough for the softmax to be non-trivial). */
const wave = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * f));

/**
 * Times one attention call over `rows` (sequence, position) pairs, each sequence owning blocks of
 * its own, after writing `keys[s]` keys for every sequence s with writeKv. Returns ms and GFLOP/s.
 */
function timeAttention(k: NativeKernels, keys: number[], rows: Array<[number, number]>): { ms: number; gflops: number } {
  const config = { nLayers: 1, nKvHeads: nHeads, headDim } as ModelConfig;
  const blocksPer = Math.max(...keys.map((n) => Math.ceil(n / blockSize)));
  const kv = createKvStorage(config, keys.length * blocksPer, blockSize, dtype);
  const blockTables = Int32Array.from({ length: keys.length * blocksPer }, (_, i) => i);
  const width = nHeads * headDim;
  // Fill every sequence's keys: one writeKv call with all its positions.
  keys.forEach((n, s) => {
    const meta: AttentionMeta = {
      numRows: n, positions: Int32Array.from({ length: n }, (_, p) => p), rowSeq: new Int32Array(n).fill(s),
      blockTables, maxBlocksPerSeq: blocksPer, slotMapping: Int32Array.from({ length: n }, (_, p) => s * blocksPer * blockSize + p),
    };
    k.writeKv(kv, 0, wave(n * width, 0.37 + s * 1e-3), wave(n * width, 0.11 + s * 1e-3), meta);
  });
  const meta: AttentionMeta = {
    numRows: rows.length, positions: Int32Array.from(rows.map((r) => r[1])), rowSeq: Int32Array.from(rows.map((r) => r[0])),
    blockTables, maxBlocksPerSeq: blocksPer, slotMapping: new Int32Array(rows.length).fill(-1),
  };
  const q = wave(rows.length * width, 0.013);
  const out = new Float32Array(q.length);
  const ms = fastest(() => k.attention(out, q, kv, 0, meta, nHeads));
  const keyRows = rows.reduce((acc, [, p]) => acc + p + 1, 0);
  return { ms, gflops: (4 * keyRows * nHeads * headDim) / (ms / 1e3) / 1e9 };
}

const prompt = Number(args.prompt);
const seqs = Number(args.seqs);
const context = Number(args.context);
const cases = args.cases!.split(',');
console.log(`# Paged attention, ${nHeads} heads x ${headDim}, ${dtype} KV cache, addon ${selectedNativeAddonPath()}\n`);
console.log('| threads | case | ms | GFLOP/s |');
console.log('|---|---|---:|---:|');
for (const threads of args.threads!.split(',').map(Number)) {
  const k = createNativeKernels({ threads });
  if (cases.includes('prefill')) {
    const pre = timeAttention(k, [prompt], Array.from({ length: prompt }, (_, p): [number, number] => [0, p]));
    console.log(`| ${threads} | prefill ${prompt} rows, 1 seq | ${pre.ms.toFixed(3)} | ${pre.gflops.toFixed(1)} |`);
  }
  if (cases.includes('decode')) {
    // Positions spread a little around --context so sequences do not all end on one tile edge.
    const pos = Array.from({ length: seqs }, (_, s) => context - 8 + (s % 16));
    const dec = timeAttention(k, pos.map((p) => p + 1), pos.map((p, s): [number, number] => [s, p]));
    console.log(`| ${threads} | decode ${seqs} seq x 1 row at ~${context} | ${dec.ms.toFixed(3)} | ${dec.gflops.toFixed(1)} |`);
  }
  k.close();
}
