// Calibration: the grid of batch shapes stays within what the engine could run, and a quick
// calibration on a real (tiny) model writes a profile that the simulator accepts and that predicts
// the engine run it was fitted with.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CalibrationEngine } from '../../src/bench/calibrate/engine-runs.js';
import { calibrationGrid, measureForward, type GridShape } from '../../src/bench/calibrate/grid.js';
import { fitCalibration, prefillRowKnots, rowKnots, type EngineRunKind, type EngineStepSample } from '../../src/sim/calibration-fit.js';
import { trimmedMean } from '../../src/sim/fit.js';
import type { LocalModelRunner } from '../../src/engine/model-runner.js';
import type { SchedulerOutput } from '../../src/engine/types.js';
import { costOfFeatures, stepFeatures, type HardwareProfile, type ModelProfile, type SeqShape } from '../../src/sim/cost-model.js';
import { SeededRng } from '../../src/runs/rng.js';
import { runCalibrate } from '../../src/cli/calibrate.js';
import { runSimulate } from '../../src/cli/simulate.js';
import { UsageError } from '../../src/cli/usage-error.js';
import { parseProfile } from '../../src/sim/profiles.js';
import { loadModel } from '../../src/model/loaders/index.js';
import { modelProfileFromWeights } from '../../src/bench/calibrate/model-profile.js';
import { sharedModelFile, STORIES260K } from '../helpers/models.js';

test('the grid covers decode batches, prefill chunks and mixed steps, within the context, the KV cache and the token budget', () => {
  const grid = calibrationGrid({ contextLength: 1024 }, { capacityTokens: 16384, maxBatch: 64 });
  const labels = grid.map((g) => g.label);
  for (const l of ['decode 1x @64', 'decode 64x @64', 'decode 16x @1016', 'prefill 16', 'prefill 512', 'prefill 16x128', 'mixed 256+31x @256']) assert.ok(labels.includes(l), l);
  for (const g of grid) {
    assert.ok(g.seqs.every((s) => s.contextLen <= 1024 && s.numTokens <= s.contextLen));
    assert.ok(g.seqs.reduce((n, s) => n + s.contextLen, 0) <= 16384, `${g.label} fits the KV cache`);
    assert.ok(g.seqs.reduce((n, s) => n + s.numTokens, 0) <= 2048, `${g.label} fits the token budget`);
    assert.ok(g.seqs.length <= 64);
  }
  // A small KV cache drops the shapes it could not hold; a small context caps the contexts.
  const small = calibrationGrid({ contextLength: 256 }, { capacityTokens: 2048, maxBatch: 16, maxRows: 512, quick: true });
  assert.ok(small.every((g) => g.seqs.length <= 16 && g.seqs.every((s) => s.contextLen <= 256)));
  assert.ok(small.every((g) => g.seqs.reduce((n, s) => n + s.contextLen, 0) <= 2048 && g.seqs.reduce((n, s) => n + s.numTokens, 0) <= 512));
  assert.deepEqual(small.filter((g) => g.kind === 'prefill').map((g) => g.label), ['prefill 16', 'prefill 128', 'prefill 4x128'], 'prompts longer than the context or the budget are left out');
  assert.ok(small.length >= 8 && small.length < grid.length);
});

test('row-curve points: powers of two up to the most rows measured, thinned when measurements are few', () => {
  const data = (rows: number[]) => rows.map((r) => ({ features: { rows: r } as never }));
  const many = data([...Array.from({ length: 60 }, (_, i) => 1 + i), 1500]);
  assert.deepEqual(rowKnots(many), [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1500]);
  const few = rowKnots(data([1, 2, 4, 8, 16, 32, 64, 2048]));
  assert.ok(few.length + 3 <= 8 && few[0] === 1 && few[few.length - 1] === 2048, JSON.stringify(few));
  assert.deepEqual(rowKnots(data([1, 1, 1, 1, 1, 1])), [1, 2]);
});

test('prompt-excess points: powers of four from 16 up to the most prompt rows a step had, at most 256; none without prompts', () => {
  assert.deepEqual(prefillRowKnots([0, 1, 37, 2048, 300]), [16, 64, 256]);
  assert.deepEqual(prefillRowKnots([0, 200]), [16, 64, 200]);
  assert.deepEqual(prefillRowKnots([0, 64]), [16, 64]);
  assert.deepEqual(prefillRowKnots([12, 3]), [12]);
  assert.equal(prefillRowKnots([0, 0, 1]), undefined);
});

