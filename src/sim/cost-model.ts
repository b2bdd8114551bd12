// Predicts how long one engine step takes from the shape of its batch — a roofline model.
// A step reads every weight once (however many rows share it: the reason batching pays), reads each
// sequence's KV cache once, and does 2 FLOPs per weight per row plus attention's FLOPs. It is bound by
// whichever of memory traffic and arithmetic takes longer, plus a fixed per-step and per-sequence cost.
import profiles from './profiles.json' with { type: 'json' };

export interface HardwareProfile {
  memoryGB: number;
  bandwidthGBs: number;
  peakTflops: number;
  bandwidthEfficiency: number;
  computeEfficiency: number;
  stepOverheadMs: number;
  perSeqOverheadUs: number;
  /** Memory not available to weights or KV (activations, runtime). */
  reservedGB: number;
  /**
   * When set, attention runs at this rate outside the roofline max (CPU kernels: attention is neither
   * bandwidth- nor GEMM-bound). GPU profiles leave it unset: attention is folded into the roofline.
   */
  attentionGflops?: number;
  source?: string;
}

export interface ModelProfile {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  contextLength: number;
  tiedEmbeddings: boolean;
  /** Bytes per weight and per KV element at the serving dtype. */
  weightBytes: number;
  kvBytes: number;
}

/** One sequence's share of a step: rows it computes and how many keys its last row attends. */
export interface SeqShape {
  numTokens: number;
  /** Context length after this step (keys attended by the sequence's last row). */
  contextLen: number;
  /** Whether a logit row (output projection) is computed for it. */
  sample: boolean;
  /** Padding rows computed and discarded (static batching). */
  padRows?: number;
}

export interface StepCost {
  ms: number;
  memMs: number;
  computeMs: number;
  attentionMs: number;
  flops: number;
  bytes: number;
}

export function headDim(m: ModelProfile): number {
  return m.dim / m.nHeads;
}

/** Weights of the transformer blocks (the part every row multiplies through). */
export function blockParams(m: ModelProfile): number {
  const hd = headDim(m);
  const attn = m.dim * m.nHeads * hd * 2 + m.dim * m.nKvHeads * hd * 2;
  const ffn = 3 * m.dim * m.hiddenDim;
  return m.nLayers * (attn + ffn + 2 * m.dim);
}

export function outputParams(m: ModelProfile): number {
  return m.vocabSize * m.dim;
}

export function totalParams(m: ModelProfile): number {
  return blockParams(m) + outputParams(m) * (m.tiedEmbeddings ? 1 : 2) + m.dim;
}

export function kvBytesPerToken(m: ModelProfile): number {
  return 2 * m.nLayers * m.nKvHeads * headDim(m) * m.kvBytes;
}

/** Tokens of KV cache that fit beside the weights. */
export function kvCapacityTokens(hw: HardwareProfile, m: ModelProfile): number {
  const free = (hw.memoryGB - hw.reservedGB) * 1e9 - totalParams(m) * m.weightBytes;
  return Math.max(0, Math.floor(free / kvBytesPerToken(m)));
}

export function stepCost(hw: HardwareProfile, m: ModelProfile, seqs: readonly SeqShape[]): StepCost {
  if (seqs.length === 0) return { ms: 0, memMs: 0, computeMs: 0, attentionMs: 0, flops: 0, bytes: 0 };
  let rows = 0;
  let logitRows = 0;
  let attnFlops = 0;
  let kvBytes = 0;
  const qWidth = m.nHeads * headDim(m);
  for (const s of seqs) {
    const pad = s.padRows ?? 0;
    rows += s.numTokens + pad;
    if (s.sample) logitRows++;
    // Row i of the chunk attends (contextLen - numTokens + i + 1) keys; QK^T and PV are 2 FLOPs each per key per dim.
    const first = s.contextLen - s.numTokens + 1;
    const keys = s.numTokens * (first + s.contextLen) / 2 + pad * s.contextLen;
    attnFlops += 4 * m.nLayers * qWidth * keys;
    // Flash-style attention reads a sequence's KV once per step and writes its new rows.
    kvBytes += (s.contextLen + s.numTokens) * kvBytesPerToken(m);
  }
  const linearFlops = 2 * blockParams(m) * rows + 2 * outputParams(m) * logitRows;
  const weightBytes = (blockParams(m) + outputParams(m)) * m.weightBytes;
  const bytes = weightBytes + kvBytes;
  const memMs = (bytes / (hw.bandwidthGBs * 1e9 * hw.bandwidthEfficiency)) * 1e3;
  const separateAttention = hw.attentionGflops !== undefined;
  const computeFlops = separateAttention ? linearFlops : linearFlops + attnFlops;
  const computeMs = (computeFlops / (hw.peakTflops * 1e12 * hw.computeEfficiency)) * 1e3;
  const attentionMs = separateAttention ? (attnFlops / (hw.attentionGflops! * 1e9)) * 1e3 : 0;
  const ms = hw.stepOverheadMs + (hw.perSeqOverheadUs * seqs.length) / 1e3 + Math.max(memMs, computeMs) + attentionMs;
  return { ms, memMs, computeMs, attentionMs, flops: linearFlops + attnFlops, bytes };
}

export const HARDWARE: Record<string, HardwareProfile> = profiles.hardware;
export const MODELS: Record<string, ModelProfile> = profiles.models;
