// How weights are held in memory. Quantized tensors stay in their GGUF block layout (a view into the
// file's bytes), so fast kernels can run them without dequantizing the whole model.

import type { WeightTensor } from './kernels/tensor.js';

// The element types and the tensor itself are defined beside the kernels that read them.
export type { DType, WeightTensor } from './kernels/tensor.js';

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
  // Present only in the families (or files) that have them; see families.ts.
  bq?: Float32Array; // [nHeads*headDim]     attn_q.bias
  bk?: Float32Array; // [nKvHeads*headDim]   attn_k.bias
  bv?: Float32Array; // [nKvHeads*headDim]   attn_v.bias
  bo?: Float32Array; // [dim]                attn_output.bias
  qNorm?: Float32Array; // [headDim]         attn_q_norm, applied to each query head
  kNorm?: Float32Array; // [headDim]         attn_k_norm
  attnPostNorm?: Float32Array; // [dim]      attn_post_norm
  ffnPostNorm?: Float32Array; // [dim]       ffn_post_norm
}

export interface LlamaWeights {
  tokenEmbedding: WeightTensor; // [vocab x dim]
  layers: LayerWeights[];
  outputNorm: Float32Array; // [dim]
  /** Output projection [vocab x dim]; the same object as tokenEmbedding when tied. */
  output: WeightTensor;
  /** Llama 3.1+ RoPE frequency factors [ropeDim/2] (`rope_freqs.weight`): pair i turns at its frequency / factor[i]. */
  ropeFreqFactors?: Float32Array;
}
