// The reference kernels: plain TypeScript, written to be read. They are the oracle the native kernels
// are checked against, and the backend used wherever the addon is not built.
//
// Batch invariance (see types.ts) holds by construction: every reduction for a row (a dot product,
// a sum of squares, an attention softmax) runs over that row's data alone, in one fixed order, so the
// result cannot depend on M, on the other rows, or on how a prompt was chunked. Arithmetic happens in
// JavaScript doubles and is rounded to float32 once on store; JS never fuses multiply-adds, so the
// same inputs always give the same bits.

import type { AttentionMeta, AttentionOptions, Kernels, KvStorage, RopeOptions } from './types.js';
import type { WeightTensor } from './tensor.js';
import { dequantizeRow } from './quant.js';
import { ACTIVATION_GROUP, quantizeActivations } from './activation-quant.js';
import { encodeKvRow, readKvRow } from './kv-dtype.js';

/** Thrown when a kernel is called with buffers or indices that do not fit together. */
export class KernelArgumentError extends Error {
  constructor(kernel: string, message: string) {
    super(`${kernel}: ${message}`);
    this.name = 'KernelArgumentError';
  }
}

// Float32 copies of weight matrices, made once per tensor. For f32 this is usually a view of the
// file's bytes (no copy); for f16/bf16/quantized types the whole matrix is dequantized once, which
// trades memory for a matmul that is a plain float loop. Keyed weakly so a dropped model frees them.
const f32Cache = new WeakMap<WeightTensor, Float32Array>();

function checkShape(kernel: string, w: WeightTensor): void {
  if (!Number.isInteger(w.rows) || !Number.isInteger(w.cols) || w.rows <= 0 || w.cols <= 0) {
    throw new KernelArgumentError(kernel, `weight ${w.name} has invalid shape ${w.rows}x${w.cols}`);
  }
}

/** The whole matrix as float32, row-major [rows x cols]. */
export function weightAsF32(w: WeightTensor): Float32Array {
  const cached = f32Cache.get(w);
  if (cached) return cached;
  checkShape('weightAsF32', w);
  const n = w.rows * w.cols;
  let out: Float32Array;
  if (w.dtype === 'f32') {
    if (w.data.byteLength < n * 4) {
      throw new KernelArgumentError('weightAsF32', `weight ${w.name} holds ${w.data.byteLength} bytes, f32 ${w.rows}x${w.cols} needs ${n * 4}`);
    }
    // A typed-array view needs 4-byte alignment; copy when the tensor sits at an odd offset.
    out = w.data.byteOffset % 4 === 0
      ? new Float32Array(w.data.buffer, w.data.byteOffset, n)
      : new Float32Array(w.data.slice(0, n * 4).buffer);
  } else {
    out = new Float32Array(n);
    for (let r = 0; r < w.rows; r++) dequantizeRow(w, r, out.subarray(r * w.cols, (r + 1) * w.cols));
  }
  f32Cache.set(w, out);
  return out;
}

// Scratch reused across calls: JavaScript is single-threaded per isolate, so one set per module is safe.
let scoreScratch = new Float64Array(256);
let slotScratch = new Int32Array(256);
let accScratch = new Float64Array(128);
let rowScratch = new Float32Array(128); // one decoded K or V head row (f16 / q8_0 caches)

