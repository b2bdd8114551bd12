// Fits a CPU profile to what calibration measured on this machine (the measuring is in
// src/bench/calibrate/): the forward pass's row curve, per-sequence cost and attention rates are fitted
// to the grid and the engine's forward times together (fitCalibration); the engine's own cost per step
// (period minus forward: scheduling, the hop to the worker and back, update, delivery) is fitted as a
// line in the number of sequences and added to the fixed costs. Both fits reproduce mean times by
// default: a simulated run's duration is a sum of step times, and a sum follows the mean. Nothing here
// measures, so saved samples can be refitted offline (bench/sim-refit.ts).
import { totalmem } from 'node:os';
import { afterPromptFactor, COLD_AFTER_IDLE_MS, costOfFeatures, type HardwareProfile, type SeqShape, type StepFeatures } from './cost-model.js';
import { FitError, fitEngineOverhead, fitRoofline, fitRowCurve, median, type RooflineFit, type RowCurveFit } from './fit.js';

/** What a grid shape is: decode steps, prompt chunks, or both in one step. */
export type ShapeKind = 'decode' | 'prefill' | 'mixed';

/** The KV budget LLM.load gives a model when not told otherwise (see src/llm.ts). */
export const ENGINE_DEFAULT_KV_BYTES = 1024 ** 3;

export interface ShapeMeasurement {
  label: string;
  kind: ShapeKind;
  seqs: SeqShape[];
  features: StepFeatures;
  /** Trimmed mean forward + sampling time over the repetitions. */
  ms: number;
  samples: number[];
}

/**
 * Prompt-row counts the engine's prompt-chunk excess has points at: powers of four from 16 up to the
 * most prompt rows an engine step had, at most PREFILL_EXCESS_MAX_ROWS (the excess stays flat past
 * the last point); none when no engine step had a prompt.
 */
export function prefillRowKnots(prefillRows: readonly number[]): number[] | undefined {
  const most = Math.min(PREFILL_EXCESS_MAX_ROWS, prefillRows.reduce((m, r) => Math.max(m, r), 0));
  if (most < 2) return undefined;
  const knots: number[] = [];
  for (let r = 16; r < most; r *= 4) knots.push(r);
  knots.push(most);
  return knots;
}

/**
 * The prompt excess is fitted up to this many prompt rows and held flat beyond. Calibration's engine
 * runs have hundreds of prompt steps up to ~300 rows per protocol run but only ~25 bigger ones, whose
 * times swing ±25% here: a free point at 1024 or 2048 rows followed that noise (one run priced
 * 2048-row steps 17% over the grid and the real runs). Refitting eight saved fidelity runs, single
 * figures within 5%: 94/144 with points up to 64 rows, 95/144 up to 256, 86/144 up to 512, 87/144
 * with no cap.
 */
const PREFILL_EXCESS_MAX_ROWS = 256;

/**
 * KV-cache sizes the KV-read curve has points at: powers of four from 1 MiB up to the biggest step's
 * KV bytes, and that; none below two points' worth of range.
 */
export function kvSizeKnots(kvBytes: readonly number[]): number[] | undefined {
  const most = kvBytes.reduce((m, b) => Math.max(m, b), 0);
  const knots: number[] = [];
  for (let b = 1 << 20; b < most; b *= 4) knots.push(b);
  knots.push(most);
  return knots.length >= 2 ? knots : undefined;
}

/**
 * Row counts the fitted row curve has points at: powers of two up to the most rows measured, and
 * that; every other interior point dropped while there are too few measurements to pin them all.
 */
export function rowKnots(data: ReadonlyArray<{ features: StepFeatures }>): number[] {
  const most = Math.max(2, ...data.map((d) => d.features.rows));
  let knots: number[] = [];
  for (let r = 1; r < most; r *= 2) knots.push(r);
  knots.push(most);
  while (knots.length > 2 && knots.length + 3 > data.length) knots = knots.filter((_, i) => i === 0 || i === knots.length - 1 || i % 2 === 0);
  return knots;
}

/** One engine step as calibration sees it: its exact shape (from the SchedulerOutput) and its trace record. */
export interface EngineStepSample {
  /** The engine run it came from. */
  run: EngineRunKind;
  /** The step's batch, as the scheduler sent it. */
  shape: SeqShape[];
  features: StepFeatures;
  /** Step start to the next step's start (NaN when the engine sat idle before the next step). */
  periodMs: number;
  /** The runner's own forward + sampling time. */
  runnerMs: number;
  /** The engine's whole step: schedule, execute (the hop to the worker and back), update. */
  totalMs: number;
  /** How long the engine sat idle before this step (Infinity for a run's first step). */
  idleBeforeMs: number;
}

