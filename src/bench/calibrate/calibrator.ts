// `stepwise calibrate`: measures the real engine on this machine — the forward pass over a grid of
// batch shapes (grid.ts) and short engine runs (engine-runs.ts) — and fits the cost model to both
// (src/sim/calibration-fit.ts), so the simulator can stand in for this CPU the way the datasheet
// profiles stand in for GPUs.
import { performance } from 'node:perf_hooks';
import { cpus } from 'node:os';
import { basename } from 'node:path';
import { DEFAULT_ENGINE_OPTIONS } from '../../engine/engine-options.js';
import { LocalModelRunner } from '../../engine/model-runner.js';
import { getKernels, type KernelBackend } from '../../model/kernels/index.js';
import { blocksForMemory } from '../../model/kv-storage.js';
import { loadModel } from '../../model/loaders/index.js';
import { tokenizerFromGguf } from '../../model/tokenizer.js';
import { ENGINE_DEFAULT_KV_BYTES, fitCalibration, round, type CalibrationEstimate, type EngineCheck, type EngineRunKind, type EngineStepSample, type ShapeMeasurement } from '../../sim/calibration-fit.js';
import { COLD_AFTER_IDLE_MS, costOfFeatures, stepFeatures, type HardwareProfile, type ModelProfile } from '../../sim/cost-model.js';
import { FitError, trimmedMean, type RooflineFit, type RowCurveFit } from '../../sim/fit.js';
import type { CalibratedProfileFile } from '../../sim/profiles.js';
import { CalibrationEngine, ENGINE_RUN_KINDS } from './engine-runs.js';
import { calibrationGrid, measureForward, type GridShape } from './grid.js';
import { modelProfileFromWeights } from './model-profile.js';

export interface CalibrateOptions {
  modelPath: string;
  backend?: KernelBackend;
  threads?: number;
  /** Repetitions per shape per pass (default 5; 3 with quick). */
  reps?: number;
  /**
   * Passes over the grid and the engine run, pooled (default 1). A shared or virtual machine's speed
   * drifts by ±10% over seconds to minutes; passes spread out in time average that drift instead of
   * fitting whatever speed the machine had during one minute.
   */
  passes?: number;
  quick?: boolean;
  maxBatch?: number;
  blockSize?: number;
  /** Requests of the engine-overhead run (default 40; 16 with quick). */
  engineRequests?: number;
  seed?: number;
  name?: string;
  /** How samples become step times (default 'mean'; see CalibrationEstimate). */
  estimate?: CalibrationEstimate;
  log?: (line: string) => void;
}

export interface CalibrationResult {
  profile: CalibratedProfileFile;
  forward: ShapeMeasurement[];
  /** The forward pass's fit (its row curve sets step times) and the roofline fit (bandwidth and peak for utilisation). */
  forwardFit: RowCurveFit;
  roofline: RooflineFit;
  engineSteps: EngineStepSample[];
  /** How well the whole profile predicts the engine run's step periods. */
  engineCheck: EngineCheck;
}

/** Measures this machine with the model at `modelPath` and returns the fitted profile. */
export async function calibrate(o: CalibrateOptions): Promise<CalibrationResult> {
  const cal = await Calibrator.open(o);
  try {
    const passes = o.passes ?? 1;
    for (let p = 0; p < passes; p++) {
      if (passes > 1) cal.log(`pass ${p + 1}/${passes}`);
      await cal.measurePass();
    }
    return cal.fit();
  } finally {
    await cal.close();
  }
}

/**
 * A calibration in progress: the model loaded, the grid chosen, and every sample measured so far.
 * Each measurePass() adds a round of grid samples and an engine run; fit() fits the profile to all
 * of them. Callers can interleave passes with other work (bench/sim-fidelity.ts interleaves them
 * with the real runs it checks the simulator against, so both see the machine at the same times).
 */
export class Calibrator {
  private readonly samples: number[][];
  private perRound: number[] | undefined;
  private readonly engineSteps: EngineStepSample[] = [];
  private passes = 0;
  private engineRuns = 0;
  /** One engine per run kind, opened at its first run and kept until close(). */
  private readonly engines = new Map<EngineRunKind, CalibrationEngine>();
  private readonly t0 = performance.now();

