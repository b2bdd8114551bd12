// Calibration's least squares: NNLS against hand-solved systems, and the roofline fit recovering a
// known profile from step times it generated (exactly without noise, closely with noise).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { leastSquares, nnlsActiveSet, fitRoofline, fitRowCurve, fitEngineOverhead, FitError } from '../../src/sim/fit.js';
import { costOfFeatures, stepFeatures, type HardwareProfile, type ModelProfile, type SeqShape } from '../../src/sim/cost-model.js';
import { SeededRng } from '../../src/runs/rng.js';

/**
 * The oracle for nnlsActiveSet: the best unconstrained solution over every subset of free columns
 * that comes out non-negative (exact, and cheap for a handful of columns).
 */
function nnlsByEnumeration(A: readonly number[][], b: readonly number[]): number[] {
  const n = A[0].length;
  let best: number[] = new Array<number>(n).fill(0);
  let bestErr = b.reduce((s, v) => s + v * v, 0);
  for (let mask = 1; mask < 1 << n; mask++) {
    const cols: number[] = [];
    for (let j = 0; j < n; j++) if (mask & (1 << j)) cols.push(j);
    const x = leastSquares(A, b, cols);
    if (!x || x.some((v) => !(v >= 0) || !Number.isFinite(v))) continue;
    const full = new Array<number>(n).fill(0);
    cols.forEach((c, i) => (full[c] = x[i]));
    const err = A.reduce((s, row, r) => s + (row.reduce((p, a, j) => p + a * full[j], 0) - b[r]) ** 2, 0);
    if (err < bestErr) {
      bestErr = err;
      best = full;
    }
  }
  return best;
}

test('nnls solves a consistent system exactly and clamps a coefficient that wants to be negative', () => {
  // y = 2 + 3x: exact.
  const A = [0, 1, 2, 3].map((x) => [1, x]);
  const x = nnlsActiveSet(A, A.map(([, v]) => 2 + 3 * v));
  assert.ok(Math.abs(x[0] - 2) < 1e-9 && Math.abs(x[1] - 3) < 1e-9);
  // y = 5 - x: the slope would be negative, so the best non-negative fit is the constant mean.
  const y = A.map(([, v]) => 5 - v);
  const z = nnlsActiveSet(A, y);
  assert.equal(z[1], 0);
  assert.ok(Math.abs(z[0] - 3.5) < 1e-9);
  assert.throws(() => nnlsActiveSet([[]], [1]), FitError);
});

const model: ModelProfile = { dim: 256, hiddenDim: 768, nLayers: 4, nHeads: 8, nKvHeads: 4, vocabSize: 4096, contextLength: 1024, tiedEmbeddings: false, weightBytes: 4, kvBytes: 4 };
const truth: HardwareProfile = {
  memoryGB: 16, bandwidthGBs: 12, peakTflops: 0.03, bandwidthEfficiency: 1, computeEfficiency: 1,
  stepOverheadMs: 0.4, perSeqOverheadUs: 20, perTokenUs: 0, reservedGB: 0, attentionGflops: 6, kvBandwidthGBs: 20,
};

function shapes(): SeqShape[][] {
  const out: SeqShape[][] = [];
  for (const L of [64, 256, 1000]) for (const B of [1, 2, 4, 8, 16, 32, 64]) out.push(Array.from({ length: B }, () => ({ numTokens: 1, contextLen: L, sample: true })));
  for (const C of [16, 64, 256, 512]) out.push([{ numTokens: C, contextLen: C, sample: true }]);
  out.push([{ numTokens: 128, contextLen: 128, sample: true }, ...Array.from({ length: 16 }, () => ({ numTokens: 1, contextLen: 256, sample: true }))]);
  return out;
}

test('the roofline fit recovers the parameters that generated noise-free step times', () => {
  const data = shapes().map((s) => ({ features: stepFeatures(model, s), ms: costOfFeatures(truth, stepFeatures(model, s)).ms }));
  const f = fitRoofline(data);
  assert.ok(f.rmsRelError < 1e-6, `rms error ${f.rmsRelError}`);
  const rel = (a: number, b: number) => Math.abs(a - b) / b;
  assert.ok(rel(f.bandwidthGBs, 12) < 1e-4, `bandwidth ${f.bandwidthGBs}`);
  assert.ok(rel(f.peakTflops, 0.03) < 1e-4, `peak ${f.peakTflops}`);
  assert.ok(rel(f.attentionGflops, 6) < 1e-4, `attention ${f.attentionGflops}`);
  assert.ok(rel(f.kvBandwidthGBs, 20) < 1e-4, `KV reads ${f.kvBandwidthGBs}`);
  assert.ok(rel(f.stepOverheadMs, 0.4) < 1e-3, `overhead ${f.stepOverheadMs}`);
  assert.ok(f.memoryBound > 0 && f.memoryBound < data.length, 'both sides of the roofline are represented');
});