test('trimmed mean drops the fastest and the slowest sample', () => {
  assert.equal(trimmedMean([1, 2, 3, 100]), 2.5);
  assert.equal(trimmedMean([5, 1, 3]), 3);
});

const stories = sharedModelFile(STORIES260K);
let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'stepwise-calibrate-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('measureForward: round-robin from the given shape, each timed run after an untimed one, results in grid order', () => {
  const order: number[] = [];
  // A stand-in runner: a step's time is its row count, so results show which shape they belong to.
  const runner = { executeSync: (out: SchedulerOutput) => (order.push(out.numBatchedTokens), { sampled: [], forwardMs: out.numBatchedTokens, sampleMs: 0 }) } as unknown as LocalModelRunner;
  const grid: GridShape[] = [16, 32, 64].map((C) => ({ label: `prefill ${C}`, kind: 'prefill', seqs: [{ numTokens: C, contextLen: C, sample: true }] }));
  const model: ModelProfile = { dim: 64, hiddenDim: 192, nLayers: 2, nHeads: 8, nKvHeads: 4, vocabSize: 512, contextLength: 512, tiedEmbeddings: true, weightBytes: 4, kvBytes: 4 };
  const m = measureForward(runner, model, grid, { reps: 2, blockSize: 16, numBlocks: 64, perRound: [1, 1, 1], startAt: 4 });
  assert.deepEqual(order, [32, 32, 64, 64, 16, 16, 32, 32, 64, 64, 16, 16]);
  assert.deepEqual(m.map((x) => x.samples), [[16, 16], [32, 32], [64, 64]]);
  // A small shape is run untimed until 10 ms have passed (4 + 4 + 4 ms), then timed.
  order.length = 0;
  const small: GridShape[] = [4, 32].map((C) => ({ label: `prefill ${C}`, kind: 'prefill', seqs: [{ numTokens: C, contextLen: C, sample: true }] }));
  measureForward(runner, model, small, { reps: 1, blockSize: 16, numBlocks: 64, perRound: [1, 1] });
  assert.deepEqual(order, [4, 4, 4, 4, 32, 32]);
});

test('fitCalibration: an engine-run kind measured five times weighs what one run does, and the mean estimate recovers a known profile', () => {
  const model: ModelProfile = { dim: 256, hiddenDim: 768, nLayers: 4, nHeads: 8, nKvHeads: 4, vocabSize: 4096, contextLength: 1024, tiedEmbeddings: false, weightBytes: 4, kvBytes: 4 };
  const hw: HardwareProfile = {
    memoryGB: 16, bandwidthGBs: 12, peakTflops: 0.03, bandwidthEfficiency: 1, computeEfficiency: 1, stepOverheadMs: 0.3, perSeqOverheadUs: 25, perTokenUs: 0, reservedGB: 0,
    attentionGflops: 6, kvBandwidthGBs: 20, rowCurve: [[1, 2], [2, 2.1], [4, 2.3], [8, 3], [16, 4.4], [32, 7], [64, 12], [128, 20], [256, 40], [512, 80], [1024, 170]],
  };
  const rng = new SeededRng(3);
  const forwardOnly = { ...hw, stepOverheadMs: 0, perSeqOverheadUs: 0 };
  // A run of one kind: steps of the given shapes, each followed at once by the next; runner time is
  // the forward pass, the period adds the engine's overhead. Noise: ±10%, uniform.
  const run = (kind: EngineRunKind, shapes: SeqShape[][]): EngineStepSample[] =>
    shapes.map((shape, i) => {
      const features = stepFeatures(model, shape);
      const runnerMs = costOfFeatures(forwardOnly, features).ms * (0.9 + 0.2 * rng.next());
      return { run: kind, shape, features, runnerMs, periodMs: runnerMs + (0.3 + 0.025 * shape.length) * (0.9 + 0.2 * rng.next()), totalMs: runnerMs, idleBeforeMs: i === 0 ? Infinity : 0.01 };
    });
  const decode = (B: number, L: number) => Array.from({ length: B }, () => ({ numTokens: 1, contextLen: L, sample: true }));
  const batched = run('continuous', [
    [{ numTokens: 512, contextLen: 512, sample: true }, ...decode(8, 200)],
    ...[1, 2, 4, 8, 16, 32, 64].flatMap((B) => [decode(B, 100), decode(B, 300), decode(B, 700)]),
    ...[16, 64, 128, 256, 1024].map((C) => [{ numTokens: C, contextLen: C, sample: true }]),
  ]);
  const single = run('none', Array.from({ length: 60 }, (_, i) => decode(1, 40 + 10 * i)));
  const forward = [decode(1, 64), decode(16, 256), decode(64, 512), [{ numTokens: 256, contextLen: 256, sample: true }], [{ numTokens: 1024, contextLen: 1024, sample: true }]].map((s) => {
    const features = stepFeatures(model, s);
    return { features, ms: costOfFeatures(forwardOnly, features).ms };
  });
  const once = fitCalibration(forward, [...batched, ...single]);
  const fiveTimes = fitCalibration(forward, [...batched, ...single, ...single, ...single, ...single, ...single]);
  assert.deepEqual(fiveTimes.curveFit.curve.map(([, ms]) => ms.toFixed(6)), once.curveFit.curve.map(([, ms]) => ms.toFixed(6)));
  // The fitted profile prices the engine's steps (forward and overhead) as generated, within the noise.
  for (const [B, L] of [[1, 100], [8, 300], [32, 500]]) {
    const f = stepFeatures(model, decode(B, L));
    const fitted = costOfFeatures(once.hardware, f).ms;
    const truth = costOfFeatures(hw, f).ms;
    assert.ok(Math.abs(fitted / truth - 1) < 0.06, `decode ${B}x@${L}: fitted ${fitted} vs ${truth}`);
  }
  assert.ok(Math.abs(once.overhead.stepOverheadMs - 0.3) < 0.05, `engine overhead ${once.overhead.stepOverheadMs}`);
});

