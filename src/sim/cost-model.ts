// Predicts how long one engine step takes from the shape of its batch — a roofline model.
// A step reads every weight once (however many rows share it: the reason batching pays), reads each
// sequence's KV cache once, and does 2 FLOPs per weight per row plus attention's FLOPs. It is bound by
// whichever of memory traffic and arithmetic takes longer, plus a fixed per-step, per-sequence and
// per-row cost (scheduling, kernel launches or thread wake-ups, sampling, moving the batch around).
//
// The same formula serves two kinds of profile: datasheet GPUs (bandwidth and peak from the vendor,
// times the fraction a real serving engine reaches) and a CPU profile measured on this machine by
// `stepwise calibrate`, whose parameters are fitted to measured step times (see calibration-fit.ts). A
// CPU profile swaps three parts for what the measurements showed: the per-row work is a measured
// curve instead of the max, attention's FLOPs and KV reads are added on as a pass of their own, and
// a step on an idle engine costs a measured factor more.

import { kvBytesPerToken } from '../util/kv-bytes.js';

/** What a machine offers a serving engine. All rates are what the engine achieves, after efficiency. */
export interface HardwareProfile {
  /** Memory that holds the weights and the KV cache (GB = 1e9 bytes). */
  memoryGB: number;
  /** Memory bandwidth (GB/s) and dense peak (TFLOP/s) at the weight dtype, as the datasheet says. */
  bandwidthGBs: number;
  peakTflops: number;
  /** Fractions of bandwidth and peak a real engine reaches (1 for calibrated profiles: already measured). */
  bandwidthEfficiency: number;
  computeEfficiency: number;
  /** Fixed cost of a step: scheduling, launches or thread wake-ups, the hop to the runner and back. */
  stepOverheadMs: number;
  /** Cost per scheduled sequence: its sampling, its share of batch assembly and output handling. */
  perSeqOverheadUs: number;
  /** Cost per batched row that neither the weights nor the arithmetic peak explain (elementwise kernels, copies). Default 0. */
  perTokenUs?: number;
  /** Memory not available to weights or KV (activations, runtime). */
  reservedGB: number;
  /**
   * When set, the KV cache gets exactly this much memory instead of what is left beside the weights
   * (a CPU engine allocates a fixed budget; a GPU engine takes whatever remains).
   */
  kvCacheGB?: number;
  /**
   * When set, attention runs at this rate outside the roofline max (CPU kernels: attention is neither
   * bandwidth- nor GEMM-bound). GPU profiles leave it unset: attention is folded into the roofline.
   */
  attentionGflops?: number;
  /**
   * When set, reading the KV cache is priced on its own at this rate (GB/s), added to the step
   * rather than inside the roofline max: a CPU engine's attention walks each sequence's cache in a
   * pass of its own, after the weight GEMMs, so the two do not overlap. Calibrated profiles written
   * before kvReadCurve set it.
   */
  kvBandwidthGBs?: number;
  /**
   * When set, the time of a step's per-row work (ms) at given row counts, linear in between — a
   * measured curve that replaces the roofline max (calibrated CPU profiles: a CPU's GEMMs grow
   * cheaper per row as the batch grows instead of switching from memory- to compute-bound at one
   * point). Bandwidth and peak then serve only the utilisation figures.
   */
  rowCurve?: Array<[rows: number, ms: number]>;
  /**
   * When set, a step that starts after the engine sat idle for longer than COLD_AFTER_IDLE_MS takes
   * this many times as long: while a CPU engine waits, other work takes its caches and the core
   * clocks down. Calibrated CPU profiles measure it; GPU profiles leave it unset (1).
   */
  coldStepFactor?: number;
  /**
   * When set, what a prompt chunk costs the engine beyond the measured forward pass: per chunk row
   * and per chunk (µs). Written by earlier calibrations (now prefillExcessCurve: one rate per row
   * overcharged 2048-row prompt batches by 5-12% to get small prompts right); still priced.
   */
  perPrefillRowUs?: number;
  perPrefillSeqUs?: number;
  /**
   * When set, what a step's prompt chunks cost the engine beyond the measured forward pass (ms) at
   * given counts of the step's prompt rows, linear in between, from [0, 0], and the last point's value
   * past it. Calibrated CPU profiles fit it to the engine's own prompt steps: a single prompt of up to
   * a few hundred rows ran 5-8% over a grid shape of its size, a 2048-row batch of prompts ~0-1%, which
   * one rate per row cannot say (it overcharged the big batches by 5-12%).
   */
  prefillExcessCurve?: Array<[rows: number, ms: number]>;
  /**
   * When set, the time to read a step's KV cache (ms) at given sizes of it (bytes), linear in between,
   * from [0, 0], the end segment extended: replaces kvBandwidthGBs. Calibrated CPU profiles fit it: on
   * this project's machine a small cache cost ~3x more per byte than a big one (~1 ms for 4 MiB, ~7 ms
   * for 64 MiB, ~20 ms for 254 MiB), and one bandwidth left the grid's fit at 4.7-7.9% rms error, the curve
   * at ~3%.
   */
  kvReadCurve?: Array<[bytes: number, ms: number]>;
  /**
   * When set, the k-th step without prompt rows after a step with them takes afterPromptFactors[k-1]
   * times as long (later ones x1). Calibrated CPU profiles measure it: on an Intel Xeon (Sapphire
   * Rapids) the first decode steps after a prompt step ran 1.2-1.6x the same steps later on, fading
   * over four steps (presumably the prompt step's activations push weights and KV out of the caches;
   * not proven). GPU profiles leave it unset.
   */
  afterPromptFactors?: number[];
  source?: string;
}

