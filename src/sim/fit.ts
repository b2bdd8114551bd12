// Least-squares fitting of the cost model's rates to measured step times.
//
// The model is t = overhead + perSeq·seqs + perRow·rows + max(weightBytes/bandwidth, flops/peak)
//                 + attnFlops/attnRate + kvBytes/kvBandwidth.
// Written in the reciprocals (seconds per byte, per FLOP, ...) it is linear in every parameter except
// for the max. So we alternate: decide for each measurement which side of the max is the larger,
// solve the then-linear problem by non-negative least squares (a rate cannot be negative), and
// repeat until no measurement changes side. Errors are relative (each row divided by its measured
// time, or for the row curve optionally by its own prediction), so a 2 ms step counts as much as a
// 200 ms one — the simulator needs both right.
import type { StepFeatures } from './cost-model.js';

/** The fitted parameters, in the cost model's units. */
export interface RooflineFit {
  stepOverheadMs: number;
  perSeqOverheadUs: number;
  perTokenUs: number;
  /** Effective bandwidth (GB/s), peak (TFLOP/s), attention rate (GFLOP/s) and KV-read rate (GB/s); Infinity when the data gave that term no weight. */
  bandwidthGBs: number;
  peakTflops: number;
  attentionGflops: number;
  kvBandwidthGBs: number;
  /** Root-mean-square and largest relative error of the fit over the measurements. */
  rmsRelError: number;
  maxRelError: number;
  /** Measurements the fit put on the memory-bound side of the max. */
  memoryBound: number;
  iterations: number;
}

export interface TimedFeatures {
  features: StepFeatures;
  ms: number;
  /** Weight of this measurement in the fit (default 1). */
  weight?: number;
  /** Measured inside the running engine (not a grid shape timed on its own): see fitRowCurve. */
  engine?: boolean;
}

