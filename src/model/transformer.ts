// The forward pass of every supported family over one ragged batch: rows are tokens of any number
// of sequences, each at its own position, all attending over the paged KV cache. Prefill chunks and
// single decode tokens of different sequences share every matmul; only attention looks at which
// sequence a row is in. The scheduler's choices never change a row's result: every kernel is
// batch-invariant.
//
// One pass serves Llama, Qwen2, Qwen3 and Gemma 3: where they differ it reads the family's traits
// (families.ts) and the file's values (ModelConfig), and optional weights (biases, q/k norms,
// post-norms) are applied when the file has them.

import { familyOf, layerAttention, type ModelConfig } from './config.js';
import type { FamilyTraits } from './families.js';
import type { LayerWeights, LlamaWeights, WeightTensor } from './weights.js';
import type { AttentionMeta, Kernels, KvStorage, RopeOptions } from './kernels/types.js';

export interface ForwardBatch {
  /** One token id per row (numRows = meta.numRows). */
  tokens: Int32Array;
  meta: AttentionMeta;
  /** Which rows need logits, in the order their logit rows are returned. */
  logitRows: Int32Array;
}

/** Thrown when weights do not match the config, or a batch is malformed. */
export class ModelInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelInputError';
  }
}

/** Grows a scratch buffer to at least n floats, keeping the old one when it is big enough. */
function ensure(buf: Float32Array, n: number): Float32Array {
  return buf.length >= n ? buf : new Float32Array(Math.max(n, Math.ceil(buf.length * 1.5)));
}

export class TransformerModel {
  readonly config: ModelConfig;
  readonly family: FamilyTraits;
  readonly weights: LlamaWeights;
  readonly kernels: Kernels;

  // Activations for up to `capacity` rows, grown on demand and reused across steps.
  private x: Float32Array = new Float32Array(0); // residual stream [rows x dim]
  private xb: Float32Array = new Float32Array(0); // normed input / branch output [rows x dim]
  private q: Float32Array = new Float32Array(0); // [rows x nHeads*headDim]
  private k: Float32Array = new Float32Array(0); // [rows x nKvHeads*headDim]
  private v: Float32Array = new Float32Array(0);
  private att: Float32Array = new Float32Array(0); // attention output [rows x nHeads*headDim]
  private hb: Float32Array = new Float32Array(0); // [rows x hiddenDim]
  private hb2: Float32Array = new Float32Array(0);
  private xLast: Float32Array = new Float32Array(0); // rows that need logits [logitRows x dim]

  constructor(config: ModelConfig, weights: LlamaWeights, kernels: Kernels) {
    this.config = config;
    this.weights = weights;
    this.kernels = kernels;
    this.family = familyOf(config);
    checkWeights(config, weights);
  }

  /**
   * Returns logits, one row of vocabSize per entry of batch.logitRows: a fresh array the caller
   * owns, or — when `out` is given and large enough — a view of `out`. A runner passes the same
   * buffer every step: a fresh 4 MB array per step (32 rows of a 32,000-token vocabulary) costs a
   * zero fill and, on a VM, about 1,000 page faults.
   */
  forward(batch: ForwardBatch, kv: KvStorage, out?: Float32Array): Float32Array {
    const c = this.config;
    const K = this.kernels;
    const w = this.weights;
    const N = batch.meta.numRows;
    checkBatch(c, batch, kv);
    const dim = c.dim;
    const qDim = c.nHeads * c.headDim;
    const kvDim = c.nKvHeads * c.headDim;
    const hidden = c.hiddenDim;
    const L = batch.logitRows.length;

    this.x = ensure(this.x, N * dim);
    this.xb = ensure(this.xb, N * Math.max(dim, qDim));
    this.q = ensure(this.q, N * qDim);
    this.k = ensure(this.k, N * kvDim);
    this.v = ensure(this.v, N * kvDim);
    this.att = ensure(this.att, N * qDim);
    this.hb = ensure(this.hb, N * hidden);
    this.hb2 = ensure(this.hb2, N * hidden);
    this.xLast = ensure(this.xLast, L * dim);
    const x = this.x;

    K.embed(x, w.tokenEmbedding, batch.tokens, N);
    if (this.family.scaleEmbedding) {
      // Gemma multiplies the embedding by sqrt(dim), rounded to float32 as llama.cpp's sqrtf.
      const s = Math.fround(Math.sqrt(dim));
      for (let i = 0; i < N * dim; i++) x[i] *= s;
    }
    for (let l = 0; l < c.nLayers; l++) {
      const lw = w.layers[l];
      this.attentionBlock(l, lw, N, batch.meta, kv);
      this.ffnBlock(lw, N);
    }

    // Only the rows that will be sampled pay for the final norm and the vocabulary-sized matmul.
    const xLast = this.xLast;
    for (let i = 0; i < L; i++) {
      const r = batch.logitRows[i];
      xLast.set(x.subarray(r * dim, (r + 1) * dim), i * dim);
    }
    K.rmsnorm(xLast, xLast, w.outputNorm, L, dim, c.normEps);
    const logits = out && out.length >= L * c.vocabSize ? out.subarray(0, L * c.vocabSize) : new Float32Array(L * c.vocabSize);
    K.matmul(logits, xLast, w.output, L);
    const cap = c.finalLogitSoftcap;
    if (cap) for (let i = 0; i < logits.length; i++) logits[i] = cap * Math.tanh(logits[i] / cap);
    return logits;
  }