/** Idle time after which a step counts as cold (coldStepFactor applies). */
export const COLD_AFTER_IDLE_MS = 1;

/** The shape of a Llama-family model, and the bytes its weights and KV cache take at the serving dtype. */
export interface ModelProfile {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** Width of one head (default dim / nHeads). */
  headDim?: number;
  vocabSize: number;
  contextLength: number;
  tiedEmbeddings: boolean;
  /** Bytes per weight and per KV element at the serving dtype. */
  weightBytes: number;
  kvBytes: number;
  source?: string;
}

/** One sequence's share of a step: rows it computes and how many keys its last row attends. */
export interface SeqShape {
  numTokens: number;
  /** Context length after this step (keys attended by the sequence's last row). */
  contextLen: number;
  /** Whether a logit row (output projection) is computed for it. */
  sample: boolean;
  /** Padding rows computed and discarded (static batching); each attends contextLen keys. */
  padRows?: number;
}

export interface StepCost {
  ms: number;
  /** Memory-traffic time, arithmetic time (attention included unless separate), separate attention time (its FLOPs and KV reads, when priced apart), fixed costs. */
  memMs: number;
  computeMs: number;
  attentionMs: number;
  overheadMs: number;
  /** Useful arithmetic and bytes moved. */
  flops: number;
  bytes: number;
}