function matmul(out: Float32Array, xIn: Float32Array, w: WeightTensor, M: number): void {
  const rows = w.rows;
  const cols = w.cols;
  if (xIn.length < M * cols) throw new KernelArgumentError('matmul', `x holds ${xIn.length} floats, ${M} rows of ${w.name} input width ${cols} need ${M * cols}`);
  if (out.length < M * rows) throw new KernelArgumentError('matmul', `out holds ${out.length} floats, ${M} rows of ${w.name} output width ${rows} need ${M * rows}`);
  const W = weightAsF32(w);
  // Quantized weights meet int8-rounded activations, as in the native kernels and llama.cpp.
  const group = ACTIVATION_GROUP[w.dtype];
  const x = group ? quantizeActivations(xIn, M, cols, group) : xIn;
  // Register tiles of 2 input rows x 4 weight rows: each weight and input element loaded once feeds
  // several independent dot products (eight dependency chains for the CPU to overlap), which about
  // halves the loads per multiply-add. Tiling never changes a result: every dot product is its own
  // single accumulator walking k = 0..cols-1 in order, whichever tile or tail computes it.
  const n4 = rows - (rows % 4);
  for (let n = 0; n < n4; n += 4) {
    const o0 = n * cols;
    const o1 = o0 + cols;
    const o2 = o1 + cols;
    const o3 = o2 + cols;
    let m = 0;
    for (; m + 1 < M; m += 2) {
      const xa = m * cols;
      const xb = xa + cols;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      let b0 = 0, b1 = 0, b2 = 0, b3 = 0;
      for (let k = 0; k < cols; k++) {
        const w0 = W[o0 + k];
        const w1 = W[o1 + k];
        const w2 = W[o2 + k];
        const w3 = W[o3 + k];
        const u = x[xa + k];
        const v = x[xb + k];
        a0 += u * w0;
        a1 += u * w1;
        a2 += u * w2;
        a3 += u * w3;
        b0 += v * w0;
        b1 += v * w1;
        b2 += v * w2;
        b3 += v * w3;
      }
      const oa = m * rows + n;
      const ob = oa + rows;
      out[oa] = a0;
      out[oa + 1] = a1;
      out[oa + 2] = a2;
      out[oa + 3] = a3;
      out[ob] = b0;
      out[ob + 1] = b1;
      out[ob + 2] = b2;
      out[ob + 3] = b3;
    }
    for (; m < M; m++) {
      const xo = m * cols;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (let k = 0; k < cols; k++) {
        const u = x[xo + k];
        a0 += u * W[o0 + k];
        a1 += u * W[o1 + k];
        a2 += u * W[o2 + k];
        a3 += u * W[o3 + k];
      }
      const oo = m * rows + n;
      out[oo] = a0;
      out[oo + 1] = a1;
      out[oo + 2] = a2;
      out[oo + 3] = a3;
    }
  }
  for (let n = n4; n < rows; n++) {
    const wo = n * cols;
    for (let m = 0; m < M; m++) {
      const xo = m * cols;
      let a = 0;
      for (let k = 0; k < cols; k++) a += x[xo + k] * W[wo + k];
      out[m * rows + n] = a;
    }
  }
}

function rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, M: number, dim: number, eps: number): void {
  if (x.length < M * dim || out.length < M * dim) throw new KernelArgumentError('rmsnorm', `buffers hold ${x.length}/${out.length} floats, ${M} rows of ${dim} need ${M * dim}`);
  if (weight.length < dim) throw new KernelArgumentError('rmsnorm', `weight holds ${weight.length} floats, dim is ${dim}`);
  for (let m = 0; m < M; m++) {
    const o = m * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
    // Rounded to float32 like llama.cpp's scale, so both normalise by the same factor.
    const scale = Math.fround(1 / Math.sqrt(ss / dim + eps));
    for (let i = 0; i < dim; i++) out[o + i] = Math.fround(x[o + i] * scale) * weight[i];
  }
}

// Inverse frequencies theta^(-2i/ropeDim), cached per (theta, ropeDim).
const ropeFreqCache = new Map<string, Float64Array>();
function ropeFreqs(theta: number, ropeDim: number): Float64Array {
  const key = `${theta}:${ropeDim}`;
  let f = ropeFreqCache.get(key);
  if (!f) {
    f = new Float64Array(ropeDim / 2);
    for (let i = 0; i < ropeDim / 2; i++) f[i] = Math.pow(theta, (-2 * i) / ropeDim);
    ropeFreqCache.set(key, f);
  }
  return f;
}