/**
 * The engine runs calibration makes: continuous batching with up to 32 sequences, static batches of
 * 16, a few requests one at a time (`none`: the one-sequence decode level, which every unbatched
 * figure rests on), a few requests with idle gaps between them (`sparse`: continuous, each
 * request's first step starting on an idle engine), and requests arriving one at a time while others
 * run (`trickle`: continuous with a few sequences and a prompt joining every few steps, the shape of
 * moderate online traffic, which the offline runs never make).
 */
export type EngineRunKind = 'continuous' | 'static' | 'none' | 'sparse' | 'trickle';

/**
 * How the fit turns noisy samples into one step time per shape. 'mean' (default): the row curve is
 * fitted on errors relative to its own prediction and the engine overhead per batch size is a mean,
 * so the profile reproduces mean step times, which throughput adds up. 'robust': errors relative to
 * the measured time and median overheads, which lean toward the fast samples (by about the samples'
 * squared coefficient of variation, ~5-9% on this project's machine for one-sequence steps).
 */
export type CalibrationEstimate = 'mean' | 'robust';

/** How well a whole profile predicts the engine runs' step periods. */
export interface EngineCheck {
  steps: number;
  meanRelError: number;
  medianAbsRelError: number;
  totalRelError: number;
}

export interface CalibrationFit {
  hardware: HardwareProfile;
  /** The row curve fitted to the grid alone (a diagnostic), and to grid and engine together (the profile's). */
  gridFit: RowCurveFit;
  curveFit: RowCurveFit;
  roofline: RooflineFit;
  overhead: { stepOverheadMs: number; perSeqOverheadUs: number };
  engineCheck: EngineCheck;
}

export interface FitCalibrationOptions {
  estimate?: CalibrationEstimate;
  /** The grid's share of the forward fit's total weight; the engine's steps get the rest (default 0.5). */
  gridWeight?: number;
  /** The profile's `source` line. */
  source?: string;
  /** How the engine's prompt-chunk excess is priced: one rate per row and per chunk ('linear'), or a curve in the step's prompt rows ('curve', default). */
  prefill?: 'linear' | 'curve';
  /** How reading the KV cache is priced: one bandwidth ('linear'), or a curve in the step's KV bytes ('curve', default). */
  kv?: 'linear' | 'curve';
  /** Whether the slow decode steps right after a prompt step are measured into afterPromptFactors ('fit', default) or not ('off'). */
  afterPrompt?: 'fit' | 'off';
}

/** Decode steps after a prompt step that get a factor of their own (measured: the transient fades over about four). */
export const AFTER_PROMPT_STEPS = 4;

/** Fewest warm decode steps at each distance from a prompt step (and after them) to measure the factors from. */
const MIN_AFTER_PROMPT_SAMPLES = 5;

/** For each engine step, how many steps it comes after the last step with prompt rows in its run (Infinity: none yet). */
export function stepsSincePrompt(steps: readonly Pick<EngineStepSample, 'features' | 'idleBeforeMs'>[]): number[] {
  const out: number[] = [];
  let last = -Infinity;
  steps.forEach((s, i) => {
    if (s.idleBeforeMs === Infinity) last = -Infinity; // a run's first step
    out.push(i - last);
    if (s.features.prefillRows > 0) last = i;
  });
  return out;
}

/**
 * The afterPromptFactors of a profile fitted without them: for the warm steps without prompt rows,
 * measured over predicted step time at each distance 1..AFTER_PROMPT_STEPS from the last prompt step,
 * against the same ratio for the steps further on (medians: a few slow outliers must not make a
 * transient). Undefined when too few steps say, or when no distance runs slow.
 */
