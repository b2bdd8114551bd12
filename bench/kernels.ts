// Kernel benchmark: GEMM throughput of the native kernels per weight type and batch size M at the
// shapes of the 110m preset (dim 768, hidden 2048, vocab 32000), with weights streamed from memory
// as in a real model; M=1 weight bandwidth against the machine's measured memory read bandwidth;
// and paged attention at decode.
//
//   npx tsx bench/kernels.ts [--threads N] [--dtypes f32,q8_0] [--ms 1,8,32,64] [--time-ms 150]
//   npx tsx bench/kernels.ts --forward [--dtypes f32,f16] [--context 128]
//   npx tsx bench/kernels.ts --prompt-scaling [--dtypes q8_0,q4_0] [--threads 2] [--rounds 7]
//
// --forward instead times whole forward passes (TransformerModel) of a random model with the 110m
// preset's shape: decode steps of 1..64 sequences and a 512-token prompt, as tokens per second.
// --prompt-scaling times that model's 512-token prompt on --threads threads against one thread,
// alternating pass by pass in one process (two kernel instances over the same weights), so the
// machine's slow and fast phases fall on both sides; it reports the medians and the median of the
// per-round ratios.
//
// Each measurement repeats the call for about --time-ms and reports the fastest run, which is the
// least disturbed by other work on a shared machine. Not a test: nothing here asserts.

import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';

import type { ModelConfig } from '../src/model/config.js';
import { createNativeKernels, type NativeKernels } from '../src/model/kernels/native.js';
import { createKvStorage } from '../src/model/kv-storage.js';
import { TransformerModel } from '../src/model/transformer.js';
import { decodeTokensPerSecond } from './forward-timing.js';
import type { AttentionMeta, KvStorage } from '../src/model/kernels/types.js';
import { DTYPES, quantize, rowBytes } from '../src/model/kernels/quant.js';
import type { DType, LlamaWeights, WeightTensor } from '../src/model/weights.js';

const SHAPES: Array<[rows: number, cols: number, what: string]> = [
  [768, 768, 'wq/wk/wv/wo'],
  [2048, 768, 'w1/w3 (gate/up)'],
  [768, 2048, 'w2 (down)'],
  [32000, 768, 'output'],
];

const { values: args } = parseArgs({
  options: {
    threads: { type: 'string', default: String(availableParallelism()) },
    dtypes: { type: 'string', default: DTYPES.join(',') },
    ms: { type: 'string', default: '1,8,32,64' },
    'time-ms': { type: 'string', default: '150' },
    forward: { type: 'boolean', default: false },
    'prompt-scaling': { type: 'boolean', default: false },
    rounds: { type: 'string', default: '7' },
    context: { type: 'string', default: '128' },
  },
});
const threads = Number(args.threads);
const dtypes = args.dtypes!.split(',') as DType[];
const Ms = args.ms!.split(',').map(Number);
const timeMs = Number(args['time-ms']);
for (const d of dtypes) if (!DTYPES.includes(d)) throw new Error(`unknown dtype ${d}; use ${DTYPES.join(',')}`);