/** Mean without the smallest and the largest sample (plain mean below 4 samples). */
export function trimmedMean(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const kept = s.length >= 4 ? s.slice(1, -1) : s;
  return kept.reduce((a, b) => a + b, 0) / kept.length;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export class FitError extends Error {
  override name = 'FitError';
}

/** Solves the normal equations of min |A x - b|^2 over the columns in `cols` (Gaussian elimination with pivoting). */
export function leastSquares(A: readonly number[][], b: readonly number[], cols: readonly number[]): number[] | null {
  const k = cols.length;
  const M = Array.from({ length: k }, () => new Array<number>(k + 1).fill(0));
  for (let r = 0; r < A.length; r++) {
    const row = A[r];
    for (let i = 0; i < k; i++) {
      const ai = row[cols[i]];
      if (ai === 0) continue;
      for (let j = 0; j < k; j++) M[i][j] += ai * row[cols[j]];
      M[i][k] += ai * b[r];
    }
  }
  for (let c = 0; c < k; c++) {
    let p = c;
    for (let r = c + 1; r < k; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    if (Math.abs(M[p][c]) < 1e-300) return null;
    [M[c], M[p]] = [M[p], M[c]];
    for (let r = 0; r < k; r++) {
      if (r === c) continue;
      const f = M[r][c] / M[c][c];
      if (f === 0) continue;
      for (let j = c; j <= k; j++) M[r][j] -= f * M[c][j];
    }
  }
  return cols.map((_, i) => M[i][k] / M[i][i]);
}

// Unknowns, in ms per unit: [overhead, per seq, per row, per weight byte, per flop, per attention flop,
// per KV byte]. Without a separate attention term, attention FLOPs join the GEMM's and KV bytes the
// weights' (a GPU-style roofline); with it, attention (its FLOPs and its KV reads) is a pass of its own.
function predict(x: readonly number[], f: StepFeatures): { ms: number; memory: boolean } {
  const mem = x[3] * (f.bytes - f.kvBytes);
  const comp = x[4] * f.linearFlops;
  return { ms: x[0] + x[1] * f.numSeqs + x[2] * f.rows + Math.max(mem, comp) + x[5] * f.attnFlops + x[6] * f.kvBytes, memory: mem >= comp };
}

/** Refuses step times that are not positive numbers of ms (a fit divides by them). */
function checkStepTimes(data: readonly TimedFeatures[]): void {
  for (const d of data) if (!(d.ms > 0 && Number.isFinite(d.ms))) throw new FitError(`measured step time must be a positive number of ms, got ${d.ms}`);
}

/** Weighted root-mean-square and largest relative error of predicted against measured step times. */
function relativeErrors(data: readonly TimedFeatures[], predictedMs: readonly number[]): { rmsRelError: number; maxRelError: number } {
  let sq = 0;
  let worst = 0;
  let weights = 0;
  data.forEach((d, i) => {
    const e = (predictedMs[i] - d.ms) / d.ms;
    sq += (d.weight ?? 1) * e * e;
    weights += d.weight ?? 1;
    worst = Math.max(worst, Math.abs(e));
  });
  return { rmsRelError: Math.sqrt(sq / weights), maxRelError: worst };
}

/** A fitted cost in ms per unit as a rate in units per second, scaled (ms per byte -> GB/s with 1e9); Infinity for a term the data gave no weight. */
function rate(perUnitMs: number, scale: number): number {
  return perUnitMs > 0 ? 1e3 / perUnitMs / scale : Infinity;
}

/** A step's features with attention folded into the roofline (no separate attention or KV-read term). */
function merged(f: StepFeatures): StepFeatures {
  return { ...f, linearFlops: f.linearFlops + f.attnFlops, attnFlops: 0, kvBytes: 0 };
}

/** Fits the roofline's rates and overheads to measured step times (relative least squares). */
export function fitRoofline(data: readonly TimedFeatures[], opts: { separateAttention?: boolean; perRow?: boolean } = {}): RooflineFit {
  if (data.length < 6) throw new FitError(`fitting needs at least 6 measured steps, got ${data.length}`);
  checkStepTimes(data);
  const separate = opts.separateAttention ?? true;
  // A per-row cost is nearly collinear with the arithmetic side of the max (FLOPs grow with rows), so
  // it is left out unless asked for: with it, noise decides which of the two explains the rows.
  const perRow = opts.perRow ?? false;
  const b = data.map(() => 1);
  // Start with every step memory-bound below the median row count and compute-bound above it.
  const rowsSorted = data.map((d) => d.features.rows).sort((p, q) => p - q);
  const medianRows = rowsSorted[Math.floor(rowsSorted.length / 2)];
  let side = data.map((d) => d.features.rows <= medianRows);
  let x: number[] = [];
  let iterations = 0;
  const seen = new Set<string>();
  for (; iterations < 50; iterations++) {
    const A = data.map((d, i) => {
      const f = d.features;
      const attn = separate ? f.attnFlops : 0;
      const linear = separate ? f.linearFlops : f.linearFlops + f.attnFlops;
      const w = Math.sqrt(d.weight ?? 1);
      const weightBytes = separate ? f.bytes - f.kvBytes : f.bytes;
      return [1, f.numSeqs, perRow ? f.rows : 0, side[i] ? weightBytes : 0, side[i] ? 0 : linear, attn, separate ? f.kvBytes : 0].map((v) => (w * v) / d.ms);
    });
    x = nnlsActiveSet(A, b.map((v, i) => v * Math.sqrt(data[i].weight ?? 1)));
    const next = data.map((d) => predict(x, separate ? d.features : merged(d.features)).memory);
    const key = next.map((v) => (v ? '1' : '0')).join('');
    if (next.every((v, i) => v === side[i]) || seen.has(key)) break;
    seen.add(key);
    side = next;
  }
  const predictions = data.map((d) => predict(x, separate ? d.features : merged(d.features)));
  const errors = relativeErrors(data, predictions.map((p) => p.ms));
  return {
    stepOverheadMs: x[0],
    perSeqOverheadUs: x[1] * 1e3,
    perTokenUs: x[2] * 1e3,
    bandwidthGBs: rate(x[3], 1e9),
    peakTflops: rate(x[4], 1e12),
    attentionGflops: rate(x[5], 1e9),
    kvBandwidthGBs: rate(x[6], 1e9),
    ...errors,
    memoryBound: predictions.filter((p) => p.memory).length,
    iterations: iterations + 1,
  };
}

/**
 * The engine's cost around the forward pass (scheduling, the hop to the worker thread and back,
 * update, delivery) as a + b·seqs, from (period - runner time) of traced steps. One value per batch
 * size is fitted (weighted by how many steps had that size), not the raw samples: by default the
 * median, robust to the load spikes of a shared machine; with `center: 'mean'` the mean (the one
 * smallest and largest dropped), which is what a long run's total time adds up.
 */
export function fitEngineOverhead(
  data: ReadonlyArray<{ numSeqs: number; overheadMs: number }>,
  opts: { center?: 'median' | 'mean' } = {},
): { stepOverheadMs: number; perSeqOverheadUs: number } {
  if (data.length < 3) throw new FitError(`fitting the engine overhead needs at least 3 steps, got ${data.length}`);
  const groups = new Map<number, number[]>();
  for (const d of data) {
    if (!Number.isFinite(d.overheadMs)) continue;
    let g = groups.get(d.numSeqs);
    if (!g) groups.set(d.numSeqs, (g = []));
    g.push(Math.max(0, d.overheadMs));
  }
  const rows: number[][] = [];
  const b: number[] = [];
  for (const [n, g] of groups) {
    const center = opts.center === 'mean' ? trimmedMean(g) : median(g);
    const w = Math.sqrt(g.length);
    rows.push([w, w * n]);
    b.push(w * center);
  }
  if (rows.length === 1) return { stepOverheadMs: b[0] / rows[0][0], perSeqOverheadUs: 0 };
  const x = nnlsActiveSet(rows, b);
  return { stepOverheadMs: x[0], perSeqOverheadUs: x[1] * 1e3 };
}

/**
 * Non-negative least squares by the Lawson–Hanson active-set method: min |A x - b|^2 subject to
 * x >= 0, for every fit here (the tests check it against subset enumeration, exact but exponential).
 */
export function nnlsActiveSet(A0: readonly number[][], b: readonly number[], maxIterations = 500): number[] {
  const n = A0[0]?.length ?? 0;
  if (n === 0) throw new FitError('nnls needs at least one column');
  // Columns are rescaled to a largest entry of 1 (FLOPs and bytes are ~1e9 where counts are ~1), so
  // the normal equations stay well conditioned; the solution is scaled back at the end.
  const colScale = Array.from({ length: n }, (_, j) => Math.max(...A0.map((row) => Math.abs(row[j]))) || 1);
  const A = A0.map((row) => row.map((v, j) => v / colScale[j]));
  const x = new Array<number>(n).fill(0);
  const passive = new Array<boolean>(n).fill(false);
  const gradient = (): number[] => {
    // w = A^T (b - A x)
    const w = new Array<number>(n).fill(0);
    for (let r = 0; r < A.length; r++) {
      let res = b[r];
      for (let j = 0; j < n; j++) res -= A[r][j] * x[j];
      for (let j = 0; j < n; j++) w[j] += A[r][j] * res;
    }
    return w;
  };
  const scale = Math.max(1e-300, ...A.map((row) => Math.max(...row.map(Math.abs))));
  const tol = 1e-12 * scale * scale * A.length;
  for (let it = 0; it < maxIterations; it++) {
    const w = gradient();
    let best = -1;
    for (let j = 0; j < n; j++) if (!passive[j] && w[j] > tol && (best < 0 || w[j] > w[best])) best = j;
    if (best < 0) break;
    passive[best] = true;
    // Inner loop: solve on the passive set; step back while some passive coefficient goes negative.
    for (let inner = 0; inner < maxIterations; inner++) {
      const cols = passive.flatMap((p, j) => (p ? [j] : []));
      const z = leastSquares(A, b, cols);
      if (!z) {
        passive[best] = false;
        break;
      }
      if (z.every((v) => v > 0)) {
        cols.forEach((c, i) => (x[c] = z[i]));
        break;
      }
      let alpha = Infinity;
      cols.forEach((c, i) => {
        if (z[i] <= 0) alpha = Math.min(alpha, x[c] / (x[c] - z[i]));
      });
      cols.forEach((c, i) => {
        x[c] += alpha * (z[i] - x[c]);
        if (x[c] <= 1e-15 * Math.max(1, Math.abs(z[i]))) {
          x[c] = 0;
          passive[c] = false;
        }
      });
    }
  }
  return x.map((v, j) => v / colScale[j]);
}

/** A measured curve: step time of the per-row work (ms) at each row count, linear in between. */
export type RowCurve = Array<[rows: number, ms: number]>;

export interface RowCurveFit {
  curve: RowCurve;
  perSeqOverheadUs: number;
  /** What the engine's prompt chunks cost beyond the curve: per chunk row and per chunk (µs; 0 without engine samples). */
  enginePrefillRowUs: number;
  enginePrefillSeqUs: number;
  /** With `prefillKnots`: the excess (ms) at each count of a step's prompt rows, from [0, 0]. */
  enginePrefillCurve?: RowCurve;
  /** With `kvKnots`: the time (ms) to read a step's KV cache at each size (bytes), from [0, 0]; kvBandwidthGBs is then Infinity. */
  kvReadCurve?: RowCurve;
  attentionGflops: number;
  kvBandwidthGBs: number;
  rmsRelError: number;
  maxRelError: number;
}

/** The weight of each knot in the interpolated value at `rows` (two neighbouring knots, or the end segment). */
function knotWeights(knots: readonly number[], rows: number): number[] {
  const w = new Array<number>(knots.length).fill(0);
  let i = 1;
  while (i < knots.length - 1 && rows > knots[i]) i++;
  const t = (rows - knots[i - 1]) / (knots[i] - knots[i - 1]);
  w[i - 1] = 1 - t;
  w[i] = t;
  return w;
}

/** knotWeights, but past the last knot all weight stays on it: the fit's side of flatCurveMs. */
function flatKnotWeights(knots: readonly number[], x: number): number[] {
  if (x < knots[knots.length - 1]) return knotWeights(knots, x);
  const w = new Array<number>(knots.length).fill(0);
  w[knots.length - 1] = 1;
  return w;
}

export interface RowCurveOptions {
  /**
   * What each residual is divided by. 'measured' (default): relative to the measured time, so a 2 ms
   * step counts as much as a 200 ms one. 'predicted': relative to the fit's own prediction (iterated
   * from a 'measured' start), which makes the fit at a shape the arithmetic mean of its samples; with
   * 'measured', noisy samples pull it toward the fast ones (dividing by y weighs a fast sample more),
   * by about the samples' squared coefficient of variation. Throughput depends on the mean.
   */
  relativeTo?: 'measured' | 'predicted';
  /** Reweighting rounds for 'predicted' (default 4). */
  iterations?: number;
  /**
   * Prompt-row counts at which the engine's prompt-chunk excess is a free value (a curve from 0 at
   * 0 rows, linear in between) instead of one rate per row and one per chunk. See fitRowCurve.
   */
  prefillKnots?: readonly number[];
  /**
   * KV-cache sizes (bytes) at which the time to read a step's KV cache is a free value (a curve from
   * 0 at 0 bytes, linear in between, the end segment extended) instead of one bandwidth. See fitRowCurve.
   */
  kvKnots?: readonly number[];
}

/**
 * Fits t = curve(rows) + perSeq·seqs + attnFlops/attnRate + kvBytes/kvBandwidth, with the curve's
 * values at `knots` (row counts) free: a measured curve where the roofline's max() is too coarse — a
 * CPU's GEMMs get cheaper per row as the batch grows (tiles fill up, loaded weights serve more rows)
 * rather than switching from memory-bound to compute-bound at one point. Linear in every unknown, so
 * solved by non-negative least squares on relative errors.
 *
 * With `kvKnots` the KV-cache read is a curve in the step's KV bytes rather than one bandwidth (on
 * this project's machine a small cache costs several times more per byte than a big one).
 *
 * Samples marked `engine` get terms of their own for what a step's prompt chunks cost inside the
 * running engine beyond a grid shape of the same size timed on its own: with `prefillKnots`, a curve
 * in the step's prompt rows (flat past the last knot); without, one rate per prompt row and one per
 * prompt chunk.
 */
export function fitRowCurve(data: readonly TimedFeatures[], knots: readonly number[], opts: RowCurveOptions = {}): RowCurveFit {
  if (data.length < knots.length + 3) throw new FitError(`fitting a ${knots.length}-point row curve needs at least ${knots.length + 3} measured steps, got ${data.length}`);
  if (knots.length < 2 || knots.some((k, i) => !(k > 0) || (i > 0 && k <= knots[i - 1]))) throw new FitError('row-curve knots must be at least two increasing positive row counts');
  checkStepTimes(data);
  const k = knots.length;
  const pk = opts.prefillKnots ? [0, ...opts.prefillKnots] : null;
  if (pk && pk.some((r, i) => i > 0 && !(r > pk[i - 1]))) throw new FitError('prompt-row knots must be increasing positive row counts');
  const kk = opts.kvKnots ? [0, ...opts.kvKnots] : null;
  if (kk && (kk.length < 3 || kk.some((b, i) => i > 0 && !(b > kk[i - 1])))) throw new FitError('KV-size knots must be at least two increasing positive byte counts');
  // Columns: the row curve's points, per sequence, attention FLOPs, the KV read (one rate or a curve's points), the engine's prompt excess.
  const kvAt = k + 2;
  const prefillAt = kvAt + (kk ? kk.length - 1 : 1);
  const columns = data.map((d) => {
    const f = d.features;
    const e = d.engine && f.prefillRows > 0 ? 1 : 0;
    const prefill = pk ? flatKnotWeights(pk, f.prefillRows).slice(1).map((w) => e * w) : [e * f.prefillRows, e * f.prefillSeqs];
    const kv = kk ? knotWeights(kk, f.kvBytes).slice(1) : [f.kvBytes];
    return [...knotWeights(knots, f.rows), f.numSeqs, f.attnFlops, ...kv, ...prefill];
  });
  // Each row is divided by `scale[i]` (the measured time, or the previous round's prediction).
  const solve = (scale: readonly number[]) =>
    nnlsActiveSet(
      columns.map((c, i) => c.map((v) => (v * Math.sqrt(data[i].weight ?? 1)) / scale[i])),
      data.map((d, i) => (Math.sqrt(d.weight ?? 1) * d.ms) / scale[i]),
    );
  const predictAll = (x: readonly number[]) => columns.map((c) => c.reduce((n, v, j) => n + v * x[j], 0));
  let x = solve(data.map((d) => d.ms));
  if (opts.relativeTo === 'predicted') {
    for (let it = 0; it < (opts.iterations ?? 4); it++) {
      // A prediction of 0 (a shape no term prices) falls back to the measured time.
      x = solve(predictAll(x).map((p, i) => (p > 0 ? p : data[i].ms)));
    }
  }
  const curve: RowCurve = knots.map((r, i) => [r, x[i]]);
  const errors = relativeErrors(data, predictAll(x));
  return {
    curve,
    perSeqOverheadUs: x[k] * 1e3,
    enginePrefillRowUs: pk ? 0 : x[prefillAt] * 1e3,
    enginePrefillSeqUs: pk ? 0 : x[prefillAt + 1] * 1e3,
    ...(pk ? { enginePrefillCurve: pk.map((r, i): [number, number] => [r, i === 0 ? 0 : x[prefillAt + i - 1]]) } : {}),
    ...(kk ? { kvReadCurve: kk.map((b, i): [number, number] => [b, i === 0 ? 0 : x[kvAt + i - 1]]) } : {}),
    attentionGflops: rate(x[k + 1], 1e9),
    kvBandwidthGBs: kk ? Infinity : rate(x[kvAt], 1e9),
    ...errors,
  };
}
