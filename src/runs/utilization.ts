// How much of the machine a batching policy puts to work, from the engine's step trace.
//
// Slot utilisation: sequence slots doing useful work / slots available. Useful = a sequence that
// computed a real token in the step (a prompt chunk or a decode), never a static batch's padding row
// or finished-but-held row. Available = max_num_seqs for continuous batching, the batch size B for
// static batching, 1 for no batching. It is reported over the *saturated phase* — steps that decoded
// while requests were still waiting, where an idle slot is pure waste — and over the whole run,
// drain included.
//
// Compute utilisation: achieved FLOP/s over the kernels' measured peak. A step's useful FLOPs are
// 2 * (matmul weights of the blocks) per computed token + 2 * vocab * dim per sampled row + the
// attention FLOPs (4 * layers * heads * headDim per key a token attends to).
import type { BatchingPolicy, StepRecord } from '../engine/step-trace.js';

export interface SlotUtilization {
  /** Over decode steps taken while requests were waiting; null when there were none. */
  saturated: number | null;
  /** Over every step of the run. */
  overall: number;
  saturatedSteps: number;
  steps: number;
  /** Slots available per step. */
  capacity: number;
}

/** Slots a step has under a policy. Static batches are also bounded by max_num_seqs (the scheduler's seat limit). */
export function slotCapacity(policy: BatchingPolicy, maxNumSeqs: number, staticBatchSize: number): number {
  if (policy === 'none') return 1;
  if (policy === 'static') return Math.min(staticBatchSize, maxNumSeqs);
  return maxNumSeqs;
}

/** Sequences that computed a real token in the step. */
export function usefulSeqs(r: StepRecord): number {
  let n = 0;
  for (const s of r.seqs) if (s.prefillTokens + s.decodeTokens > 0) n++;
  return n;
}

/** A step of the saturated phase: it decoded while requests were left waiting. */
export function isSaturatedStep(r: StepRecord): boolean {
  return r.numDecodeTokens > 0 && r.numWaiting > 0;
}

export function slotUtilization(records: readonly StepRecord[], capacity: number): SlotUtilization {
  if (!(capacity >= 1)) throw new RangeError(`slot capacity must be >= 1, got ${capacity}`);
  let used = 0;
  let satUsed = 0;
  let satSteps = 0;
  for (const r of records) {
    const u = Math.min(usefulSeqs(r), capacity);
    used += u;
    if (isSaturatedStep(r)) {
      satUsed += u;
      satSteps++;
    }
  }
  return {
    saturated: satSteps > 0 ? satUsed / (satSteps * capacity) : null,
    overall: records.length > 0 ? used / (records.length * capacity) : 0,
    saturatedSteps: satSteps,
    steps: records.length,
    capacity,
  };
}

/** The model dimensions FLOP counting needs (a ModelConfig, or a simulated model's profile). */
export interface ModelShape {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  vocabSize: number;
}

export interface FlopModel {
  /** 2 * weights of the transformer blocks' matmuls: FLOPs every computed token costs. */
  perToken: number;
  /** 2 * vocab * dim: the output projection, paid only by rows whose logits are computed. */
  perLogitRow: number;
  /** 4 * layers * heads * headDim: attention FLOPs per (query token, key) pair (q.k and p.v). */
  perAttendedKey: number;
}

export function flopModel(c: ModelShape): FlopModel {
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const perLayer = c.dim * q + 2 * c.dim * kv + q * c.dim + 3 * c.dim * c.hiddenDim;
  return {
    perToken: 2 * c.nLayers * perLayer,
    perLogitRow: 2 * c.vocabSize * c.dim,
    perAttendedKey: 4 * c.nLayers * c.nHeads * c.headDim,
  };
}

/** Matmul weights of the model (blocks plus output projection), the "params" of 2 * params * tokens. */
export function matmulParams(c: ModelShape): number {
  const m = flopModel(c);
  return (m.perToken + m.perLogitRow) / 2;
}

/**
 * Useful FLOPs of each step. Positions are tracked per sequence from the trace (a sequence that
 * prefills again after decoding was preempted and recomputes from position 0); prefix-cache hits
 * skip computation and are not counted, which slightly underestimates attention for their rows.
 */
export function stepFlops(records: readonly StepRecord[], m: FlopModel): number[] {
  const pos = new Map<number, { at: number; decoded: boolean }>();
  return records.map((r) => {
    let f = 0;
    for (const s of r.seqs) {
      const n = s.prefillTokens + s.decodeTokens;
      if (n === 0) continue;
      let p = pos.get(s.seqId);
      if (!p) pos.set(s.seqId, (p = { at: 0, decoded: false }));
      if (s.prefillTokens > 0 && p.decoded) {
        p.at = 0;
        p.decoded = false;
      }
      // Token at position t attends keys 0..t: sum over t = at .. at+n-1 of (t + 1).
      const keys = n * p.at + (n * (n + 1)) / 2;
      f += n * m.perToken + keys * m.perAttendedKey + (s.sampled ? m.perLogitRow : 0);
      p.at += n;
      if (s.decodeTokens > 0) p.decoded = true;
    }
    return f;
  });
}

export interface ComputeUtilization {
  totalFlops: number;
  achievedFlops: number;
  peakFlops: number;
  utilization: number;
}

export function computeUtilization(records: readonly StepRecord[], config: ModelShape, durationS: number, peakFlops: number): ComputeUtilization {
  let totalFlops = 0;
  for (const f of stepFlops(records, flopModel(config))) totalFlops += f;
  const achievedFlops = durationS > 0 ? totalFlops / durationS : 0;
  return { totalFlops, achievedFlops, peakFlops, utilization: peakFlops > 0 ? achievedFlops / peakFlops : 0 };
}

/** Decode tokens per second of engine time, over the steps that did no prefill work. */
export function decodeThroughput(steps: readonly StepRecord[]): number | null {
  let tokens = 0;
  let ms = 0;
  for (const s of steps) {
    if (s.numPrefillTokens > 0 || s.numDecodeTokens === 0) continue;
    tokens += s.numDecodeTokens;
    ms += s.totalMs;
  }
  return ms > 0 ? tokens / (ms / 1000) : null;
}