export function headDim(m: ModelProfile): number {
  return m.headDim ?? m.dim / m.nHeads;
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

/** Bytes of KV cache one token takes under this profile (the engine's sizing formula). */
export function profileKvBytesPerToken(m: ModelProfile): number {
  return kvBytesPerToken({ nLayers: m.nLayers, nKvHeads: m.nKvHeads, headDim: headDim(m) }, m.kvBytes);
}

/** Bytes of KV cache the engine gets on this hardware for this model. */
export function kvCacheBytes(hw: HardwareProfile, m: ModelProfile): number {
  if (hw.kvCacheGB !== undefined) return hw.kvCacheGB * 1e9;
  return Math.max(0, (hw.memoryGB - hw.reservedGB) * 1e9 - totalParams(m) * m.weightBytes);
}

/** Tokens of KV cache that fit. */
export function kvCapacityTokens(hw: HardwareProfile, m: ModelProfile): number {
  return Math.floor(kvCacheBytes(hw, m) / profileKvBytesPerToken(m));
}

/** The counts a step's time is a function of (separated from the rates, so calibration can fit them). */
export interface StepFeatures {
  numSeqs: number;
  /** Rows of the forward pass, padding included. */
  rows: number;
  /** Bytes read or written: every weight once, each sequence's KV once, the new KV rows. */
  bytes: number;
  /** The KV-cache part of `bytes`. */
  kvBytes: number;
  /** Matmul FLOPs (blocks for every row, output projection for sampled rows). */
  linearFlops: number;
  /** Attention FLOPs (q·k and p·v over every attended key). */
  attnFlops: number;
  /** Rows of prompt chunks (sequences computing more than one token this step), and how many such chunks. */
  prefillRows: number;
  prefillSeqs: number;
}

export function stepFeatures(m: ModelProfile, seqs: readonly SeqShape[]): StepFeatures {
  let rows = 0;
  let logitRows = 0;
  let keys = 0;
  let kvTokens = 0;
  let prefillRows = 0;
  let prefillSeqs = 0;
  for (const s of seqs) {
    const pad = s.padRows ?? 0;
    if (s.numTokens > 1) {
      prefillRows += s.numTokens;
      prefillSeqs++;
    }
    rows += s.numTokens + pad;
    if (s.sample) logitRows++;
    // Row i of a chunk attends (contextLen - numTokens + i + 1) keys; a padding row attends contextLen.
    const first = s.contextLen - s.numTokens + 1;
    keys += (s.numTokens * (first + s.contextLen)) / 2 + pad * s.contextLen;
    // Flash-style attention reads a sequence's KV once per step and writes its new rows.
    kvTokens += s.contextLen + s.numTokens;
  }
  const qWidth = m.nHeads * headDim(m);
  const kvBytes = kvTokens * profileKvBytesPerToken(m);
  return {
    numSeqs: seqs.length,
    rows,
    bytes: seqs.length === 0 ? 0 : (blockParams(m) + outputParams(m)) * m.weightBytes + kvBytes,
    kvBytes,
    linearFlops: 2 * blockParams(m) * rows + 2 * outputParams(m) * logitRows,
    attnFlops: 4 * m.nLayers * qWidth * keys,
    prefillRows,
    prefillSeqs,
  };
}

/**
 * A measured curve's value at `x` (rows for rowCurve, KV bytes for kvReadCurve): linear between its
 * [x, ms] points, extended along the end segments.
 */
export function curveMs(curve: ReadonlyArray<readonly [number, number]>, x: number): number {
  if (x <= 0 || curve.length === 0) return 0;
  if (curve.length === 1) return (curve[0][1] * x) / curve[0][0];
  let i = 1;
  while (i < curve.length - 1 && x > curve[i][0]) i++;
  const [x0, m0] = curve[i - 1];
  const [x1, m1] = curve[i];
  return Math.max(0, m0 + ((m1 - m0) * (x - x0)) / (x1 - x0));
}

/** A curve's value at `x`: linear between its points, its last value past the last point. */
export function flatCurveMs(curve: ReadonlyArray<readonly [number, number]>, x: number): number {
  if (curve.length === 0) return 0;
  const last = curve[curve.length - 1];
  return x >= last[0] ? last[1] : curveMs(curve, x);
}

/**
 * Time of a step with these features on this hardware, `idleMs` after the previous step ended and
 * `stepsSincePrompt` steps after the last step with prompt rows (0 or less: none before it).
 */
export function costOfFeatures(hw: HardwareProfile, f: StepFeatures, idleMs = 0, stepsSincePrompt = 0): StepCost {
  if (f.numSeqs === 0) return { ms: 0, memMs: 0, computeMs: 0, attentionMs: 0, overheadMs: 0, flops: 0, bytes: 0 };
  const separateKv = hw.kvBandwidthGBs !== undefined || hw.kvReadCurve !== undefined;
  const memMs = ((separateKv ? f.bytes - f.kvBytes : f.bytes) / (hw.bandwidthGBs * 1e9 * hw.bandwidthEfficiency)) * 1e3;
  const separateAttention = hw.attentionGflops !== undefined;
  const computeFlops = separateAttention ? f.linearFlops : f.linearFlops + f.attnFlops;
  const computeMs = (computeFlops / (hw.peakTflops * 1e12 * hw.computeEfficiency)) * 1e3;
  const attentionMs =
    (separateAttention ? (f.attnFlops / (hw.attentionGflops! * 1e9)) * 1e3 : 0) +
    (hw.kvReadCurve ? curveMs(hw.kvReadCurve, f.kvBytes) : separateKv ? (f.kvBytes / (hw.kvBandwidthGBs! * 1e9)) * 1e3 : 0);
  const overheadBaseMs =
    hw.stepOverheadMs +
    (hw.perSeqOverheadUs * f.numSeqs + (hw.perTokenUs ?? 0) * f.rows + (hw.perPrefillRowUs ?? 0) * f.prefillRows + (hw.perPrefillSeqUs ?? 0) * f.prefillSeqs) / 1e3;
  const excessMs = hw.prefillExcessCurve && f.prefillRows > 0 ? flatCurveMs(hw.prefillExcessCurve, f.prefillRows) : 0;
  const overheadMs = overheadBaseMs + excessMs;
  const rowsMs = hw.rowCurve ? curveMs(hw.rowCurve, f.rows) : Math.max(memMs, computeMs);
  const cold = hw.coldStepFactor !== undefined && idleMs > COLD_AFTER_IDLE_MS ? hw.coldStepFactor : 1;
  const ms = (overheadMs + rowsMs + attentionMs) * cold * afterPromptFactor(hw.afterPromptFactors, f, stepsSincePrompt);
  return { ms, memMs, computeMs, attentionMs, overheadMs, flops: f.linearFlops + f.attnFlops, bytes: f.bytes };
}

/** The multiplier `factors` (a profile's afterPromptFactors) give a step with these features, `stepsSincePrompt` after the last prompt step. */
export function afterPromptFactor(factors: readonly number[] | undefined, f: StepFeatures, stepsSincePrompt: number): number {
  if (!factors || f.prefillRows > 0 || stepsSincePrompt < 1 || stepsSincePrompt > factors.length) return 1;
  return factors[stepsSincePrompt - 1];
}

export function stepCost(hw: HardwareProfile, m: ModelProfile, seqs: readonly SeqShape[]): StepCost {
  return costOfFeatures(hw, stepFeatures(m, seqs));
}

/** Peak arithmetic rate (FLOP/s) a profile credits the hardware with, for utilisation figures. */
export function peakFlops(hw: HardwareProfile): number {
  return hw.peakTflops * 1e12;
}
