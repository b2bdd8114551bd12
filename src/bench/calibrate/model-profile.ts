// The cost model's view of a real model file: its shape, and the bytes per weight it actually stores
// (f32 4, f16 2, q8_0 34/32, ...) — what a forward pass has to stream through memory.
import type { ModelConfig } from '../../model/config.js';
import type { LlamaWeights, WeightTensor } from '../../model/weights.js';
import type { ModelProfile } from '../../sim/cost-model.js';

/** Stepwise keeps its KV cache in float32. */
export const ENGINE_KV_BYTES = 4;

export function modelProfileFromWeights(config: ModelConfig, weights: LlamaWeights, source?: string): ModelProfile {
  // The matrices a step multiplies through: every layer's, and the output projection.
  const mats: WeightTensor[] = [weights.output];
  for (const l of weights.layers) mats.push(l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown);
  let bytes = 0;
  let params = 0;
  for (const w of mats) {
    bytes += w.data.byteLength;
    params += w.rows * w.cols;
  }
  return {
    dim: config.dim,
    hiddenDim: config.hiddenDim,
    nLayers: config.nLayers,
    nHeads: config.nHeads,
    nKvHeads: config.nKvHeads,
    headDim: config.headDim,
    vocabSize: config.vocabSize,
    contextLength: config.contextLength,
    tiedEmbeddings: config.tiedEmbeddings,
    weightBytes: bytes / params,
    kvBytes: ENGINE_KV_BYTES,
    ...(source ? { source } : {}),
  };
}
