// A deliberately plain, single-sequence Llama forward pass in the style of llama2.c's run.c, used
// ONLY as a test oracle for the batched, paged model in src/model/llama.ts. It shares no code with
// it: every weight is expanded to float32 up front, the KV cache is one contiguous array per layer,
// and every loop is the obvious one. Slow, and meant to be easy to check by eye.

import type { ModelConfig } from '../../src/model/config.js';
import type { LlamaWeights, WeightTensor } from '../../src/model/weights.js';
import { dequantize } from '../../src/model/kernels/quant.js';

// Quantized weights multiply int8-rounded activations (as llama.cpp does: Q8_0 blocks of 32 for
// the 32-element types, Q8_K blocks of 256 for the k-quants and iq4_xs): the group size of each
// expanded matrix, by identity.
const ACT_GROUP = new WeakMap<Float32Array, number>();
const GROUP_OF: Record<string, number> = {
  q8_0: 32, q4_0: 32, q4_1: 32, q5_0: 32, q5_1: 32, iq4_nl: 32, q2_k: 256, q3_k: 256, q4_k: 256, q5_k: 256, q6_k: 256, iq4_xs: 256,
};

/** x with each group replaced by d*q: d = amax/127, q = x*(127/amax) rounded half to even, in float32. */
function roundActivations(x: Float32Array, group: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let g = 0; g < x.length; g += group) {
    const end = Math.min(x.length, g + group);
    let amax = 0;
    for (let j = g; j < end; j++) amax = Math.max(amax, Math.abs(x[j]));
    const scale = amax > 0 ? Math.fround(127 / amax) : 0;
    const d = Math.fround(amax / 127);
    for (let j = g; j < end; j++) {
      const v = Math.fround(x[j] * scale);
      let q = Math.round(v);
      if (q - v === 0.5 && q % 2 !== 0) q -= 1; // a tie goes to the even neighbour
      out[j] = Math.fround(d * q);
    }
  }
  return out;
}

function toF32(w: WeightTensor): Float32Array {
  const f = expand(w);
  if (GROUP_OF[w.dtype]) ACT_GROUP.set(f, GROUP_OF[w.dtype]);
  return f;
}

function expand(w: WeightTensor): Float32Array {
  if (w.dtype === 'f32') {
    const out = new Float32Array(w.rows * w.cols);
    const view = new DataView(w.data.buffer, w.data.byteOffset, w.data.byteLength);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
    return out;
  }
  return dequantize(w);
}

interface NaiveLayer {
  attnNorm: Float32Array;
  wq: Float32Array;
  wk: Float32Array;
  wv: Float32Array;
  wo: Float32Array;
  ffnNorm: Float32Array;
  w1: Float32Array;
  w2: Float32Array;
  w3: Float32Array;
}

/** out[i] = sum_j W[i][j] * x[j], W is d x n row-major. */
function matvec(out: Float32Array, xIn: Float32Array, W: Float32Array, n: number, d: number): void {
  const group = ACT_GROUP.get(W);
  const x = group ? roundActivations(xIn.subarray(0, n), group) : xIn;
  for (let i = 0; i < d; i++) {
    let val = 0;
    for (let j = 0; j < n; j++) val += W[i * n + j] * x[j];
    out[i] = val;
  }
}

function rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, eps: number): void {
  let ss = 0;
  for (let j = 0; j < x.length; j++) ss += x[j] * x[j];
  ss = 1 / Math.sqrt(ss / x.length + eps);
  for (let j = 0; j < x.length; j++) out[j] = weight[j] * (ss * x[j]);
}

function softmax(x: Float64Array, size: number): void {
  let max = x[0];
  for (let i = 1; i < size; i++) if (x[i] > max) max = x[i];
  let sum = 0;
  for (let i = 0; i < size; i++) {
    x[i] = Math.exp(x[i] - max);
    sum += x[i];
  }
  for (let i = 0; i < size; i++) x[i] /= sum;
}

export class NaiveLlama {
  private readonly c: ModelConfig;
  private readonly emb: Float32Array;
  private readonly layers: NaiveLayer[];
  private readonly finalNorm: Float32Array;
  private readonly cls: Float32Array;
  // keyCache[l][pos * kvDim + i]: contiguous, one sequence.
  private readonly keyCache: Float32Array[];
  private readonly valueCache: Float32Array[];