test('with perRow the fit also recovers a per-row cost', () => {
  const withRows = { ...truth, perTokenUs: 3 };
  const data = shapes().map((s) => ({ features: stepFeatures(model, s), ms: costOfFeatures(withRows, stepFeatures(model, s)).ms }));
  assert.ok(fitRoofline(data).rmsRelError > 1e-4, 'without the per-row term the fit cannot be exact');
  const f = fitRoofline(data, { perRow: true });
  assert.ok(f.rmsRelError < 1e-6, `rms error ${f.rmsRelError}`);
  assert.ok(Math.abs(f.perTokenUs - 3) < 1e-3, `per row ${f.perTokenUs}`);
});

test('with 5% measurement noise the fitted model still predicts step times within a few percent', () => {
  const rng = new SeededRng(9);
  const data = shapes().map((s) => {
    const features = stepFeatures(model, s);
    return { features, ms: costOfFeatures(truth, features).ms * (1 + 0.05 * (2 * rng.next() - 1)) };
  });
  const f = fitRoofline(data);
  assert.ok(f.rmsRelError < 0.05, `rms error ${f.rmsRelError}`);
  const fitted: HardwareProfile = { ...truth, bandwidthGBs: f.bandwidthGBs, peakTflops: f.peakTflops, attentionGflops: f.attentionGflops, kvBandwidthGBs: f.kvBandwidthGBs, stepOverheadMs: f.stepOverheadMs, perSeqOverheadUs: f.perSeqOverheadUs, perTokenUs: f.perTokenUs };
  for (const s of shapes()) {
    const a = costOfFeatures(fitted, stepFeatures(model, s)).ms;
    const b = costOfFeatures(truth, stepFeatures(model, s)).ms;
    assert.ok(Math.abs(a - b) / b < 0.06, `${s.length} seqs: fitted ${a} vs true ${b}`);
  }
});

test('bad input to the fits is refused with a clear error', () => {
  assert.throws(() => fitRoofline([]), /at least 6 measured steps/);
  const one = { features: stepFeatures(model, [{ numTokens: 1, contextLen: 1, sample: true }]), ms: 0 };
  assert.throws(() => fitRoofline(Array(6).fill(one)), /positive number of ms/);
  assert.throws(() => fitEngineOverhead([{ numSeqs: 1, overheadMs: 1 }]), /at least 3 steps/);
});

test('engine overhead: a line through the median per batch size, unmoved by load spikes', () => {
  const data = [1, 2, 4, 8, 16, 32].flatMap((n) =>
    Array.from({ length: 9 }, (_, i) => ({ numSeqs: n, overheadMs: 0.2 + 0.025 * n + (i === 8 ? 40 : 0) })),
  );
  const o = fitEngineOverhead(data);
  assert.ok(Math.abs(o.stepOverheadMs - 0.2) < 1e-9, `overhead ${o.stepOverheadMs}`);
  assert.ok(Math.abs(o.perSeqOverheadUs - 25) < 1e-6, `per seq ${o.perSeqOverheadUs}`);
});

test('the active-set NNLS finds the same optimum as subset enumeration, badly scaled columns included', () => {
  const rng = new SeededRng(5);
  const sq = (A: number[][], b: number[], x: number[]) => A.reduce((s, row, i) => s + (row.reduce((q, a, j) => q + a * x[j], 0) - b[i]) ** 2, 0);
  for (let t = 0; t < 30; t++) {
    // Column scales like the fits': counts ~1, FLOPs ~1e9, bytes ~1e7.
    const scales = [1, 1e9, 1e7, 1, 3e-2, 1e5];
    const A = Array.from({ length: 25 }, () => scales.map((s) => s * rng.next()));
    const b = A.map(() => 2 * rng.next() - 0.5);
    const enumerated = sq(A, b, nnlsByEnumeration(A, b));
    const x = nnlsActiveSet(A, b);
    assert.ok(x.every((v) => v >= 0));
    assert.ok(Math.abs(sq(A, b, x) - enumerated) <= 1e-9 * (1 + enumerated), `problem ${t}: ${sq(A, b, x)} vs ${enumerated}`);
  }
});