export function fitAfterPromptFactors(hw: HardwareProfile, steps: readonly EngineStepSample[], since: readonly number[]): number[] | undefined {
  const ratios: number[][] = Array.from({ length: AFTER_PROMPT_STEPS + 1 }, () => []);
  steps.forEach((s, i) => {
    if (s.features.prefillRows > 0 || !(s.idleBeforeMs <= COLD_AFTER_IDLE_MS) || !Number.isFinite(since[i])) return;
    ratios[Math.min(since[i], AFTER_PROMPT_STEPS + 1) - 1].push(s.totalMs / costOfFeatures(hw, s.features).ms);
  });
  if (ratios.some((r) => r.length < MIN_AFTER_PROMPT_SAMPLES)) return undefined;
  const steady = median(ratios[AFTER_PROMPT_STEPS]);
  const factors = ratios.slice(0, AFTER_PROMPT_STEPS).map((r) => round(Math.max(1, median(r) / steady), 4));
  while (factors.length > 0 && factors[factors.length - 1] === 1) factors.pop();
  return factors.length > 0 ? factors : undefined;
}

/**
 * Fits a CPU profile to calibration samples: the grid's per-shape times and the engine runs' traced
 * steps. Pure (no measuring), so saved samples can be refitted offline (bench/sim-refit.ts).
 */
export function fitCalibration(forward: readonly Pick<ShapeMeasurement, 'features' | 'ms'>[], engineSteps: readonly EngineStepSample[], opts: FitCalibrationOptions = {}): CalibrationFit {
  const since = stepsSincePrompt(engineSteps);
  let fit = fitProfile(forward, engineSteps, opts);
  const factors = (opts.afterPrompt ?? 'fit') === 'fit' ? fitAfterPromptFactors(fit.hardware, engineSteps, since) : undefined;
  if (factors) {
    // Refit with those steps brought back to their steady time, so the transient is priced by the
    // factors alone and not also smeared into the per-sequence and row terms.
    const steady = engineSteps.map((s, i) => {
      const f = afterPromptFactor(factors, s.features, since[i]);
      return f === 1 ? s : { ...s, runnerMs: s.runnerMs / f, totalMs: s.totalMs / f, periodMs: s.periodMs / f };
    });
    fit = fitProfile(forward, steady, opts);
    fit.hardware.afterPromptFactors = factors;
  }
  // The whole profile against the engine runs' own step periods: what the simulator will be judged on.
  const warm = engineSteps.map((s, i) => ({ s, since: since[i] })).filter(({ s }) => s.idleBeforeMs <= COLD_AFTER_IDLE_MS && Number.isFinite(s.periodMs));
  const predicted = warm.map(({ s, since }) => costOfFeatures(fit.hardware, s.features, 0, since).ms);
  const rel = warm.map(({ s }, i) => (predicted[i] - s.periodMs) / s.periodMs);
  const predictedTotal = predicted.reduce((n, p) => n + p, 0);
  const measuredTotal = warm.reduce((n, { s }) => n + s.periodMs, 0);
  const engineCheck = {
    steps: warm.length,
    meanRelError: rel.reduce((a, b) => a + b, 0) / Math.max(1, rel.length),
    medianAbsRelError: rel.length ? median(rel.map(Math.abs)) : 0,
    totalRelError: measuredTotal > 0 ? (predictedTotal - measuredTotal) / measuredTotal : 0,
  };
  return { ...fit, engineCheck };
}