  /** x += wo · attention(rope(norm_q(wq·norm(x) + bq)), rope(norm_k(wk·norm(x) + bk)), wv·norm(x) + bv), post-normed where the family does. */
  private attentionBlock(l: number, lw: LayerWeights, N: number, meta: AttentionMeta, kv: KvStorage): void {
    const c = this.config;
    const K = this.kernels;
    const { x, xb, q, k, v, att } = this;
    const qDim = c.nHeads * c.headDim;
    const kvDim = c.nKvHeads * c.headDim;
    K.rmsnorm(xb, x, lw.attnNorm, N, c.dim, c.normEps);
    this.matmulMany([q, k, v], xb, [lw.wq, lw.wk, lw.wv], N);
    if (lw.bq) K.addBias(q, lw.bq, N, qDim);
    if (lw.bk) K.addBias(k, lw.bk, N, kvDim);
    if (lw.bv) K.addBias(v, lw.bv, N, kvDim);
    // Per-head norms: each head's headDim values are one row for rmsnorm.
    if (lw.qNorm) K.rmsnorm(q, q, lw.qNorm, N * c.nHeads, c.headDim, c.normEps);
    if (lw.kNorm) K.rmsnorm(k, k, lw.kNorm, N * c.nKvHeads, c.headDim, c.normEps);
    const layer = layerAttention(c, l);
    const rope: RopeOptions = { style: this.family.ropeStyle, freqScale: layer.ropeFreqScale, freqFactors: this.weights.ropeFreqFactors };
    K.rope(q, meta.positions, N, c.nHeads, c.headDim, c.ropeDim, layer.ropeTheta, rope);
    K.rope(k, meta.positions, N, c.nKvHeads, c.headDim, c.ropeDim, layer.ropeTheta, rope);
    // Keys and values go into the cache first, so a prefill row sees the earlier rows of its own chunk.
    K.writeKv(kv, l, k, v, meta);
    K.attention(att, q, kv, l, meta, c.nHeads, { scale: c.attentionScale, window: layer.window });
    K.matmul(xb, att, lw.wo, N);
    if (lw.bo) K.addBias(xb, lw.bo, N, c.dim);
    if (lw.attnPostNorm) K.rmsnorm(xb, xb, lw.attnPostNorm, N, c.dim, c.normEps);
    K.add(x, xb, N * c.dim);
  }

  /** Weights that read the same activations, in one kernel call where the kernels offer one. */
  private matmulMany(outs: Float32Array[], x: Float32Array, ws: WeightTensor[], N: number): void {
    const K = this.kernels;
    if (K.matmulMany) K.matmulMany(outs, x, ws, N);
    else for (let i = 0; i < ws.length; i++) K.matmul(outs[i]!, x, ws[i]!, N);
  }

  /** Gated feed-forward: x += w2 · (act(w1·norm(x)) * w3·norm(x)), post-normed where the family does. */
  private ffnBlock(lw: LayerWeights, N: number): void {
    const c = this.config;
    const K = this.kernels;
    const { x, xb, hb, hb2 } = this;
    K.rmsnorm(xb, x, lw.ffnNorm, N, c.dim, c.normEps);
    this.matmulMany([hb, hb2], xb, [lw.wGate, lw.wUp], N);
    if (this.family.ffnActivation === 'gelu') K.geluMul(hb, hb, hb2, N * c.hiddenDim);
    else K.siluMul(hb, hb, hb2, N * c.hiddenDim);
    K.matmul(xb, hb, lw.wDown, N);
    if (lw.ffnPostNorm) K.rmsnorm(xb, xb, lw.ffnPostNorm, N, c.dim, c.normEps);
    K.add(x, xb, N * c.dim);
  }
}

function checkTensor(t: WeightTensor, rows: number, cols: number, what: string): void {
  if (t.rows !== rows || t.cols !== cols) {
    throw new ModelInputError(`weight ${what} (${t.name}) is ${t.rows}x${t.cols}, the config needs ${rows}x${cols}`);
  }
}

function checkVector(a: Float32Array, n: number, what: string): void {
  if (a.length !== n) throw new ModelInputError(`weight ${what} has ${a.length} values, the config needs ${n}`);
}