/** Fastest of repeated runs of fn (ms), after one warm-up call. */
function fastest(fn: () => void, budgetMs = timeMs, minRuns = 3): number {
  fn();
  let best = Infinity;
  const start = performance.now();
  for (let runs = 0; runs < minRuns || performance.now() - start < budgetMs; runs++) {
    const t = performance.now();
    fn();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

/**
 * Copies of a rows x cols weight of smooth pseudo-random values (256 rows quantized once, then
 * tiled), enough of them to fill WORKING_SET bytes: the benchmark cycles through them, so weights
 * stream from memory as a whole model's do, instead of sitting in the 32 MiB L3 cache.
 */
const WORKING_SET = 128 * 2 ** 20;
function makeWeights(dtype: DType, rows: number, cols: number, count?: number): WeightTensor[] {
  const base = Math.min(256, rows);
  const v = Float32Array.from({ length: base * cols }, (_, i) => Math.sin(i * 0.7311) * 0.05);
  const q = quantize(dtype, v, base, cols);
  const rb = rowBytes(dtype, cols);
  const copies = count ?? Math.max(1, Math.ceil(WORKING_SET / (rows * rb)));
  return Array.from({ length: copies }, () => {
    const data = new Uint8Array(rows * rb);
    for (let r = 0; r < rows; r += base) data.set(q.subarray(0, Math.min(base, rows - r) * rb), r * rb);
    return { name: `${dtype} ${rows}x${cols}`, dtype, rows, cols, data };
  });
}

const probeBuffer = new Float32Array(64 * 2 ** 20).fill(1); // 256 MiB, far beyond the caches

/** The machine's memory read bandwidth now (GB/s): the fastest of `runs` reads of 256 MiB across the pool. */
function memoryBandwidth(k: NativeKernels, runs = 3): number {
  const ms = fastest(() => k.readBuffer(probeBuffer, 1), 0, runs);
  return probeBuffer.byteLength / (ms / 1e3) / 1e9;
}

/**
 * One-row GEMM bandwidth against the memory bound, measured alike and alternately. Alike: the bound
 * is a plain read (across the pool) of as many bytes as the weight, from a part of the probe buffer
 * that has not been read for a while, timed the way the GEMM is (the fastest call of a time budget:
 * the fastest of many short calls beats the average of one long read, so a 256 MiB read would not
 * be a fair bound). Alternately: this machine's read bandwidth wanders by 2x within minutes (a
 * shared VM), so each of ROUNDS rounds times the plain read, then the kernel; the figures are the
 * medians of the kernel's GB/s and of its per-round ratio.
 */
const ROUNDS = 7;
let probeOffset = 0;
function plainRead(k: NativeKernels, bytes: number): () => void {
  const n = Math.ceil(bytes / 64) * 16; // floats, whole cache lines
  return () => {
    if (probeOffset + n > probeBuffer.length) probeOffset = 0;
    k.readBuffer(probeBuffer.subarray(probeOffset, probeOffset + n), 1);
    probeOffset += n;
  };
}
function oneRowBandwidth(k: NativeKernels, call: () => void, bytes: number): { gbs: number; ratio: number } {
  const rates: number[] = [];
  const ratios: number[] = [];
  const read = plainRead(k, bytes);
  for (let r = 0; r < ROUNDS; r++) {
    const bound = bytes / (fastest(read, timeMs / ROUNDS) / 1e3) / 1e9;
    const rate = bytes / (fastest(call, timeMs / ROUNDS) / 1e3) / 1e9;
    rates.push(rate);
    ratios.push(rate / bound);
  }
  return { gbs: median(rates), ratio: median(ratios) };
}

function median(a: number[]): number {
  const s = [...a].sort((x, y) => x - y);
  return s[s.length >> 1]!;
}

function attentionBench(k: NativeKernels, rows: number, context: number): number {
  const nHeads = 12;
  const headDim = 64;
  const blockSize = 16;
  const blocksPer = Math.ceil(context / blockSize);
  const numBlocks = rows * blocksPer;
  const n = numBlocks * blockSize * nHeads * headDim;
  const kv: KvStorage = {
    numBlocks, blockSize, nLayers: 1, nKvHeads: nHeads, headDim,
    k: [Float32Array.from({ length: n }, (_, i) => Math.sin(i))], v: [Float32Array.from({ length: n }, (_, i) => Math.cos(i))],
  };
  const meta: AttentionMeta = {
    numRows: rows,
    positions: new Int32Array(rows).fill(context - 1),
    rowSeq: Int32Array.from({ length: rows }, (_, i) => i),
    blockTables: Int32Array.from({ length: numBlocks }, (_, i) => i),
    maxBlocksPerSeq: blocksPer,
    slotMapping: new Int32Array(rows).fill(-1),
  };
  const q = Float32Array.from({ length: rows * nHeads * headDim }, (_, i) => Math.sin(i * 0.1));
  const out = new Float32Array(q.length);
  const ms = fastest(() => k.attention(out, q, kv, 0, meta, nHeads));
  return (4 * rows * context * nHeads * headDim) / (ms / 1e3) / 1e9;
}

/** A random model with the 110m preset's shape (untied, 134M parameters). */
function randomModel(dtype: DType, k: NativeKernels): TransformerModel {
  const c: ModelConfig = {
    arch: 'llama', dim: 768, hiddenDim: 2048, nLayers: 12, nHeads: 12, nKvHeads: 12, headDim: 64, vocabSize: 32000,
    contextLength: 1024, ropeTheta: 10000, ropeDim: 64, normEps: 1e-5, tiedEmbeddings: false,
  };
  const w = (rows: number, cols: number) => makeWeights(dtype, rows, cols, 1)[0]!;
  const ones = () => new Float32Array(c.dim).fill(1);
  const weights: LlamaWeights = {
    tokenEmbedding: w(c.vocabSize, c.dim),
    layers: Array.from({ length: c.nLayers }, () => ({
      attnNorm: ones(), wq: w(768, 768), wk: w(768, 768), wv: w(768, 768), wo: w(768, 768),
      ffnNorm: ones(), wGate: w(2048, 768), wUp: w(2048, 768), wDown: w(768, 2048),
    })),
    outputNorm: ones(),
    output: w(c.vocabSize, c.dim),
  };
  return new TransformerModel(c, weights, k);
}

/** One n-token prompt in one forward pass (logits for the last row only): milliseconds. */
function promptPass(model: TransformerModel, n: number): number {
  const blockSize = 16;
  const blocks = Math.ceil(n / blockSize);
  const kv = promptKv.get(model) ?? createKvStorage(model.config, blocks, blockSize);
  promptKv.set(model, kv);
  const meta = {
    numRows: n, positions: Int32Array.from({ length: n }, (_, i) => i), rowSeq: new Int32Array(n),
    blockTables: Int32Array.from({ length: blocks }, (_, i) => i), maxBlocksPerSeq: blocks, slotMapping: Int32Array.from({ length: n }, (_, i) => i),
  };
  const tokens = Int32Array.from({ length: n }, (_, i) => (i * 31) % 32000);
  const t = performance.now();
  model.forward({ tokens, meta, logitRows: Int32Array.of(n - 1) }, kv);
  return performance.now() - t;
}
const promptKv = new WeakMap<TransformerModel, KvStorage>();

/** A 512-token prompt in one forward pass (logits for the last row only): best of 3, tokens/s. */
function prefillTokensPerSecond(model: TransformerModel, n: number): number {
  promptPass(model, n); // warm-up
  let best = Infinity;
  for (let r = 0; r < 3; r++) best = Math.min(best, promptPass(model, n));
  return (n / best) * 1e3;
}

if (args['prompt-scaling']) {
  const rounds = Number(args.rounds);
  const one = createNativeKernels({ threads: 1 });
  const many = createNativeKernels({ threads });
  console.log(`# 512-token prompt of a random 110m-shaped model: ${many.name} against 1 thread, ${rounds} alternating rounds\n`);
  console.log(`| dtype | 1 thread tok/s | ${threads} threads tok/s | ${threads} threads / 1 thread (median of rounds) | range |`);
  console.log('|---|---:|---:|---:|---|');
  for (const dtype of dtypes) {
    const a = randomModel(dtype, one);
    const b = new TransformerModel(a.config, a.weights, many);
    const pass = (m: TransformerModel) => promptPass(m, 512);
    pass(a);
    pass(b);
    const ta: number[] = [], tb: number[] = [], ratios: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const x = pass(a), y = pass(b);
      ta.push(x);
      tb.push(y);
      ratios.push(x / y);
    }
    const fmt = (ms: number) => ((512 / ms) * 1e3).toFixed(0);
    console.log(`| ${dtype} | ${fmt(median(ta))} | ${fmt(median(tb))} | ${median(ratios).toFixed(2)}x | ${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}x |`);
  }
  one.close();
  many.close();
  process.exit(0);
}

const k = createNativeKernels({ threads });
if (args.forward) {
  const context = Number(args.context);
  const seqs = [1, 4, 16, 32, 64];
  console.log(`# Forward passes of a random 110m-shaped model: ${k.name}, decode at context ${context}\n`);
  console.log(`| dtype | ${seqs.map((S) => `decode ${S} seq tok/s`).join(' | ')} | prompt 512 tok/s |`);
  console.log(`|---|${seqs.map(() => '---').join('|')}|---|`);
  for (const dtype of dtypes) {
    const model = randomModel(dtype, k);
    const cells = seqs.map((S) => decodeTokensPerSecond(model, S, context).toFixed(1));
    console.log(`| ${dtype} | ${cells.join(' | ')} | ${prefillTokensPerSecond(model, 512).toFixed(1)} |`);
  }
  k.close();
  process.exit(0);
}
console.log(`# Native kernels benchmark: ${k.name}\n`);
const bw = memoryBandwidth(k);
console.log(`Memory read bandwidth (256 MiB, ${threads} thread(s)): ${bw.toFixed(1)} GB/s at the start. The M=1 % column is`);
console.log(`against a plain read of the weight's size timed alike, the median of ${ROUNDS} alternating rounds.\n`);
const bounds: number[] = [];

const header = ['dtype', 'shape (rows x cols)', ...Ms.map((M) => `M=${M} GFLOP/s`), 'M=1 GB/s (% of memory)'];
console.log(`| ${header.join(' | ')} |`);
console.log(`|${header.map(() => '---').join('|')}|`);
for (const dtype of dtypes) {
  for (const [rows, cols, what] of SHAPES) {
    const ws = makeWeights(dtype, rows, cols);
    // One call per copy first: q4_0/q4_k copies are interleaved on first use (qrepack.cc), which
    // a model does at load, not per step.
    for (const w of ws) k.matmul(new Float32Array(rows), new Float32Array(cols), w, 1);
    const cells = [dtype, `${rows}x${cols} ${what}`];
    let gbs = '';
    for (const M of Ms) {
      const x = Float32Array.from({ length: M * cols }, (_, i) => Math.cos(i * 0.013));
      const out = new Float32Array(M * rows);
      let next = 0;
      const call = () => k.matmul(out, x, ws[next++ % ws.length]!, M);
      if (M === 1) {
        const bytes = ws[0]!.data.byteLength;
        const { gbs: rate, ratio } = oneRowBandwidth(k, call, bytes);
        bounds.push(rate / ratio);
        cells.push(((2 * rows * cols) / (bytes / rate)).toFixed(1));
        gbs = `${rate.toFixed(1)} (${(100 * ratio).toFixed(0)}%)`;
        continue;
      }
      const ms = fastest(call);
      cells.push(((2 * rows * cols * M) / (ms / 1e3) / 1e9).toFixed(1));
    }
    cells.push(gbs || '-');
    console.log(`| ${cells.join(' | ')} |`);
  }
}

if (bounds.length) console.log(`\nThe plain reads behind the M=1 rows (median of each row's rounds): ${Math.min(...bounds).toFixed(1)}-${Math.max(...bounds).toFixed(1)} GB/s.`);
console.log('\nPaged attention at decode (12 heads x 64, one row per sequence, key position = context-1):\n');
console.log('| rows | context | GFLOP/s |');
console.log('|---|---|---|');
for (const [rows, context] of [[1, 512], [32, 256], [64, 512]] as const) {
  console.log(`| ${rows} | ${context} | ${attentionBench(k, rows, context).toFixed(1)} |`);
}
k.close();
