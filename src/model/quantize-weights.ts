// A loaded model's weights re-encoded in memory at another weight type: what `--draft-dtype q4_0`
// drafts with (self-speculation: the model's own Q4_0 copy proposes tokens for it), without a second
// file. Matrices are decoded to f32 and encoded again; vectors (norms, biases) stay as they are.

import { DTYPE_INFO, dequantize, quantize } from './kernels/quant.js';
import type { DType, LayerWeights, LlamaWeights, WeightTensor } from './weights.js';

/** Weight types a model can be re-encoded to in memory. */
export const REQUANT_DTYPES = ['q4_0', 'q8_0'] as const satisfies readonly DType[];
export type RequantDtype = (typeof REQUANT_DTYPES)[number];

export function isRequantDtype(s: string): s is RequantDtype {
  return (REQUANT_DTYPES as readonly string[]).includes(s);
}

export interface RequantOptions {
  /**
   * The type of the output projection. llama.cpp's Q4_0 files keep it at Q6_K: the logits of every
   * token come out of it, and rounding it at 4 bits moves the argmax far more than rounding a layer
   * does. Default: q8_0 (what our encoder writes best; Q6_K's simple encoder is slower to write).
   */
  outputDtype?: DType;
}

/**
 * The same model with every matrix in `dtype` (the output projection in opts.outputDtype). Matrices
 * whose rows are not whole blocks of the type, and those already in it, are kept as they are. A tied
 * output projection stays tied to the embedding.
 */
export function requantizeWeights(w: LlamaWeights, dtype: RequantDtype, opts: RequantOptions = {}): LlamaWeights {
  const outputDtype = opts.outputDtype ?? 'q8_0';
  const convert = (t: WeightTensor, to: DType): WeightTensor => {
    if (t.dtype === to || t.cols % DTYPE_INFO[to].blockSize !== 0) return t;
    return { name: t.name, dtype: to, rows: t.rows, cols: t.cols, data: quantize(to, dequantize(t), t.rows, t.cols) };
  };
  const layer = (l: LayerWeights): LayerWeights => ({
    ...l,
    wq: convert(l.wq, dtype),
    wk: convert(l.wk, dtype),
    wv: convert(l.wv, dtype),
    wo: convert(l.wo, dtype),
    wGate: convert(l.wGate, dtype),
    wUp: convert(l.wUp, dtype),
    wDown: convert(l.wDown, dtype),
  });
  const tokenEmbedding = convert(w.tokenEmbedding, dtype);
  const tied = w.output === w.tokenEmbedding;
  return {
    ...w,
    tokenEmbedding,
    layers: w.layers.map(layer),
    output: tied ? tokenEmbedding : convert(w.output, outputDtype),
  };
}
