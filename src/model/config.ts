// Hyper-parameters of a Llama-family transformer, independent of the file format it came from.

export interface ModelConfig {
  /** Architecture name as the file states it (GGUF `general.architecture`); only 'llama' is supported. */
  arch: 'llama';
  /** Embedding width (GGUF `llama.embedding_length`). */
  dim: number;
  /** Feed-forward width (GGUF `llama.feed_forward_length`). */
  hiddenDim: number;
  nLayers: number;
  /** Query heads. */
  nHeads: number;
  /** Key/value heads; nKvHeads < nHeads is grouped-query attention. */
  nKvHeads: number;
  /** Width of one head (usually dim / nHeads). */
  headDim: number;
  vocabSize: number;
  /** Maximum positions the model was built for (GGUF `llama.context_length`). */
  contextLength: number;
  /** RoPE base frequency (GGUF `llama.rope.freq_base`, default 10000). */
  ropeTheta: number;
  /** Number of leading dimensions of each head that are rotated (GGUF `llama.rope.dimension_count`, default headDim). */
  ropeDim: number;
  /** RMSNorm epsilon (GGUF `llama.attention.layer_norm_rms_epsilon`). */
  normEps: number;
  /** True when the output projection shares the token-embedding matrix. */
  tiedEmbeddings: boolean;
}

/** Bytes of KV cache one token occupies across all layers (K and V, float32 storage). */
export function kvBytesPerToken(c: ModelConfig): number {
  return 2 * c.nLayers * c.nKvHeads * c.headDim * 4;
}