  constructor(config: ModelConfig, weights: LlamaWeights, maxSeqLen: number) {
    this.c = config;
    this.emb = toF32(weights.tokenEmbedding);
    this.layers = weights.layers.map((l) => ({
      attnNorm: l.attnNorm,
      wq: toF32(l.wq),
      wk: toF32(l.wk),
      wv: toF32(l.wv),
      wo: toF32(l.wo),
      ffnNorm: l.ffnNorm,
      w1: toF32(l.wGate),
      w2: toF32(l.wDown),
      w3: toF32(l.wUp),
    }));
    this.finalNorm = weights.outputNorm;
    this.cls = weights.output === weights.tokenEmbedding ? this.emb : toF32(weights.output);
    const kvDim = config.nKvHeads * config.headDim;
    this.keyCache = this.layers.map(() => new Float32Array(maxSeqLen * kvDim));
    this.valueCache = this.layers.map(() => new Float32Array(maxSeqLen * kvDim));
  }

  /** Feeds the token at position pos (all earlier positions must have been fed) and returns the logits. */
  forward(token: number, pos: number): Float32Array {
    const c = this.c;
    const dim = c.dim;
    const hs = c.headDim;
    const qDim = c.nHeads * hs;
    const kvDim = c.nKvHeads * hs;
    const kvMul = c.nHeads / c.nKvHeads;
    const x = new Float32Array(dim);
    x.set(this.emb.subarray(token * dim, (token + 1) * dim));
    const xb = new Float32Array(Math.max(dim, qDim));
    const xb2 = new Float32Array(dim);
    const q = new Float32Array(qDim);
    const hb = new Float32Array(c.hiddenDim);
    const hb2 = new Float32Array(c.hiddenDim);
    const att = new Float64Array(pos + 1);

    for (let l = 0; l < c.nLayers; l++) {
      const L = this.layers[l];
      rmsnorm(xb.subarray(0, dim), x, L.attnNorm, c.normEps);
      const xn = xb.slice(0, dim);
      const k = this.keyCache[l].subarray(pos * kvDim, (pos + 1) * kvDim);
      const v = this.valueCache[l].subarray(pos * kvDim, (pos + 1) * kvDim);
      matvec(q, xn, L.wq, dim, qDim);
      matvec(k, xn, L.wk, dim, kvDim);
      matvec(v, xn, L.wv, dim, kvDim);

      // RoPE, adjacent pairs, first ropeDim dims of every head.
      for (let i = 0; i < qDim; i += 2) {
        const headDimIdx = i % hs;
        if (headDimIdx >= c.ropeDim) continue;
        const freq = 1 / Math.pow(c.ropeTheta, headDimIdx / c.ropeDim);
        const val = pos * freq;
        const fcr = Math.cos(val);
        const fci = Math.sin(val);
        const rotn = i < kvDim ? 2 : 1;
        for (let vi = 0; vi < rotn; vi++) {
          const vec = vi === 0 ? q : k;
          const v0 = vec[i];
          const v1 = vec[i + 1];
          vec[i] = v0 * fcr - v1 * fci;
          vec[i + 1] = v0 * fci + v1 * fcr;
        }
      }

      // Multi-head attention over positions 0..pos.
      for (let h = 0; h < c.nHeads; h++) {
        const qh = q.subarray(h * hs, (h + 1) * hs);
        const kvh = Math.floor(h / kvMul);
        for (let t = 0; t <= pos; t++) {
          const kt = this.keyCache[l].subarray(t * kvDim + kvh * hs, t * kvDim + (kvh + 1) * hs);
          let score = 0;
          for (let i = 0; i < hs; i++) score += qh[i] * kt[i];
          att[t] = score / Math.sqrt(hs);
        }
        softmax(att, pos + 1);
        const out = xb.subarray(h * hs, (h + 1) * hs);
        out.fill(0);
        for (let t = 0; t <= pos; t++) {
          const vt = this.valueCache[l].subarray(t * kvDim + kvh * hs, t * kvDim + (kvh + 1) * hs);
          for (let i = 0; i < hs; i++) out[i] += att[t] * vt[i];
        }
      }

      matvec(xb2, xb.slice(0, qDim), L.wo, qDim, dim);
      for (let i = 0; i < dim; i++) x[i] += xb2[i];

      rmsnorm(xb.subarray(0, dim), x, L.ffnNorm, c.normEps);
      const xn2 = xb.slice(0, dim);
      matvec(hb, xn2, L.w1, dim, c.hiddenDim);
      matvec(hb2, xn2, L.w3, dim, c.hiddenDim);
      for (let i = 0; i < c.hiddenDim; i++) {
        const g = hb[i];
        hb[i] = (g * (1 / (1 + Math.exp(-g)))) * hb2[i];
      }
      matvec(xb2, hb, L.w2, c.hiddenDim, dim);
      for (let i = 0; i < dim; i++) x[i] += xb2[i];
    }

    rmsnorm(x, x, this.finalNorm, c.normEps);
    const logits = new Float32Array(c.vocabSize);
    matvec(logits, x, this.cls, dim, c.vocabSize);
    return logits;
  }
}

export function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}
