// How weights are held in memory. Quantized tensors stay in their GGUF block layout (a view into the
// file's bytes), so fast kernels can run them without dequantizing the whole model.

/** Tensor element types Stepwise reads. Names follow ggml's type names. */
export type DType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_k' | 'q6_k';

/**
 * A 2-D weight matrix W with `rows` output features and `cols` input features, row-major:
 * row n holds the `cols` weights that produce output feature n (GGUF ne[0] = cols, ne[1] = rows).
 * `data` holds the raw bytes in ggml's layout for `dtype` (for f32: rows*cols little-endian floats;
 * for block types: each row is cols/blockSize consecutive blocks).
 */
export interface WeightTensor {
  readonly name: string;
  readonly dtype: DType;
  readonly rows: number;
  readonly cols: number;
  readonly data: Uint8Array;
}

export interface LayerWeights {
  attnNorm: Float32Array; // [dim]
  wq: WeightTensor; // [nHeads*headDim x dim]
  wk: WeightTensor; // [nKvHeads*headDim x dim]
  wv: WeightTensor; // [nKvHeads*headDim x dim]
  wo: WeightTensor; // [dim x nHeads*headDim]
  ffnNorm: Float32Array; // [dim]
  wGate: WeightTensor; // [hiddenDim x dim]  (ffn_gate, w1)
  wUp: WeightTensor; // [hiddenDim x dim]    (ffn_up, w3)
  wDown: WeightTensor; // [dim x hiddenDim]  (ffn_down, w2)
}

export interface LlamaWeights {
  tokenEmbedding: WeightTensor; // [vocab x dim]
  layers: LayerWeights[];
  outputNorm: Float32Array; // [dim]
  /** Output projection [vocab x dim]; the same object as tokenEmbedding when tied. */
  output: WeightTensor;
}
