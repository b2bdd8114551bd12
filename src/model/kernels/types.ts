// The small set of compute kernels the model's forward pass is written over. The TypeScript
// reference kernels (reference.ts) are the oracle; the native addon (native.ts) must match them.
//
// Batch invariance is a contract of every kernel: the result for one row (token) must depend only on
// that row's inputs — never on how many other rows are in the call, on what they contain, on the
// thread count, or on how a prompt was chunked. So a row's reduction order is fixed (e.g. split work
// across output features, never across the reduction dimension).

import type { WeightTensor } from './tensor.js';
import type { KvArray, KvCacheDtype } from './kv-dtype.js';

/**
 * How RoPE pairs the dimensions of a head. 'normal' (Llama, GGUF's default) rotates adjacent pairs
 * (2i, 2i+1); 'neox' (GPT-NeoX, Qwen, Gemma) rotates (i, i + ropeDim/2). Pair i turns at the same
 * frequency in both; only which two numbers form the pair differs.
 */
export type RopeStyle = 'normal' | 'neox';

/** What varies RoPE between families and files; every field defaults to plain Llama RoPE. */
export interface RopeOptions {
  /** 'normal' rotates (2i, 2i+1), 'neox' rotates (i, i + ropeDim/2). */
  style?: RopeStyle;
  /** Linear scaling: angles are multiplied by this. */
  freqScale?: number;
  /** Per-pair divisors of the frequency (Llama 3.1's rope_freqs), ropeDim/2 of them. */
  freqFactors?: Float32Array;
}

export interface AttentionOptions {
  /** Multiplies q.k; default 1/sqrt(headDim). */
  scale?: number;
  /** Sliding window: a row at position p sees keys p-window+1..p (0 or absent: keys 0..p). */
  window?: number;
}

/** Paged KV storage of one model: per layer, K and V arrays of numBlocks*blockSize slots. */
export interface KvStorage {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly nLayers: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** The element type (kv-dtype.ts); absent means f32. */
  readonly dtype?: KvCacheDtype;
  /**
   * k[layer] holds slot = block*blockSize + offset as one row of nKvHeads*headDim elements, head h
   * at h*headDim: floats (f32), f16 bits (f16) or q8_0 blocks (34 bytes per 32 elements).
   */
  readonly k: KvArray[];
  readonly v: KvArray[];
}

/** Where each row of a ragged batch lives, for attention over paged KV. */
export interface AttentionMeta {
  /** Rows (tokens) in the batch. */
  numRows: number;
  /** Absolute position of each row inside its sequence. Row r attends to keys 0..positions[r]. */
  positions: Int32Array;
  /** Index (0..numSeqs-1) of the sequence each row belongs to. */
  rowSeq: Int32Array;
  /** Block tables, numSeqs x maxBlocksPerSeq, row-major; entries beyond a sequence's length are unused. */
  blockTables: Int32Array;
  maxBlocksPerSeq: number;
  /** KV slot each row writes its key/value into, or -1 for a padding row that writes nothing. */
  slotMapping: Int32Array;
}

export interface Kernels {
  /** Human-readable backend name, logged by the CLI and server ("typescript", "native-avx2", ...). */
  readonly name: string;

  /** out[m*rows + n] = sum_k x[m*cols + k] * W[n][k], for m < M. */
  matmul(out: Float32Array, x: Float32Array, w: WeightTensor, M: number): void;

  /**
   * matmul(outs[i], x, ws[i], M) for every i: weights of one width that read the same activations
   * (a layer's q/k/v, its gate/up), in one call where the backend can share the work (the native
   * kernels quantize the activations once and run all the weights in one round of their pool).
   * Each output has the bits its own matmul would give. Optional: callers fall back to matmul.
   */
  matmulMany?(outs: Float32Array[], x: Float32Array, ws: WeightTensor[], M: number): void;

  /** out[m] = x[m] / sqrt(mean(x[m]^2) + eps) * weight, over rows of width dim. out may alias x. */
  rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, M: number, dim: number, eps: number): void;

  /**
   * In-place rotary embedding (Llama/GGUF "normal" style: adjacent pairs (2i, 2i+1)) on M rows, each
   * nHeads*headDim wide; only the first ropeDim dims of each head rotate. Row m uses positions[m].
   */
  rope(x: Float32Array, positions: Int32Array, M: number, nHeads: number, headDim: number, ropeDim: number, theta: number, opts?: RopeOptions): void;

  /** out[i] = silu(gate[i]) * up[i], i < n. out may alias gate. */
  siluMul(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void;

  /** out[i] = gelu(gate[i]) * up[i] with GELU's tanh approximation (ggml's), i < n. out may alias gate. */
  geluMul(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void;

  /** x[m*width + i] += bias[i] for m < M, i < width. */
  addBias(x: Float32Array, bias: Float32Array, M: number, width: number): void;

  /** out[i] += a[i], i < n. */
  add(out: Float32Array, a: Float32Array, n: number): void;

  /** Gathers (dequantizing) rows tokens[m] of the embedding table into out[m*cols...]. */
  embed(out: Float32Array, table: WeightTensor, tokens: Int32Array, M: number): void;

  /** Writes each row's key and value (nKvHeads*headDim wide) into its slot of layer `layer`. Rows with slot -1 are skipped. */
  writeKv(kv: KvStorage, layer: number, k: Float32Array, v: Float32Array, meta: AttentionMeta): void;

  /**
   * Causal attention over paged KV for every row: out[r] (nHeads*headDim) = softmax(q·K^T/sqrt(headDim)) V
   * over keys 0..positions[r] of its sequence, query head h reading KV head floor(h / (nHeads/nKvHeads)).
   * Keys are visited in position order so the result does not depend on chunking.
   */
  attention(out: Float32Array, q: Float32Array, kv: KvStorage, layer: number, meta: AttentionMeta, nHeads: number, opts?: AttentionOptions): void;
}
