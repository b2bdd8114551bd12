// The Llama forward pass over one ragged batch: rows are tokens of any number of sequences, each at
// its own position, all attending over the paged KV cache. Prefill chunks and single decode tokens
// of different sequences share every matmul; only attention looks at which sequence a row is in.
// The scheduler's choices never change a row's result: every kernel is batch-invariant.

import type { ModelConfig } from './config.js';
import type { LlamaWeights, WeightTensor } from './weights.js';
import type { AttentionMeta, Kernels, KvStorage } from './kernels/types.js';

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

export class LlamaModel {
  readonly config: ModelConfig;
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
    checkWeights(config, weights);
  }

  /** Returns logits, one row of vocabSize per entry of batch.logitRows (a fresh array the caller owns). */
  forward(batch: ForwardBatch, kv: KvStorage): Float32Array {
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
    const { x, xb, q, k, v, att, hb, hb2 } = this;
    const positions = batch.meta.positions;

    K.embed(x, w.tokenEmbedding, batch.tokens, N);
    for (let l = 0; l < c.nLayers; l++) {
      const lw = w.layers[l];
      // Attention block: x += wo · attention(rope(wq·norm(x)), rope(wk·norm(x)), wv·norm(x)).
      K.rmsnorm(xb, x, lw.attnNorm, N, dim, c.normEps);
      K.matmul(q, xb, lw.wq, N);
      K.matmul(k, xb, lw.wk, N);
      K.matmul(v, xb, lw.wv, N);
      K.rope(q, positions, N, c.nHeads, c.headDim, c.ropeDim, c.ropeTheta);
      K.rope(k, positions, N, c.nKvHeads, c.headDim, c.ropeDim, c.ropeTheta);
      // Keys and values go into the cache first, so a prefill row sees the earlier rows of its own chunk.
      K.writeKv(kv, l, k, v, batch.meta);
      K.attention(att, q, kv, l, batch.meta, c.nHeads);
      K.matmul(xb, att, lw.wo, N);
      K.add(x, xb, N * dim);
      // Feed-forward block (SwiGLU): x += w2 · (silu(w1·norm(x)) * w3·norm(x)).
      K.rmsnorm(xb, x, lw.ffnNorm, N, dim, c.normEps);
      K.matmul(hb, xb, lw.wGate, N);
      K.matmul(hb2, xb, lw.wUp, N);
      K.siluMul(hb, hb, hb2, N * hidden);
      K.matmul(xb, hb, lw.wDown, N);
      K.add(x, xb, N * dim);
    }

    // Only the rows that will be sampled pay for the final norm and the vocabulary-sized matmul.
    const xLast = this.xLast;
    for (let i = 0; i < L; i++) {
      const r = batch.logitRows[i];
      xLast.set(x.subarray(r * dim, (r + 1) * dim), i * dim);
    }
    K.rmsnorm(xLast, xLast, w.outputNorm, L, dim, c.normEps);
    const logits = new Float32Array(L * c.vocabSize);
    K.matmul(logits, xLast, w.output, L);
    return logits;
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
  });
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