test('the row-curve fit recovers a measured curve, the per-sequence cost and attention rates from noise-free steps', () => {
  const curve: Array<[number, number]> = [[1, 2], [2, 2.1], [4, 2.3], [8, 3], [16, 4.4], [32, 7], [64, 12], [256, 40], [512, 80], [1024, 170]];
  const hw: HardwareProfile = { ...truth, stepOverheadMs: 0, rowCurve: curve };
  const data = [...shapes(), [{ numTokens: 1024, contextLen: 1024, sample: true }], [{ numTokens: 32, contextLen: 32, sample: true }]].map((s) => ({ features: stepFeatures(model, s), ms: costOfFeatures(hw, stepFeatures(model, s)).ms }));
  const f = fitRowCurve(data, curve.map(([r]) => r));
  assert.ok(f.rmsRelError < 1e-6, `rms error ${f.rmsRelError}`);
  const rel = (a: number, b: number) => Math.abs(a - b) / b;
  assert.ok(rel(f.perSeqOverheadUs, 20) < 1e-3, `per seq ${f.perSeqOverheadUs}`);
  assert.ok(rel(f.attentionGflops, 6) < 1e-3, `attention ${f.attentionGflops}`);
  assert.ok(rel(f.kvBandwidthGBs, 20) < 1e-3, `KV reads ${f.kvBandwidthGBs}`);
  // Every point comes back: each has measurements at or around its row count.
  for (const [r, ms] of curve) assert.ok(Math.abs(f.curve.find(([k]) => k === r)![1] - ms) < 1e-6, `curve at ${r}`);
  assert.throws(() => fitRowCurve(data.slice(0, 5), [1, 2, 4]), /needs at least 6 measured steps/);
  assert.throws(() => fitRowCurve(data, [4, 2]), /increasing positive row counts/);
});

test('with KV-size knots the fit recovers a KV-read curve that one bandwidth cannot follow', () => {
  // Reading a small KV cache costs more per byte than reading a big one (what this project's machine
  // showed): a concave curve. The grid's decode shapes span 0.2 to 260 MB of KV.
  const curve: Array<[number, number]> = [[1, 2], [2, 2.1], [4, 2.3], [8, 3], [16, 4.4], [32, 7], [64, 12], [256, 40], [512, 80], [1024, 170]];
  const MB = 1 << 20;
  const kvCurve: Array<[number, number]> = [[0, 0], [MB, 0.25], [4 * MB, 1], [16 * MB, 2.8], [64 * MB, 6.5], [256 * MB, 20]];
  const hw: HardwareProfile = { ...truth, stepOverheadMs: 0, rowCurve: curve, kvBandwidthGBs: undefined, kvReadCurve: kvCurve };
  const extra = [4, 16].map((B) => Array.from({ length: B }, () => ({ numTokens: 1, contextLen: 600, sample: true })));
  const data = [...shapes(), ...extra, [{ numTokens: 1024, contextLen: 1024, sample: true }], [{ numTokens: 32, contextLen: 32, sample: true }]].map((s) => ({ features: stepFeatures(model, s), ms: costOfFeatures(hw, stepFeatures(model, s)).ms }));
  const knots = curve.map(([r]) => r);
  const f = fitRowCurve(data, knots, { kvKnots: kvCurve.slice(1).map(([b]) => b) });
  assert.ok(f.rmsRelError < 1e-6, `rms error ${f.rmsRelError}`);
  assert.equal(f.kvBandwidthGBs, Infinity, 'the curve replaces the bandwidth');
  f.kvReadCurve!.forEach(([b, ms], i) => assert.ok(b === kvCurve[i][0] && Math.abs(ms - kvCurve[i][1]) < 1e-4, `KV read at ${b / MB} MB: ${ms}, want ${kvCurve[i][1]}`));
  // The profile prices with it.
  const s = shapes()[10];
  assert.ok(Math.abs(costOfFeatures({ ...hw, kvReadCurve: f.kvReadCurve }, stepFeatures(model, s)).ms - costOfFeatures(hw, stepFeatures(model, s)).ms) < 1e-6);
  const linear = fitRowCurve(data, knots);
  assert.ok(linear.maxRelError > 0.02, `one bandwidth's worst error ${linear.maxRelError}`);
  assert.throws(() => fitRowCurve(data, knots, { kvKnots: [MB] }), /KV-size knots must be at least two increasing positive byte counts/);
});