  private constructor(
    private readonly o: CalibrateOptions,
    private readonly loaded: Awaited<ReturnType<typeof loadModel>>,
    private readonly kernelsName: string,
    private readonly runner: LocalModelRunner,
    readonly model: ModelProfile,
    readonly grid: GridShape[],
    private readonly threads: number,
    private readonly blockSize: number,
    private readonly numBlocks: number,
    private readonly reps: number,
  ) {
    this.samples = grid.map(() => []);
  }

  static async open(o: CalibrateOptions): Promise<Calibrator> {
    const backend = o.backend ?? 'auto';
    const threads = o.threads ?? (await import('node:os')).availableParallelism();
    const blockSize = o.blockSize ?? DEFAULT_ENGINE_OPTIONS.blockSize;
    const quick = o.quick ?? false;
    const loaded = await loadModel(o.modelPath);
    const kernels = await getKernels(backend, { threads });
    const model = modelProfileFromWeights(loaded.config, loaded.weights, basename(o.modelPath));
    const maxBatch = o.maxBatch ?? 64;
    // The KV budget the engine would have at its defaults (64 sequences, 1 GiB cap), as LLM.load sizes it.
    const numBlocks = Math.min(maxBatch * Math.ceil(loaded.config.contextLength / blockSize), blocksForMemory(ENGINE_DEFAULT_KV_BYTES, loaded.config, blockSize));
    const grid = calibrationGrid(loaded.config, { maxBatch, capacityTokens: numBlocks * blockSize, quick });
    const reps = o.reps ?? (quick ? 3 : 5);
    const runner = await LocalModelRunner.create({ model: loaded, kernels, numBlocks, blockSize, eogIds: [] });
    const cal = new Calibrator(o, loaded, kernels.name, runner, model, grid, threads, blockSize, numBlocks, reps);
    cal.log(`calibrating ${basename(o.modelPath)} on ${kernels.name}: ${grid.length} batch shapes x ${reps} repetitions, then an engine run${(o.passes ?? 1) > 1 ? `, ${o.passes} passes` : ''}`);
    return cal;
  }

  log(line: string): void {
    this.o.log?.(`  ${line}`);
  }

  /**
   * One round-robin pass over the grid (`reps` samples per shape), then one engine run of each kind.
   * The grid's runner and one engine per kind stay open until close(), so up to five KV caches (each
   * at most the 1 GiB default, touched only as far as the runs fill them) are allocated side by side.
   */
  async measurePass(): Promise<void> {
    this.measureGrid();
    for (const kind of ENGINE_RUN_KINDS) await this.measureEngine(kind);
  }

  /** One round-robin pass over the grid of batch shapes (`reps` samples per shape). */
  measureGrid(): void {
    let lastPct = -1;
    const forward = measureForward(this.runner, this.model, this.grid, {
      reps: this.reps,
      blockSize: this.blockSize,
      numBlocks: this.numBlocks,
      perRound: this.perRound,
      // Seven shapes on each pass: spread over the grid without always landing on the same few.
      startAt: this.passes * 7,
      onProgress: (d, t) => {
        const pct = Math.floor((100 * d) / t / 25) * 25;
        if (pct !== lastPct) this.log(`forward pass: ${Math.round((100 * d) / t)}%`);
        lastPct = pct;
      },
    });
    this.perRound ??= forward.map((m) => Math.max(1, Math.round(m.samples.length / this.reps)));
    forward.forEach((m, i) => this.samples[i].push(...m.samples));
    this.passes++;
  }

  /**
   * One short run of the real engine (worker runner, step trace) of the given kind. Callers may run
   * some kinds more often than others: bench/sim-fidelity.ts runs a `none` slice after every real
   * run it checks, because the one-sequence level is the most sensitive to the machine's drift.
   */
  async measureEngine(kind: EngineRunKind): Promise<void> {
    const o = this.o;
    this.log(`engine run: ${kind}`);
    let engine = this.engines.get(kind);
    if (!engine) {
      engine = await CalibrationEngine.open(
        {
          modelPath: o.modelPath,
          config: this.loaded.config,
          model: this.model,
          backend: o.backend ?? 'auto',
          threads: this.threads,
          numBlocks: this.numBlocks,
          blockSize: this.blockSize,
          numRequests: o.engineRequests ?? (o.quick ? 16 : 40),
          tokenizer: this.loaded.format === 'gguf' ? tokenizerFromGguf(this.loaded.metadata) : null,
        },
        kind,
      );
      this.engines.set(kind, engine);
    }
    // A different workload every run: more shapes, not the same ones again.
    this.engineSteps.push(...(await engine.run((o.seed ?? 20240601) + this.engineRuns)));
    this.engineRuns++;
  }