test('fitCalibration measures how much slower the decode steps right after a prompt step run, and prices the rest without it', () => {
  const model: ModelProfile = { dim: 256, hiddenDim: 768, nLayers: 4, nHeads: 8, nKvHeads: 4, vocabSize: 4096, contextLength: 1024, tiedEmbeddings: false, weightBytes: 4, kvBytes: 4 };
  const hw: HardwareProfile = {
    memoryGB: 16, bandwidthGBs: 12, peakTflops: 0.03, bandwidthEfficiency: 1, computeEfficiency: 1, stepOverheadMs: 0.3, perSeqOverheadUs: 25, perTokenUs: 0, reservedGB: 0,
    attentionGflops: 6, kvBandwidthGBs: 20, rowCurve: [[1, 2], [2, 2.1], [4, 2.3], [8, 3], [16, 4.4], [32, 7], [64, 12], [128, 20], [256, 40], [512, 80], [1024, 170]],
  };
  const forwardOnly = { ...hw, stepOverheadMs: 0, perSeqOverheadUs: 0 };
  const decode = (B: number, L: number) => Array.from({ length: B }, () => ({ numTokens: 1, contextLen: L, sample: true }));
  const forward = [decode(1, 64), decode(4, 256), decode(16, 256), decode(64, 512), [{ numTokens: 100, contextLen: 100, sample: true }], [{ numTokens: 1024, contextLen: 1024, sample: true }]].map((sh) => {
    const features = stepFeatures(model, sh);
    return { features, ms: costOfFeatures(forwardOnly, features).ms };
  });
  // Engine runs of prompts, each followed by 12 decode steps (alone, and four at a time), where the
  // first two decode steps after a prompt run 1.3x and 1.15x slow. Noise: ±5%, uniform.
  const samples = (transient: number[], seed: number): EngineStepSample[] => {
    const rng = new SeededRng(seed);
    const out: EngineStepSample[] = [];
    for (const [kind, B] of [['none', 1], ['continuous', 4]] as Array<[EngineRunKind, number]>) {
      for (let r = 0; r < 30; r++) {
        const shapes = [[...decode(B - 1, 150), { numTokens: 100, contextLen: 100, sample: true }], ...Array.from({ length: 12 }, (_, k) => decode(B, 101 + k))];
        shapes.forEach((shape, k) => {
          const features = stepFeatures(model, shape);
          const slow = (k >= 1 && transient[k - 1]) || 1;
          const runnerMs = costOfFeatures(forwardOnly, features).ms * slow * (0.95 + 0.1 * rng.next());
          const periodMs = runnerMs + 0.3 + 0.025 * shape.length;
          out.push({ run: kind, shape, features, runnerMs, periodMs, totalMs: periodMs, idleBeforeMs: r === 0 && k === 0 ? Infinity : 0.01 });
        });
      }
    }
    return out;
  };
  const fit = fitCalibration(forward, samples([1.3, 1.15], 5));
  const f = fit.hardware.afterPromptFactors;
  assert.ok(f && f.length >= 2 && Math.abs(f[0] - 1.3) < 0.05 && Math.abs(f[1] - 1.15) < 0.05 && f.slice(2).every((x) => x < 1.04), `factors ${JSON.stringify(f)}`);
  // The steady decode steps are priced as generated, not dragged up by the slow ones (a fit without
  // the factors prices them ~3.6% high here).
  const steady = stepFeatures(model, decode(4, 110));
  const truth = costOfFeatures(hw, steady).ms;
  assert.ok(Math.abs(costOfFeatures(fit.hardware, steady).ms / truth - 1) < 0.015, `steady decode: ${costOfFeatures(fit.hardware, steady).ms} vs ${truth}`);
  assert.ok(Math.abs(costOfFeatures(fit.hardware, steady, 0, 1).ms / (1.3 * truth) - 1) < 0.06, 'the first decode step after a prompt step');
  // Without a transient there are no factors (or none above noise); 'off' never fits them.
  const flat = fitCalibration(forward, samples([], 6)).hardware.afterPromptFactors ?? [];
  assert.ok(flat.every((x) => x < 1.04), `no transient, factors ${JSON.stringify(flat)}`);
  assert.equal(fitCalibration(forward, samples([1.3, 1.15], 5), { afterPrompt: 'off' }).hardware.afterPromptFactors, undefined);
});