test('the row-curve fit relative to its own prediction lands on the mean of noisy samples; relative to the measurement it leans fast', () => {
  // Every shape sampled on a machine that runs 30% fast or 30% slow, half the time each: the mean
  // step time is the noise-free one.
  const rng = new SeededRng(11);
  const curve: Array<[number, number]> = [[1, 2], [2, 2.1], [4, 2.3], [8, 3], [16, 4.4], [32, 7], [64, 12], [256, 40], [512, 80]];
  const hw: HardwareProfile = { ...truth, stepOverheadMs: 0, rowCurve: curve };
  const data = shapes().flatMap((s) => {
    const f = stepFeatures(model, s);
    const t = costOfFeatures(hw, f).ms;
    return Array.from({ length: 200 }, () => ({ features: f, ms: t * (rng.next() < 0.5 ? 0.7 : 1.3), t }));
  });
  const knots = curve.map(([r]) => r);
  const predicted = (fit: ReturnType<typeof fitRowCurve>, d: (typeof data)[number]) =>
    costOfFeatures({ ...hw, rowCurve: fit.curve, perSeqOverheadUs: fit.perSeqOverheadUs, attentionGflops: fit.attentionGflops, kvBandwidthGBs: fit.kvBandwidthGBs }, d.features).ms;
  const mean = fitRowCurve(data, knots, { relativeTo: 'predicted' });
  const fast = fitRowCurve(data, knots);
  // Over all shapes, the ratio of predicted to noise-free time: ~1 for the mean estimate; for 1/y
  // weighting E[y/y^2]/E[1/y^2] = 0.83 when y is t·(1 ± 0.3).
  const ratio = (fit: ReturnType<typeof fitRowCurve>) => data.reduce((n, d) => n + predicted(fit, d) / d.t, 0) / data.length;
  assert.ok(Math.abs(ratio(mean) - 1) < 0.02, `mean estimate: predicted/true ${ratio(mean)}`);
  assert.ok(Math.abs(ratio(fast) - 0.835) < 0.03, `measured-relative estimate: predicted/true ${ratio(fast)}`);
});

test('engine overhead with center mean: a line through the mean per batch size, the one fastest and slowest step trimmed', () => {
  // Three of every ten steps 0.5 ms slower: the median ignores them; the mean, with one fast and one
  // slow step dropped, counts two slow ones in eight.
  const skewed = [1, 2, 4, 8].flatMap((n) => Array.from({ length: 10 }, (_, i) => ({ numSeqs: n, overheadMs: 0.2 + 0.025 * n + (i >= 7 ? 0.5 : 0) })));
  const median = fitEngineOverhead(skewed);
  const mean = fitEngineOverhead(skewed, { center: 'mean' });
  assert.ok(Math.abs(median.stepOverheadMs - 0.2) < 1e-9, `median overhead ${median.stepOverheadMs}`);
  assert.ok(Math.abs(mean.stepOverheadMs - (0.2 + (2 * 0.5) / 8)) < 1e-9, `mean overhead ${mean.stepOverheadMs}`);
  assert.ok(Math.abs(mean.perSeqOverheadUs - 25) < 1e-6, `per seq ${mean.perSeqOverheadUs}`);
});

test("the row-curve fit learns what the engine's prompt chunks cost beyond grid shapes of the same size", () => {
  // Grid shapes cost the curve; the same shapes inside the engine cost 12 µs more per prompt row and
  // 0.8 ms more per prompt chunk. Decode steps cost the same in both.
  const curve: Array<[number, number]> = [[1, 2], [2, 2.1], [4, 2.3], [8, 3], [16, 4.4], [32, 7], [64, 12], [256, 40], [512, 80], [1024, 170]];
  const hw: HardwareProfile = { ...truth, stepOverheadMs: 0, rowCurve: curve };
  const grid = [...shapes(), [{ numTokens: 1024, contextLen: 1024, sample: true }], [{ numTokens: 32, contextLen: 32, sample: true }]].map((s) => ({ features: stepFeatures(model, s), ms: costOfFeatures(hw, stepFeatures(model, s)).ms }));
  const engineShapes: SeqShape[][] = [
    ...[40, 90, 150, 220, 300, 500].map((C) => [{ numTokens: C, contextLen: C, sample: true }]),
    ...[60, 180].map((C) => [{ numTokens: C, contextLen: C, sample: true }, ...Array.from({ length: 6 }, () => ({ numTokens: 1, contextLen: 200, sample: true }))]),
    ...[1, 4, 16].map((B) => Array.from({ length: B }, () => ({ numTokens: 1, contextLen: 150, sample: true }))),
  ];
  const engine = engineShapes.map((s) => {
    const features = stepFeatures(model, s);
    return { features, ms: costOfFeatures({ ...hw, perPrefillRowUs: 12, perPrefillSeqUs: 800 }, features).ms, engine: true };
  });
  const f = fitRowCurve([...grid, ...engine], curve.map(([r]) => r));
  assert.ok(f.rmsRelError < 1e-6, `rms error ${f.rmsRelError}`);
  assert.ok(Math.abs(f.enginePrefillRowUs - 12) < 1e-3, `per prompt row ${f.enginePrefillRowUs}`);
  assert.ok(Math.abs(f.enginePrefillSeqUs - 800) < 1e-2, `per prompt chunk ${f.enginePrefillSeqUs}`);
  // Without engine samples there is nothing to learn them from.
  const gridOnly = fitRowCurve(grid, curve.map(([r]) => r));
  assert.equal(gridOnly.enginePrefillRowUs, 0);
  assert.equal(gridOnly.enginePrefillSeqUs, 0);
});

