// Turns the scheduler's decision for a step into the batch shape the cost model prices, and keeps
// running totals (time, FLOPs, bytes) so a simulated run can report how hard it drove the hardware.
import type { SchedulerOutput, ScheduledSequence } from '../engine/types.js';
import { blockParams, costOfFeatures, headDim, profileKvBytesPerToken, outputParams, type HardwareProfile, type ModelProfile, type SeqShape, type StepCost, type StepFeatures } from './cost-model.js';

/**
 * One scheduled sequence as the cost model sees it. Rows attend keys up to their own position; a
 * padding row sits at the sequence's newest position (or, for a finished row held in a static batch,
 * at its last cached one), exactly as the real runner lays the batch out.
 */
export function seqShape(s: ScheduledSequence): SeqShape {
  const n = s.tokenIds.length;
  const contextLen = n > 0 ? s.startPosition + n : Math.max(1, s.startPosition);
  const shape: SeqShape = { numTokens: n, contextLen, sample: s.sample };
  if (s.padRows) shape.padRows = s.padRows;
  return shape;
}

export function stepShape(out: SchedulerOutput): SeqShape[] {
  return out.scheduled.map(seqShape);
}

export interface CostTotals {
  steps: number;
  ms: number;
  flops: number;
  bytes: number;
  /** Time the roofline part (max of memory and arithmetic) took, and how much of it was memory-bound. */
  rooflineMs: number;
  memBoundSteps: number;
}

/** Prices steps with a hardware and model profile, accumulating totals. */
export class CostModelTimer {
  readonly totals: CostTotals = { steps: 0, ms: 0, flops: 0, bytes: 0, rooflineMs: 0, memBoundSteps: 0 };
  last: StepCost | undefined;
  private numPriced = 0;
  private lastPromptStep = -Infinity;
  // The model's constants, so pricing a step allocates nothing (a simulation prices millions).
  private readonly weightBytes: number;
  private readonly kvPerToken: number;
  private readonly flopsPerRow: number;
  private readonly flopsPerLogitRow: number;
  private readonly flopsPerKey: number;

  constructor(
    readonly hardware: HardwareProfile,
    readonly model: ModelProfile,
  ) {
    this.weightBytes = (blockParams(model) + outputParams(model)) * model.weightBytes;
    this.kvPerToken = profileKvBytesPerToken(model);
    this.flopsPerRow = 2 * blockParams(model);
    this.flopsPerLogitRow = 2 * outputParams(model);
    this.flopsPerKey = 4 * model.nLayers * model.nHeads * headDim(model);
  }

  /** The features of a step, computed straight from the scheduled sequences (same as stepFeatures(stepShape(out))). */
  features(out: SchedulerOutput): StepFeatures {
    let rows = 0;
    let logitRows = 0;
    let keys = 0;
    let kvTokens = 0;
    let prefillRows = 0;
    let prefillSeqs = 0;
    for (const s of out.scheduled) {
      const n = s.tokenIds.length;
      if (n > 1) {
        prefillRows += n;
        prefillSeqs++;
      }
      const pad = s.padRows ?? 0;
      const ctx = n > 0 ? s.startPosition + n : Math.max(1, s.startPosition);
      rows += n + pad;
      if (s.sample) logitRows++;
      keys += (n * (2 * ctx - n + 1)) / 2 + pad * ctx;
      kvTokens += ctx + n;
    }
    const numSeqs = out.scheduled.length;
    const kvBytes = kvTokens * this.kvPerToken;
    return {
      numSeqs,
      rows,
      bytes: numSeqs === 0 ? 0 : this.weightBytes + kvBytes,
      kvBytes,
      linearFlops: this.flopsPerRow * rows + this.flopsPerLogitRow * logitRows,
      attnFlops: this.flopsPerKey * keys,
      prefillRows,
      prefillSeqs,
    };
  }

  /** Virtual milliseconds the step takes; `idleMs` is how long the engine sat idle before it. */
  stepTimeMs(out: SchedulerOutput, idleMs = 0): number {
    const f = this.features(out);
    // Steps priced so far, and the index of the last one with prompt rows (for afterPromptFactors).
    const c = costOfFeatures(this.hardware, f, idleMs, this.numPriced - this.lastPromptStep);
    if (f.prefillRows > 0) this.lastPromptStep = this.numPriced;
    this.numPriced++;
    const t = this.totals;
    t.steps++;
    t.ms += c.ms;
    t.flops += c.flops;
    t.bytes += c.bytes;
    t.rooflineMs += Math.max(c.memMs, c.computeMs);
    if (c.memMs >= c.computeMs) t.memBoundSteps++;
    this.last = c;
    return c.ms;
  }

  /**
   * Model FLOPs utilisation and memory-bandwidth utilisation over `durationMs` of wall time, against
   * the datasheet peak and bandwidth (not the efficiency-derated ones).
   */
  utilization(durationMs: number): { mfu: number; mbu: number } {
    if (!(durationMs > 0)) return { mfu: 0, mbu: 0 };
    const s = durationMs / 1000;
    return {
      mfu: this.totals.flops / s / (this.hardware.peakTflops * 1e12),
      mbu: this.totals.bytes / s / (this.hardware.bandwidthGBs * 1e9),
    };
  }
}