/** fitCalibration's profile, without afterPromptFactors and without the engine check. */
function fitProfile(forward: readonly Pick<ShapeMeasurement, 'features' | 'ms'>[], engineSteps: readonly EngineStepSample[], opts: FitCalibrationOptions): Omit<CalibrationFit, 'engineCheck'> {
  const meanEstimate = (opts.estimate ?? 'mean') === 'mean';
  // The forward pass is fitted to the grid and to the forward passes the engine itself timed (the
  // shapes real traffic makes, under the conditions it runs in), weighted `gridWeight` to the rest
  // (equally by default). Step time
  // comes from a measured row curve (fitRowCurve); the roofline fit gives the bandwidth and peak
  // the utilisation figures are quoted against. Steps on an idle engine are priced by coldStepFactor
  // below, not here.
  const warm = engineSteps.filter((s) => s.idleBeforeMs <= COLD_AFTER_IDLE_MS);
  // A kind of engine run measured more often than others (the fidelity bench's extra `none` slices)
  // gains precision, not weight: each kind weighs in proportion to its steps per run. A run's first
  // step is the one with nothing before it.
  const runs = new Map<EngineRunKind, number>();
  for (const s of engineSteps) if (s.idleBeforeMs === Infinity) runs.set(s.run, (runs.get(s.run) ?? 0) + 1);
  const kindFactor = (k: EngineRunKind) => 1 / Math.max(1, runs.get(k) ?? 0);
  const timedEngine = warm.filter((s) => s.runnerMs > 0);
  const gridShare = opts.gridWeight ?? 0.5;
  if (!(gridShare > 0 && gridShare < 1)) throw new FitError(`the grid's weight must lie strictly between 0 and 1, got ${gridShare}`);
  const w = (forward.length * (1 - gridShare)) / gridShare / Math.max(1e-9, timedEngine.reduce((n, s) => n + kindFactor(s.run), 0));
  const gridData = forward.map((m) => ({ features: m.features, ms: m.ms }));
  const timed = [
    ...gridData,
    ...timedEngine.map((s) => ({ features: s.features, ms: s.runnerMs, weight: w * kindFactor(s.run), engine: true })),
  ];
  const curveOpts = { relativeTo: meanEstimate ? ('predicted' as const) : ('measured' as const) };
  const kvKnots = (opts.kv ?? 'curve') === 'curve' ? kvSizeKnots(timed.map((d) => d.features.kvBytes)) : undefined;
  const gridFit = fitRowCurve(gridData, rowKnots(forward), { ...curveOpts, kvKnots });
  const prefillKnots = (opts.prefill ?? 'curve') === 'curve' ? prefillRowKnots(timedEngine.map((s) => s.features.prefillRows)) : undefined;
  const curveFit = fitRowCurve(timed, rowKnots(timed), { ...curveOpts, prefillKnots, kvKnots });
  const roofline = fitRoofline(timed);
  const overhead = fitEngineOverhead(
    warm.filter((s) => Number.isFinite(s.periodMs)).map((s) => ({ numSeqs: s.features.numSeqs, overheadMs: s.periodMs - s.runnerMs })),
    { center: meanEstimate ? 'mean' : 'median' },
  );

  const finite = (x: number, fallback: number) => (Number.isFinite(x) ? x : fallback);
  const hardware: HardwareProfile = {
    memoryGB: round(totalmem() / 1e9, 3),
    // A rate the data never needed (e.g. no step was memory-bound) is left effectively unlimited.
    bandwidthGBs: round(finite(roofline.bandwidthGBs, 1e6), 4),
    peakTflops: round(finite(roofline.peakTflops, 1e6), 6),
    bandwidthEfficiency: 1,
    computeEfficiency: 1,
    // The forward pass's own fixed cost is the curve's value at one row.
    stepOverheadMs: round(overhead.stepOverheadMs, 4),
    perSeqOverheadUs: round(curveFit.perSeqOverheadUs + overhead.perSeqOverheadUs, 3),
    perTokenUs: 0,
    reservedGB: 0,
    kvCacheGB: ENGINE_DEFAULT_KV_BYTES / 1e9,
    attentionGflops: round(finite(curveFit.attentionGflops, 1e9), 4),
    ...(curveFit.kvReadCurve ? { kvReadCurve: roundCurve(curveFit.kvReadCurve) } : { kvBandwidthGBs: round(finite(curveFit.kvBandwidthGBs, 1e6), 4) }),
    rowCurve: roundCurve(curveFit.curve),
    ...(curveFit.enginePrefillCurve
      ? { prefillExcessCurve: roundCurve(curveFit.enginePrefillCurve) }
      : { perPrefillRowUs: round(curveFit.enginePrefillRowUs, 3), perPrefillSeqUs: round(curveFit.enginePrefillSeqUs, 3) }),
    ...(opts.source ? { source: opts.source } : {}),
  };
  // A step on an idle engine against steps that follow one another: the ratio of how far each
  // group's measured time is above the warm profile's prediction (schedule to update, both).
  const cold = engineSteps.filter((s) => s.idleBeforeMs > COLD_AFTER_IDLE_MS && Number.isFinite(s.idleBeforeMs));
  const over = (xs: readonly EngineStepSample[]) => xs.reduce((n, s) => n + s.totalMs, 0) / xs.reduce((n, s) => n + costOfFeatures(hardware, s.features).ms, 0);
  if (cold.length >= 5 && warm.length >= 5) hardware.coldStepFactor = round(Math.max(1, over(cold) / over(warm)), 4);
  return { hardware, gridFit, curveFit, roofline, overhead };
}

export function round(x: number, digits: number): number {
  const p = 10 ** digits;
  return Math.round(x * p) / p;
}

/** A fitted curve's values rounded for the profile file (its points' positions kept exact). */
export function roundCurve(curve: ReadonlyArray<readonly [number, number]>): Array<[number, number]> {
  return curve.map(([x, ms]) => [x, round(ms, 4)]);
}