function rope(x: Float32Array, positions: Int32Array, M: number, nHeads: number, headDim: number, ropeDim: number, theta: number, opts: RopeOptions = {}): void {
  const width = nHeads * headDim;
  if (x.length < M * width) throw new KernelArgumentError('rope', `x holds ${x.length} floats, ${M} rows of ${width} need ${M * width}`);
  if (positions.length < M) throw new KernelArgumentError('rope', `${positions.length} positions for ${M} rows`);
  if (ropeDim % 2 !== 0 || ropeDim > headDim || ropeDim < 0) throw new KernelArgumentError('rope', `ropeDim ${ropeDim} must be even and at most headDim ${headDim}`);
  const half = ropeDim / 2;
  const ff = opts.freqFactors;
  if (ff && ff.length < half) throw new KernelArgumentError('rope', `${ff.length} frequency factors for ${half} rotated pairs`);
  const freqScale = opts.freqScale ?? 1;
  let freqs = ropeFreqs(theta, ropeDim);
  if (freqScale !== 1 || ff) freqs = freqs.map((f, i) => (freqScale * f) / (ff ? ff[i] : 1));
  // Pair i is (2i, 2i+1) in the normal style and (i, i+half) in the NeoX style.
  const neox = opts.style === 'neox';
  const second = neox ? half : 1;
  for (let m = 0; m < M; m++) {
    const pos = positions[m];
    for (let i = 0; i < half; i++) {
      const angle = pos * freqs[i];
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      const first = neox ? i : 2 * i;
      for (let h = 0; h < nHeads; h++) {
        const o = m * width + h * headDim + first;
        const a = x[o];
        const b = x[o + second];
        x[o] = a * c - b * s;
        x[o + second] = a * s + b * c;
      }
    }
  }
}