test("with prompt-row knots the fit learns the engine's prompt excess as a curve: large over small prompts, not over big batches", () => {
  // The engine's prompt steps cost more than grid shapes of the same size, by an amount that grows
  // with a small prompt's rows and falls back for big batches (what this project's machine showed).
  const curve: Array<[number, number]> = [[1, 2], [2, 2.1], [4, 2.3], [8, 3], [16, 4.4], [32, 7], [64, 12], [256, 40], [512, 80], [1024, 170], [2048, 350]];
  const hw: HardwareProfile = { ...truth, stepOverheadMs: 0, rowCurve: curve };
  const excess: Array<[number, number]> = [[0, 0], [16, 0.2], [64, 1], [256, 4], [1024, 2], [2048, 0]];
  const grid = [...shapes(), ...[32, 1024, 2048].map((C) => [{ numTokens: C, contextLen: C, sample: true }])].map((s) => ({ features: stepFeatures(model, s), ms: costOfFeatures(hw, stepFeatures(model, s)).ms }));
  const prompts = [12, 30, 50, 90, 150, 220, 300, 420, 700, 1500, 2048];
  const engineShapes: SeqShape[][] = [
    ...prompts.map((C) => [{ numTokens: C, contextLen: C, sample: true }]),
    ...[60, 180, 900].map((C) => [{ numTokens: C, contextLen: C, sample: true }, ...Array.from({ length: 6 }, () => ({ numTokens: 1, contextLen: 200, sample: true }))]),
    ...[1, 4, 16].map((B) => Array.from({ length: B }, () => ({ numTokens: 1, contextLen: 150, sample: true }))),
  ];
  const engine = engineShapes.map((s) => {
    const features = stepFeatures(model, s);
    return { features, ms: costOfFeatures({ ...hw, prefillExcessCurve: excess }, features).ms, engine: true };
  });
  const f = fitRowCurve([...grid, ...engine], curve.map(([r]) => r), { prefillKnots: excess.slice(1).map(([r]) => r) });
  assert.ok(f.rmsRelError < 1e-6, `rms error ${f.rmsRelError}`);
  assert.ok(f.enginePrefillCurve, 'a curve, not rates');
  f.enginePrefillCurve.forEach(([r, ms], i) => {
    assert.equal(r, excess[i][0]);
    assert.ok(Math.abs(ms - excess[i][1]) < 1e-4, `excess at ${r} prompt rows: ${ms}, want ${excess[i][1]}`);
  });
  assert.equal(f.enginePrefillRowUs, 0);
  // Past its last point the excess stays flat, in the fit as in the cost model: an excess that
  // levels off at 256 rows is recovered from steps on both sides of that point.
  const flat: Array<[number, number]> = [[0, 0], [16, 0.2], [64, 1], [256, 4]];
  const flatEngine = engineShapes.map((s) => ({ features: stepFeatures(model, s), ms: costOfFeatures({ ...hw, prefillExcessCurve: flat }, stepFeatures(model, s)).ms, engine: true }));
  const capped = fitRowCurve([...grid, ...flatEngine], curve.map(([r]) => r), { prefillKnots: [16, 64, 256] });
  assert.ok(capped.rmsRelError < 1e-6, `rms error ${capped.rmsRelError}`);
  capped.enginePrefillCurve!.forEach(([r, ms], i) => assert.ok(r === flat[i][0] && Math.abs(ms - flat[i][1]) < 1e-4, `flat excess at ${r}: ${ms}`));
  // One rate per prompt row cannot say it: the best such fit is off by over 1% somewhere.
  const linear = fitRowCurve([...grid, ...engine], curve.map(([r]) => r));
  assert.ok(linear.maxRelError > 0.01, `linear fit worst error ${linear.maxRelError}`);
  assert.throws(() => fitRowCurve(grid, curve.map(([r]) => r), { prefillKnots: [64, 16] }), /prompt-row knots must be increasing positive row counts/);
});