function checkWeights(c: ModelConfig, w: LlamaWeights): void {
  if (c.nHeads % c.nKvHeads !== 0) throw new ModelInputError(`nHeads ${c.nHeads} is not a multiple of nKvHeads ${c.nKvHeads}`);
  if (c.ropeDim % 2 !== 0 || c.ropeDim > c.headDim) throw new ModelInputError(`ropeDim ${c.ropeDim} must be even and at most headDim ${c.headDim}`);
  if (w.layers.length !== c.nLayers) throw new ModelInputError(`weights have ${w.layers.length} layers, the config says ${c.nLayers}`);
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKvHeads * c.headDim;
  checkTensor(w.tokenEmbedding, c.vocabSize, c.dim, 'token embedding');
  checkTensor(w.output, c.vocabSize, c.dim, 'output');
  checkVector(w.outputNorm, c.dim, 'output norm');
  w.layers.forEach((lw, l) => {
    checkVector(lw.attnNorm, c.dim, `layer ${l} attention norm`);
    checkVector(lw.ffnNorm, c.dim, `layer ${l} ffn norm`);
    checkTensor(lw.wq, qDim, c.dim, `layer ${l} wq`);
    checkTensor(lw.wk, kvDim, c.dim, `layer ${l} wk`);
    checkTensor(lw.wv, kvDim, c.dim, `layer ${l} wv`);
    checkTensor(lw.wo, c.dim, qDim, `layer ${l} wo`);
    checkTensor(lw.wGate, c.hiddenDim, c.dim, `layer ${l} ffn gate`);
    checkTensor(lw.wUp, c.hiddenDim, c.dim, `layer ${l} ffn up`);
    checkTensor(lw.wDown, c.dim, c.hiddenDim, `layer ${l} ffn down`);
    const optional: Array<[Float32Array | undefined, number, string]> = [
      [lw.bq, qDim, 'q bias'], [lw.bk, kvDim, 'k bias'], [lw.bv, kvDim, 'v bias'], [lw.bo, c.dim, 'output bias'],
      [lw.qNorm, c.headDim, 'q norm'], [lw.kNorm, c.headDim, 'k norm'],
      [lw.attnPostNorm, c.dim, 'attention post-norm'], [lw.ffnPostNorm, c.dim, 'ffn post-norm'],
    ];
    for (const [a, n, what] of optional) if (a) checkVector(a, n, `layer ${l} ${what}`);
  });
  if (w.ropeFreqFactors) checkVector(w.ropeFreqFactors, c.ropeDim / 2, 'rope frequency factors');
}

function checkBatch(c: ModelConfig, b: ForwardBatch, kv: KvStorage): void {
  const m = b.meta;
  const N = m.numRows;
  if (!Number.isInteger(N) || N <= 0) throw new ModelInputError(`batch has ${N} rows; a forward pass needs at least one`);
  if (b.tokens.length < N) throw new ModelInputError(`batch has ${N} rows but ${b.tokens.length} tokens`);
  if (m.positions.length < N || m.rowSeq.length < N || m.slotMapping.length < N) {
    throw new ModelInputError(`batch has ${N} rows but positions/rowSeq/slotMapping hold ${m.positions.length}/${m.rowSeq.length}/${m.slotMapping.length}`);
  }
  if (kv.nLayers !== c.nLayers || kv.nKvHeads !== c.nKvHeads || kv.headDim !== c.headDim) {
    throw new ModelInputError(`KV storage is ${kv.nLayers} layers x ${kv.nKvHeads} heads x ${kv.headDim}, the model needs ${c.nLayers} x ${c.nKvHeads} x ${c.headDim}`);
  }
  const numSeqs = m.maxBlocksPerSeq > 0 ? m.blockTables.length / m.maxBlocksPerSeq : 0;
  for (let r = 0; r < N; r++) {
    const t = b.tokens[r];
    if (!(t >= 0 && t < c.vocabSize)) throw new ModelInputError(`token id ${t} at row ${r} is outside the vocabulary (0..${c.vocabSize - 1})`);
    const p = m.positions[r];
    if (!(p >= 0 && p < m.maxBlocksPerSeq * kv.blockSize)) {
      throw new ModelInputError(`row ${r} has position ${p}, its block table covers positions 0..${m.maxBlocksPerSeq * kv.blockSize - 1}`);
    }
    const s = m.rowSeq[r];
    if (!(s >= 0 && s < numSeqs)) throw new ModelInputError(`row ${r} belongs to sequence index ${s}, the block tables hold ${numSeqs} sequences`);
  }
  for (let i = 0; i < b.logitRows.length; i++) {
    const r = b.logitRows[i];
    if (!(r >= 0 && r < N)) throw new ModelInputError(`logit row ${r} is outside the batch's ${N} rows`);
  }
}