test('calibrate --quick on a real model writes a profile the simulator runs with', { skip: stories.missing }, async () => {
  const file = join(dir, 'cpu.json');
  let out = '';
  let err = '';
  const code = await runCalibrate(
    ['--model', stories.path, '--out', file, '--quick', '--threads', '1', '--reps', '2', '--passes', '2', '--max-batch', '16', '--engine-requests', '8', '--name', 'test-cpu'],
    { write: (s: string) => (out += s) },
    { write: (s: string) => (err += s) },
  );
  assert.equal(code, 0, err);
  assert.match(err, /calibrating stories260K\.bin on /);
  assert.match(out, /profile 'test-cpu' for stories260K\.bin/);
  const profile = parseProfile(JSON.parse(readFileSync(file, 'utf8')), file);
  const h = profile.hardware;
  assert.equal(profile.model.dim, 64);
  assert.equal(profile.model.nKvHeads, 4);
  assert.equal(profile.model.weightBytes, 4, 'a float32 checkpoint');
  assert.equal(profile.model.kvBytes, 4);
  assert.ok(h.bandwidthGBs > 0 && h.peakTflops > 0 && (h.attentionGflops ?? 0) > 0);
  assert.ok(h.stepOverheadMs >= 0 && h.perSeqOverheadUs >= 0);
  // Step time comes from the measured row curve: points from 1 row up to the most rows measured.
  assert.ok(h.rowCurve && h.rowCurve.length >= 4 && h.rowCurve[0][0] === 1, JSON.stringify(h.rowCurve));
  assert.ok(h.rowCurve.every(([r, ms], i) => ms >= 0 && (i === 0 || r > h.rowCurve![i - 1][0])));
  assert.match(out, /per-row work: 1:/);
  // What a step's prompt chunks cost the engine beyond the forward pass: a curve in prompt rows from
  // [0, 0] up to the most prompt rows an engine step had.
  const excess = h.prefillExcessCurve;
  assert.ok(excess && excess.length >= 2 && excess[0][0] === 0 && excess[0][1] === 0, JSON.stringify(excess));
  assert.ok(excess.every(([r, ms], i) => ms >= 0 && (i === 0 || r > excess[i - 1][0])));
  assert.equal(h.perPrefillRowUs, undefined, 'one way of pricing the prompt excess, not two');
  // Reading the KV cache: a curve in its size, from [0, 0], in place of one bandwidth.
  assert.ok(h.kvReadCurve && h.kvReadCurve.length >= 2 && h.kvReadCurve[0][0] === 0 && h.kvBandwidthGBs === undefined, JSON.stringify(h.kvReadCurve));
  assert.match(out, /reading the KV cache: [\d.]+ MB:[\d.]+ /);
  assert.match(out, /a step's prompt chunks in the engine, beyond the forward pass: 16:[\d.]+ .*\(prompt rows:ms\)/);
  // The sparse engine run (requests on an idle engine) measured the cost of a cold step.
  assert.ok(h.coldStepFactor !== undefined && h.coldStepFactor >= 1, `cold step factor ${h.coldStepFactor}`);
  assert.match(err, /steps on an idle engine: \d+, [\d.]+x the time of a step that follows another/);
  const cal = profile.calibration as { passes: number; forward: { reps: number; measurements: unknown[] }; engine: { steps: number; check: { totalRelError: number } } };
  assert.ok(cal.forward.measurements.length >= 8);
  // Two passes pooled: both engine runs' steps (8 requests of 8..64 tokens: each run alone takes
  // well over 16 steps) are in the fit.
  assert.equal(cal.passes, 2);
  assert.match(err, /pass 1\/2[\s\S]*pass 2\/2/);
  assert.ok(cal.engine.steps > 2 * 16, `${cal.engine.steps} engine steps`);
  // Loose: the machine is shared. The fitted profile still accounts for the engine run's time to within a factor.
  assert.ok(Math.abs(cal.engine.check.totalRelError) < 0.6, `engine run time off by ${cal.engine.check.totalRelError}`);

  let simOut = '';
  const sim = await runSimulate(['--hardware-file', file, '--workload', 'fixed', '--input-len', '16', '--output-len', '8', '--num-requests', '6', '--compare', 'none,continuous'], { write: (s: string) => (simOut += s) }, { write: () => undefined });
  assert.equal(sim, 0);
  assert.match(simOut, /Simulated: stories260K\.bin on test-cpu/);
});

test('the trickle engine run joins prompts one at a time into a small running batch', { skip: stories.missing }, async () => {
  const loaded = await loadModel(stories.path);
  const model = modelProfileFromWeights(loaded.config, loaded.weights);
  const engine = await CalibrationEngine.open(
    { modelPath: stories.path, config: loaded.config, model, backend: 'auto', threads: 1, numBlocks: 256, blockSize: 16, numRequests: 24, tokenizer: null },
    'trickle',
  );
  try {
    const steps = await engine.run(7);
    assert.ok(steps.every((st) => st.run === 'trickle'));
    const promptSteps = steps.filter((st) => st.features.prefillSeqs > 0).length;
    assert.ok(promptSteps >= 24, `every request has a prompt step of its own: ${promptSteps} prompt steps`);
    // Prompts join while other sequences decode (what the offline runs, all arriving at once, lack)...
    const joinsIntoRunning = steps.filter((st) => st.features.prefillSeqs > 0 && st.features.numSeqs > st.features.prefillSeqs);
    assert.ok(joinsIntoRunning.length >= 8, `${joinsIntoRunning.length} prompt steps joined a running batch`);
    // ...and the batch stays far from the 32 slots.
    assert.ok(Math.max(...steps.map((st) => st.features.numSeqs)) < 32);
  } finally {
    await engine.close();
  }
});

test('calibrate usage mistakes are named', async () => {
  await assert.rejects(runCalibrate([]), (e: unknown) => e instanceof UsageError && /--model FILE is required/.test((e as Error).message));
  await assert.rejects(runCalibrate(['--model', join(dir, 'none.gguf')]), /model file not found/);
  // The flags are checked before the model is read: any existing file will do (the shared model may be absent).
  const model = join(dir, 'any-file.gguf');
  writeFileSync(model, 'not read');
  await assert.rejects(runCalibrate(['--model', model, '--backend', 'gpu']), /--backend must be one of auto, native, typescript/);
  await assert.rejects(runCalibrate(['--model', model, '--reps', '0']), /--reps must be at least 1/);
  await assert.rejects(runCalibrate(['--model', model, '--estimate', 'median']), /--estimate must be mean or robust, got 'median'/);
});