  /** Fits the profile to every sample measured so far. */
  fit(): CalibrationResult {
    if (this.passes === 0 || this.engineRuns === 0) throw new FitError('nothing measured yet: run measurePass() (or measureGrid() and measureEngine()) first');
    const o = this.o;
    const forward: ShapeMeasurement[] = this.grid.map((g, i) => ({ label: g.label, kind: g.kind, seqs: g.seqs, features: stepFeatures(this.model, g.seqs), ms: trimmedMean(this.samples[i]), samples: this.samples[i] }));
    const engineSteps = this.engineSteps;
    const { hardware, gridFit, curveFit, roofline, overhead, engineCheck } = fitCalibration(forward, engineSteps, {
      estimate: o.estimate,
      source: `stepwise calibrate: ${cpus()[0]?.model?.trim() ?? 'unknown CPU'}, ${this.kernelsName}, ${new Date().toISOString().slice(0, 10)}`,
    });
    this.log(`forward fit over the grid: rms error ${(gridFit.rmsRelError * 100).toFixed(1)}%, worst ${(gridFit.maxRelError * 100).toFixed(1)}%`);
    this.log(`forward fit over grid and engine: rms error ${(curveFit.rmsRelError * 100).toFixed(1)}%; engine overhead ${overhead.stepOverheadMs.toFixed(3)} ms + ${overhead.perSeqOverheadUs.toFixed(1)} us/seq`);
    const cold = engineSteps.filter((s) => s.idleBeforeMs > COLD_AFTER_IDLE_MS && Number.isFinite(s.idleBeforeMs)).length;
    this.log(`steps on an idle engine: ${cold}, ${hardware.coldStepFactor !== undefined ? `${hardware.coldStepFactor}x the time of a step that follows another` : 'too few to measure'}`);
    this.log(`decode steps after a prompt step: ${hardware.afterPromptFactors ? `${hardware.afterPromptFactors.map((f) => `${f}x`).join(', ')} the time of later ones` : 'no slower than later ones'}`);
    this.log(`engine check: ${engineCheck.steps} steps, total time off by ${(engineCheck.totalRelError * 100).toFixed(1)}%, median step error ${(engineCheck.medianAbsRelError * 100).toFixed(1)}%`);
    // The forward pass as the grid measured it: no engine overhead, no engine-only prompt costs.
    const forwardOnly: HardwareProfile = { ...hardware, stepOverheadMs: 0, perSeqOverheadUs: curveFit.perSeqOverheadUs, coldStepFactor: undefined, perPrefillRowUs: 0, perPrefillSeqUs: 0, prefillExcessCurve: undefined };

    const profile: CalibratedProfileFile = {
      kind: 'stepwise-profile',
      version: 1,
      name: o.name ?? 'cpu',
      hardware,
      model: this.model,
      modelName: basename(o.modelPath),
      calibration: {
        date: new Date().toISOString(),
        backend: this.kernelsName,
        threads: this.threads,
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model?.trim(),
        blockSize: this.blockSize,
        numBlocks: this.numBlocks,
        passes: this.passes,
        wallS: round((performance.now() - this.t0) / 1000, 2),
        forward: {
          gridOnly: { rmsRelError: round(gridFit.rmsRelError, 4), maxRelError: round(gridFit.maxRelError, 4) },
          shapes: this.grid.length,
          reps: this.reps,
          rmsRelError: round(curveFit.rmsRelError, 4),
          maxRelError: round(curveFit.maxRelError, 4),
          fit: curveFit,
          roofline,
          measurements: forward.map((m) => ({ label: m.label, rows: m.features.rows, seqs: m.features.numSeqs, ms: round(m.ms, 4), fittedMs: round(costOfFeatures(forwardOnly, m.features).ms, 4) })),
        },
        engine: { steps: engineSteps.length, overhead, check: engineCheck },
      },
    };
    return { profile, forward, forwardFit: curveFit, roofline, engineSteps: [...engineSteps], engineCheck };
  }

  async close(): Promise<void> {
    const engines = [...this.engines.values()];
    this.engines.clear();
    await Promise.all([this.runner.close(), ...engines.map((e) => e.close())]);
  }
}
