// Hyper-parameters of a decoder-only transformer, independent of the file format it came from. What
// a family always does lives in families.ts; what a file may set lives here.

import { FAMILIES, type Architecture, type FamilyTraits } from './families.js';

export interface ModelConfig {
  /** Architecture name as the file states it (GGUF `general.architecture`). */
  arch: Architecture;
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
  /** Linear RoPE scaling: positions are multiplied by this (GGUF `rope.scaling.factor` f gives 1/f). Default 1. */
  ropeFreqScale?: number;
  /** Keys a sliding-window layer sees: those less than this many positions behind the query (0 or absent: no window). */
  slidingWindow?: number;
  /** Multiplies q.k before the softmax. Default 1/sqrt(headDim). */
  attentionScale?: number;
  /** Final logits become cap*tanh(logit/cap) when set (GGUF `final_logit_softcapping`). */
  finalLogitSoftcap?: number;
}

export function familyOf(c: ModelConfig): FamilyTraits {
  return FAMILIES[c.arch];
}

/** RoPE base, linear scale and attention window of layer l (window 0: the layer attends to every earlier key). */
export function layerAttention(c: ModelConfig, l: number): { ropeTheta: number; ropeFreqScale: number; window: number } {
  const swa = familyOf(c).slidingWindow;
  const window = c.slidingWindow ?? 0;
  if (swa && window > 0 && l % swa.pattern < swa.pattern - 1) {
    return { ropeTheta: swa.ropeTheta, ropeFreqScale: swa.ropeFreqScale, window };
  }
  return { ropeTheta: c.ropeTheta, ropeFreqScale: c.ropeFreqScale ?? 1, window: 0 };
}