function siluMul(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void {
  if (gate.length < n || up.length < n || out.length < n) throw new KernelArgumentError('siluMul', `buffers shorter than n=${n}`);
  for (let i = 0; i < n; i++) {
    const g = gate[i];
    out[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_COEF_A = 0.044715;

/** GELU with the tanh approximation, as Gemma's "gelu_pytorch_tanh" and ggml's ggml_gelu define it. */
export function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * x * (1 + GELU_COEF_A * x * x)));
}

function geluMul(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void {
  if (gate.length < n || up.length < n || out.length < n) throw new KernelArgumentError('geluMul', `buffers shorter than n=${n}`);
  for (let i = 0; i < n; i++) out[i] = Math.fround(geluTanh(gate[i])) * up[i];
}

function addBias(x: Float32Array, bias: Float32Array, M: number, width: number): void {
  if (bias.length < width) throw new KernelArgumentError('addBias', `bias holds ${bias.length} floats, width is ${width}`);
  if (x.length < M * width) throw new KernelArgumentError('addBias', `x holds ${x.length} floats, ${M} rows of ${width} need ${M * width}`);
  for (let m = 0; m < M; m++) {
    const o = m * width;
    for (let i = 0; i < width; i++) x[o + i] += bias[i];
  }
}

function add(out: Float32Array, a: Float32Array, n: number): void {
  if (a.length < n || out.length < n) throw new KernelArgumentError('add', `buffers shorter than n=${n}`);
  for (let i = 0; i < n; i++) out[i] += a[i];
}

function embed(out: Float32Array, table: WeightTensor, tokens: Int32Array, M: number): void {
  const cols = table.cols;
  if (tokens.length < M) throw new KernelArgumentError('embed', `${tokens.length} tokens for ${M} rows`);
  if (out.length < M * cols) throw new KernelArgumentError('embed', `out holds ${out.length} floats, ${M} rows of ${cols} need ${M * cols}`);
  // Use the float copy when one exists (f32, or a tied table the output matmul already expanded);
  // otherwise dequantize just the rows asked for rather than the whole vocabulary.
  const full = table.dtype === 'f32' ? weightAsF32(table) : f32Cache.get(table);
  for (let m = 0; m < M; m++) {
    const t = tokens[m];
    if (!(t >= 0 && t < table.rows)) throw new KernelArgumentError('embed', `token id ${t} at row ${m} is outside the vocabulary (0..${table.rows - 1})`);
    const dst = out.subarray(m * cols, (m + 1) * cols);
    if (full) dst.set(full.subarray(t * cols, (t + 1) * cols));
    else dequantizeRow(table, t, dst);
  }
}

function writeKv(kv: KvStorage, layer: number, k: Float32Array, v: Float32Array, meta: AttentionMeta): void {
  if (!(layer >= 0 && layer < kv.nLayers)) throw new KernelArgumentError('writeKv', `layer ${layer} outside 0..${kv.nLayers - 1}`);
  const kvDim = kv.nKvHeads * kv.headDim;
  const kc = kv.k[layer];
  const vc = kv.v[layer];
  for (let r = 0; r < meta.numRows; r++) {
    const slot = meta.slotMapping[r];
    if (slot === -1) continue;
    if (!(slot >= 0 && slot < kv.numBlocks * kv.blockSize)) {
      throw new KernelArgumentError('writeKv', `row ${r} maps to KV slot ${slot}, outside 0..${kv.numBlocks * kv.blockSize - 1}`);
    }
    encodeKvRow(kc, slot, kvDim, k, r * kvDim);
    encodeKvRow(vc, slot, kvDim, v, r * kvDim);
  }
}

function attention(out: Float32Array, q: Float32Array, kv: KvStorage, layer: number, meta: AttentionMeta, nHeads: number, opts: AttentionOptions = {}): void {
  const { headDim, nKvHeads, blockSize } = kv;
  if (!(layer >= 0 && layer < kv.nLayers)) throw new KernelArgumentError('attention', `layer ${layer} outside 0..${kv.nLayers - 1}`);
  if (nHeads % nKvHeads !== 0) throw new KernelArgumentError('attention', `nHeads ${nHeads} is not a multiple of nKvHeads ${nKvHeads}`);
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;
  const group = nHeads / nKvHeads;
  const scale = opts.scale ?? 1 / Math.sqrt(headDim);
  const window = opts.window ?? 0;
  if (!(Number.isInteger(window) && window >= 0)) throw new KernelArgumentError('attention', `window ${window} must be a non-negative integer`);
  const kc = kv.k[layer];
  const vc = kv.v[layer];
  if (accScratch.length < group * headDim) accScratch = new Float64Array(group * headDim);
  if (rowScratch.length < headDim) rowScratch = new Float32Array(headDim);
  const acc = accScratch;
  for (let r = 0; r < meta.numRows; r++) {
    const pos = meta.positions[r];
    const n = pos + 1;
    // A sliding window drops the keys more than window-1 positions behind the row (llama.cpp's is_masked_swa).
    const lo = window > 0 ? Math.max(0, n - window) : 0;
    const seen = n - lo;
    const nBlocks = Math.ceil(n / blockSize);
    if (nBlocks > meta.maxBlocksPerSeq) {
      throw new KernelArgumentError('attention', `row ${r} at position ${pos} needs ${nBlocks} blocks, block tables hold ${meta.maxBlocksPerSeq}`);
    }
    if (scoreScratch.length < group * n) scoreScratch = new Float64Array(Math.max(group * n, 2 * scoreScratch.length));
    if (slotScratch.length < n) slotScratch = new Int32Array(Math.max(n, 2 * slotScratch.length));
    const scores = scoreScratch;
    const slots = slotScratch;
    // Resolve each key position's slot once per row; every head reuses the list.
    const bt = meta.rowSeq[r] * meta.maxBlocksPerSeq;
    for (let b = 0; b < nBlocks; b++) {
      const block = meta.blockTables[bt + b];
      if (!(block >= 0 && block < kv.numBlocks)) {
        throw new KernelArgumentError('attention', `row ${r}: block table entry ${b} is ${block}, outside 0..${kv.numBlocks - 1}`);
      }
      const end = Math.min(n, (b + 1) * blockSize);
      for (let t = b * blockSize; t < end; t++) slots[t] = block * blockSize + (t - b * blockSize);
    }
    // The query heads that share one KV head are done together, so each key and value row is read
    // once per group. For every (row, head) the keys are still visited in position order.
    for (let g = 0; g < nKvHeads; g++) {
      const ho = g * headDim;
      const q0 = r * qDim + g * group * headDim;
      // Pass 1: scores q·k * scale for the positions the row sees (lo..pos).
      for (let t = lo; t < n; t++) {
        const [ka, ko] = readKvRow(kc, slots[t], kvDim, ho, headDim, rowScratch);
        for (let j = 0; j < group; j++) {
          const qo = q0 + j * headDim;
          scores[j * seen + t - lo] = dotInOrder(q, qo, ka, ko, headDim) * scale;
        }
      }
      // Softmax weights (unnormalised) per head.
      const sums = softmaxWeights(scores, group, seen);
      // Pass 2: weighted sum of values, positions in order.
      acc.fill(0, 0, group * headDim);
      for (let t = lo; t < n; t++) {
        const [va, vo] = readKvRow(vc, slots[t], kvDim, ho, headDim, rowScratch);
        for (let j = 0; j < group; j++) {
          const p = scores[j * seen + t - lo];
          axpy(acc, j * headDim, p, va, vo, headDim);
        }
      }
      for (let j = 0; j < group; j++) {
        const qo = q0 + j * headDim;
        for (let d = 0; d < headDim; d++) out[qo + d] = acc[j * headDim + d] / sums[j];
      }
    }
  }
}

/**
 * sum_d a[ao+d] * b[bo+d], one accumulator, d in order. Unrolled by four (head widths are multiples
 * of four in practice), which only removes loop overhead: the additions happen in the same order.
 */
function dotInOrder(a: Float32Array, ao: number, b: Float32Array, bo: number, n: number): number {
  let s = 0;
  let d = 0;
  for (; d + 3 < n; d += 4) {
    s += a[ao + d] * b[bo + d];
    s += a[ao + d + 1] * b[bo + d + 1];
    s += a[ao + d + 2] * b[bo + d + 2];
    s += a[ao + d + 3] * b[bo + d + 3];
  }
  for (; d < n; d++) s += a[ao + d] * b[bo + d];
  return s;
}

/** y[yo+d] += p * x[xo+d] for d < n. */
function axpy(y: Float64Array, yo: number, p: number, x: Float32Array, xo: number, n: number): void {
  let d = 0;
  for (; d + 3 < n; d += 4) {
    y[yo + d] += p * x[xo + d];
    y[yo + d + 1] += p * x[xo + d + 1];
    y[yo + d + 2] += p * x[xo + d + 2];
    y[yo + d + 3] += p * x[xo + d + 3];
  }
  for (; d < n; d++) y[yo + d] += p * x[xo + d];
}

let sumScratch = new Float64Array(8);
/** In place: scores[j*n + t] becomes exp(score - max_j); returns the per-head sums. */
function softmaxWeights(scores: Float64Array, heads: number, n: number): Float64Array {
  if (sumScratch.length < heads) sumScratch = new Float64Array(heads);
  for (let j = 0; j < heads; j++) {
    const o = j * n;
    let max = -Infinity;
    for (let t = 0; t < n; t++) if (scores[o + t] > max) max = scores[o + t];
    let sum = 0;
    for (let t = 0; t < n; t++) {
      const p = Math.exp(scores[o + t] - max);
      scores[o + t] = p;
      sum += p;
    }
    sumScratch[j] = sum;
  }
  return sumScratch;
}

export const referenceKernels: Kernels = {
  name: 'typescript',
  matmul,
  rmsnorm,
  rope,
  siluMul,
  geluMul,
  addBias,
  add,
  embed,
  writeKv,
  attention,
};
