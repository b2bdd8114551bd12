// What distinguishes one model family from another, as data. The forward pass (transformer.ts) is
// written once and reads these traits; the GGUF loader reads the per-file values (window sizes,
// RoPE bases, scales) into ModelConfig. Each entry follows what llama.cpp computes for that
// `general.architecture`, since llama.cpp on the same file is the reference users compare against.

import type { RopeStyle } from './kernels/types.js';

export type Architecture = 'llama' | 'qwen2' | 'qwen3' | 'gemma3';

/** The gate's activation in the gated feed-forward block: silu(gate)*up or gelu_tanh(gate)*up. */
export type FfnActivation = 'silu' | 'gelu';

export interface FamilyTraits {
  ropeStyle: RopeStyle;
  /** Biases on the q, k, v projections: Qwen2 always has them, Llama files may (llama.cpp treats them as optional). */
  qkvBias: 'required' | 'optional' | 'none';
  /** Per-head RMSNorm of q and k before RoPE (`attn_q_norm`, `attn_k_norm`). */
  qkNorm: boolean;
  ffnActivation: FfnActivation;
  /** Token embeddings are multiplied by sqrt(dim) before the first layer (Gemma). */
  scaleEmbedding: boolean;
  /** The attention and FFN outputs are RMS-normed (`attn_post_norm`, `ffn_post_norm`) before their residual adds (Gemma 2/3). */
  postNorms: boolean;
  /**
   * Sliding-window layers: of every `pattern` layers the first pattern-1 attend to a window and the
   * last to everything (llama.cpp's set_swa_pattern), the windowed ones with their own RoPE base.
   * Absent: every layer is global.
   */
  slidingWindow?: { pattern: number; ropeTheta: number; ropeFreqScale: number };
}

export const FAMILIES: Record<Architecture, FamilyTraits> = {
  llama: { ropeStyle: 'normal', qkvBias: 'optional', qkNorm: false, ffnActivation: 'silu', scaleEmbedding: false, postNorms: false },
  qwen2: { ropeStyle: 'neox', qkvBias: 'required', qkNorm: false, ffnActivation: 'silu', scaleEmbedding: false, postNorms: false },
  qwen3: { ropeStyle: 'neox', qkvBias: 'none', qkNorm: true, ffnActivation: 'silu', scaleEmbedding: false, postNorms: false },
  gemma3: {
    ropeStyle: 'neox',
    qkvBias: 'none',
    qkNorm: true,
    ffnActivation: 'gelu',
    scaleEmbedding: true,
    postNorms: true,
    slidingWindow: { pattern: 6, ropeTheta: 10000, ropeFreqScale: 1 },
  },
};

export const ARCHITECTURES = Object.keys(FAMILIES) as Architecture[];

export function isArchitecture(s: unknown): s is Architecture {
  return typeof s === 'string' && Object.hasOwn(FAMILIES, s);
}
