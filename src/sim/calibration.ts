// Measures the real engine on this machine and fits the cost model to it, so the simulator can stand
// in for this CPU the way the datasheet profiles stand in for GPUs.
//
// Two measurements, two parts of the step time:
// 1. The forward pass (and sampling) over a grid of batch shapes — decode batches of 1..64 sequences
//    at several context lengths, prefill chunks of 16..1024 tokens and batches of prompts up to the
//    2048-token budget, mixed batches — run through the real LocalModelRunner, timed as the runner
//    times itself. Shapes are measured round-robin, several times each, and a trimmed mean kept (the
//    fastest and slowest dropped): on a shared machine load comes and goes, round-robin spreads it
//    over every shape alike, and a mean — not a median — is what throughput depends on.
// 2. Short runs of the real Engine with its worker-thread runner: continuous batching, static batches,
//    one request at a time, and requests on an idle engine. One engine per kind stays open across
//    runs (a fresh engine runs slower for its first second or two). The step trace gives, per step,
//    the runner's forward time and the step's period (start to next start); the shapes come from the
//    SchedulerOutputs themselves.
// The forward pass's row curve, per-sequence cost and attention rates are fitted to the grid and the
// engine's forward times together (fitCalibration); the engine's own cost per step (period minus
// forward: scheduling, the hop to the worker and back, update, delivery) is fitted as a line in the
// number of sequences and added to the fixed costs. Both fits reproduce mean times by default: a
// simulated run's duration is a sum of step times, and a sum follows the mean.
import { performance } from 'node:perf_hooks';
import { cpus, totalmem } from 'node:os';
import { basename } from 'node:path';
import { loadModel } from '../model/loaders/index.js';
import { getKernels, type KernelBackend } from '../model/kernels/index.js';
import { LocalModelRunner } from '../engine/model-runner.js';
import { WorkerModelRunner } from '../engine/worker-runner.js';
import { Engine, DEFAULT_ENGINE_OPTIONS } from '../engine/engine.js';
import { blocksForMemory } from '../model/kv-storage.js';
import { resolveEngineOptions } from '../engine/engine-options.js';
import { kvBytesPerToken } from '../util/kv-bytes.js';
import { DEFAULT_SAMPLING, type ModelRunner, type SchedulerOutput, type ScheduledSequence, type NewSequenceData } from '../engine/types.js';
import type { StepRecord } from '../engine/step-trace.js';
import type { ModelConfig } from '../model/config.js';
import type { Tokenizer } from '../model/tokenizer-types.js';
import { tokenizerFromGguf } from '../model/tokenizer.js';
import { buildWorkload } from '../bench/workload.js';
import { SeededRng } from '../bench/rng.js';
import { afterPromptFactor, COLD_AFTER_IDLE_MS, costOfFeatures, stepFeatures, type HardwareProfile, type ModelProfile, type SeqShape, type StepFeatures } from './cost-model.js';
import { FitError, fitEngineOverhead, fitRoofline, fitRowCurve, median, trimmedMean, type RooflineFit, type RowCurveFit } from './fit.js';
import { modelProfileFromWeights } from './model-profile.js';
import { stepShape } from './step-time.js';
import type { CalibratedProfileFile } from './profiles.js';
import { DEFAULT_KV_CACHE_DTYPE, kvElementBytes } from '../model/kv-dtype.js';

/** The KV budget LLM.load gives a model when not told otherwise (see src/llm.ts). */
export const ENGINE_DEFAULT_KV_BYTES = 1024 ** 3;

export interface GridShape {
  label: string;
  kind: 'decode' | 'prefill' | 'mixed';
  seqs: SeqShape[];
}

export interface GridOptions {
  /** Largest decode batch (default 64). */
  maxBatch?: number;
  /** Tokens the KV cache holds: shapes needing more are left out (the engine could never run them). */
  capacityTokens: number;
  /** Fewer shapes (for tests and a first look). */
  quick?: boolean;
  /** Most rows in one step (the engine's max_num_batched_tokens; default 2048). */
  maxRows?: number;
}

/**
 * The batch shapes calibration measures. Only shapes the engine could run are kept: every context
 * within the model's, all of them together within the KV cache, the rows within the token budget and
 * the sequences within the batch size.
 */
export function calibrationGrid(config: Pick<ModelConfig, 'contextLength'>, opts: GridOptions): GridShape[] {
  const maxCtx = config.contextLength;
  const maxBatch = opts.maxBatch ?? 64;
  const budget = opts.maxRows ?? 2048;
  const fits = (seqs: SeqShape[]) =>
    seqs.length <= maxBatch &&
    seqs.every((s) => s.contextLen <= maxCtx) &&
    seqs.reduce((n, s) => n + s.contextLen, 0) <= opts.capacityTokens &&
    seqs.reduce((n, s) => n + s.numTokens, 0) <= budget;
  const out: GridShape[] = [];
  const add = (g: GridShape) => {
    if (fits(g.seqs)) out.push(g);
  };
  const decode = (B: number, L: number) => Array.from({ length: B }, () => ({ numTokens: 1, contextLen: L, sample: true }));
  const batches = (opts.quick ? [1, 4, 16, 64] : [1, 2, 4, 8, 16, 32, 48, 64]).filter((b) => b <= maxBatch);
  if (!batches.includes(maxBatch) && maxBatch > 1) batches.push(maxBatch);
  const contexts = [64, Math.round(maxCtx / 4), Math.round(maxCtx / 2), maxCtx - 8].filter((c, i, a) => c >= 16 && a.indexOf(c) === i);
  for (const L of opts.quick ? [contexts[0], contexts[contexts.length - 1]] : contexts) {
    for (const B of batches) add({ label: `decode ${B}x @${L}`, kind: 'decode', seqs: decode(B, L) });
  }
  const many = (B: number, C: number): GridShape => ({ label: B === 1 ? `prefill ${C}` : `prefill ${B}x${C}`, kind: 'prefill', seqs: Array.from({ length: B }, () => ({ numTokens: C, contextLen: C, sample: true })) });
  for (const C of opts.quick ? [16, 128, 512] : [16, 32, 64, 128, 256, 512, 1024]) add(many(1, C));
  // A chunk continuing a long prompt, and several prompts at once (static batching's prefill, and
  // continuous batching's first steps, which fill the whole token budget: per-row costs grow once
  // activations outgrow the caches).
  add({ label: 'prefill 128 @512', kind: 'prefill', seqs: [{ numTokens: 128, contextLen: 512, sample: true }] });
  for (const [B, C] of opts.quick ? [[4, 128], [8, 256]] : [[4, 128], [16, 32], [8, 128], [16, 128], [8, 256], [4, 512]]) add(many(B, C));
  // Continuous batching's typical step: decodes with one prefill chunk riding along.
  const L = Math.max(16, Math.round(maxCtx / 4));
  for (const [C, B] of opts.quick ? [[128, 15]] : [[64, 8], [256, 8], [64, 31], [256, 31], [1024, 31]]) {
    add({ label: `mixed ${C}+${B}x @${L}`, kind: 'mixed', seqs: [{ numTokens: C, contextLen: C, sample: true }, ...decode(B, L)] });
  }
  return out;
}

export interface ShapeMeasurement {
  label: string;
  kind: GridShape['kind'];
  seqs: SeqShape[];
  features: StepFeatures;
  /** Trimmed mean forward + sampling time over the repetitions. */
  ms: number;
  samples: number[];
}

/**
 * The order in which shapes take KV blocks: a fixed shuffle of the whole cache. A running engine's
 * sequences hold blocks scattered over the cache (freed blocks are reused as they come back), and
 * reading scattered blocks costs more than reading consecutive ones (~20% for a 32-sequence decode
 * on this project's machine), so the grid reads them the way the engine does.
 */
export function scatteredBlockOrder(numBlocks: number, seed = 1): Int32Array {
  const order = Int32Array.from({ length: numBlocks }, (_, i) => i);
  const rng = new SeededRng(seed);
  for (let i = numBlocks - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
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

/** Builds the SchedulerOutput a scheduler would send for this shape (fresh sequences, distinct blocks in `order`). */
function shapeStep(shape: GridShape, step: number, firstSeqId: number, blockSize: number, order: Int32Array, finished: number[]): SchedulerOutput {
  let nextBlock = 0;
  const scheduled: ScheduledSequence[] = [];
  const newSequences: NewSequenceData[] = [];
  shape.seqs.forEach((s, i) => {
    const seqId = firstSeqId + i;
    const start = s.contextLen - s.numTokens;
    const blocks = Math.ceil(s.contextLen / blockSize);
    const blockTable = Array.from({ length: blocks }, () => order[nextBlock++ % order.length]);
    const prompt = Array.from({ length: s.contextLen }, (_, j) => 3 + ((j * 7919 + i * 104729) % 200));
    newSequences.push({ seqId, promptTokenIds: prompt, outputTokenIds: [], sampling: { ...DEFAULT_SAMPLING, temperature: 0, ignoreEos: true, maxTokens: 1 << 20 }, seed: seqId });
    scheduled.push({ seqId, tokenIds: prompt.slice(start), startPosition: start, blockTable, sample: s.sample });
  });
  const numBatchedTokens = shape.seqs.reduce((n, s) => n + s.numTokens, 0);
  return { step, scheduled, newSequences, finishedSeqIds: finished, blockCopies: [], numBatchedTokens };
}

export { trimmedMean } from './fit.js';

export interface ForwardMeasureOptions {
  reps: number;
  blockSize: number;
  numBlocks: number;
  /**
   * Timed samples per shape per round, from an earlier pass. Without it a warm-up round runs first
   * and decides: shapes under 10 ms get three, so the small decode steps that dominate TPOT are
   * measured as well as the big ones that dominate time.
   */
  perRound?: number[];
  /**
   * The shape the round-robin starts at (default 0). Calibrator passes start at a different shape
   * each time: whatever comes first after a pause runs slow for a moment, and no shape should
   * always be the one that pays for it.
   */
  startAt?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Times the runner's forward pass and sampling over every shape, round-robin, `reps` rounds (after a warm-up round). */
export function measureForward(runner: LocalModelRunner, model: ModelProfile, grid: readonly GridShape[], opts: ForwardMeasureOptions): ShapeMeasurement[] {
  const samples = grid.map(() => [] as number[]);
  const order = scatteredBlockOrder(opts.numBlocks);
  const perRound = opts.perRound ? [...opts.perRound] : grid.map(() => 1);
  let step = 0;
  let seqId = 0;
  let finished: number[] = [];
  const first = opts.perRound ? 0 : -1;
  const total = grid.length * (opts.reps - first);
  let done = 0;
  const run = (shape: GridShape): number => {
    const out = shapeStep(shape, step++, seqId, opts.blockSize, order, finished);
    finished = out.newSequences.map((s) => s.seqId);
    seqId += shape.seqs.length;
    const r = runner.executeSync(out);
    return r.forwardMs + r.sampleMs;
  };
  const n = grid.length;
  const start = n > 0 ? (((opts.startAt ?? 0) % n) + n) % n : 0;
  const visit = grid.map((_, j) => (j + start) % n);
  for (let rep = first; rep < opts.reps; rep++) {
    visit.forEach((i) => {
      const shape = grid[i];
      // Timed runs follow untimed ones of the same shape: in an engine a step follows steps much like
      // it, with the weights warm in the caches, while here the shape before may have been a big
      // prefill. One untimed run is not enough for a small step: a one-sequence decode ran 20-30%
      // slow for its first two or three runs after a big shape, ~12% over the timed ones; so untimed
      // runs go on until WARM_GRID_MS have passed.
      let warm = run(shape);
      for (let spent = warm; spent < WARM_GRID_MS; spent += warm) warm = run(shape);
      // The last untimed run decides (the very first run of a shape also pays for JIT warm-up).
      if (rep < 0) perRound[i] = warm < 10 ? 3 : 1;
      else for (let k = 0; k < perRound[i]; k++) samples[i].push(run(shape));
      opts.onProgress?.(++done, total);
    });
  }
  return grid.map((g, i) => ({ label: g.label, kind: g.kind, seqs: g.seqs, features: stepFeatures(model, g.seqs), ms: trimmedMean(samples[i]), samples: samples[i] }));
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

/** A runner wrapper that remembers the shape of every step it executes (by step number). */
class ShapeRecordingRunner implements ModelRunner {
  readonly shapes = new Map<number, SeqShape[]>();
  constructor(private readonly inner: ModelRunner) {}
  execute(out: SchedulerOutput) {
    this.shapes.set(out.step, stepShape(out));
    return this.inner.execute(out);
  }
  close() {
    return this.inner.close();
  }
}

export interface EngineMeasureOptions {
  modelPath: string;
  config: ModelConfig;
  model: ModelProfile;
  backend: KernelBackend;
  threads: number;
  numBlocks: number;
  blockSize: number;
  numRequests: number;
  tokenizer: Tokenizer | null;
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
export const ENGINE_RUN_KINDS: readonly EngineRunKind[] = ['continuous', 'static', 'none', 'sparse', 'trickle'];

/** Each kind's engine settings and how many of a run's workload requests it takes (at most). */
const RUN_KINDS: Record<EngineRunKind, { policy: 'continuous' | 'static' | 'none'; maxNumSeqs: number; requests: number }> = {
  continuous: { policy: 'continuous', maxNumSeqs: 32, requests: Infinity },
  static: { policy: 'static', maxNumSeqs: 16, requests: 32 },
  none: { policy: 'none', maxNumSeqs: 1, requests: 8 },
  sparse: { policy: 'continuous', maxNumSeqs: 32, requests: 10 },
  trickle: { policy: 'continuous', maxNumSeqs: 32, requests: 24 },
};

/** The trickle run adds a request every this many engine steps (requests of 8-64 tokens: a batch of ~3-5). */
const TRICKLE_GAP_STEPS = 8;

/**
 * A real Engine (worker-thread runner, as LLM.load makes) set up for one kind of calibration run and
 * kept open across runs of that kind. A fresh engine runs ~3-4% slower for its first second or two
 * (JIT, first touches of its memory); a calibration run lasts about that long, so a fresh engine per
 * run measured the start-up instead of the steady state the real runs spend most of their time in.
 */
export class CalibrationEngine {
  private constructor(
    readonly kind: EngineRunKind,
    private readonly o: EngineMeasureOptions,
    private readonly engine: Engine,
    private readonly runner: ShapeRecordingRunner,
    private readonly warmUpTokens: number,
  ) {}

  static async open(o: EngineMeasureOptions, kind: EngineRunKind): Promise<CalibrationEngine> {
    const { policy, maxNumSeqs } = RUN_KINDS[kind];
    const inner = await WorkerModelRunner.create({ modelPath: o.modelPath, backend: o.backend, threads: o.threads, numBlocks: o.numBlocks, blockSize: o.blockSize, kvCacheDtype: DEFAULT_KV_CACHE_DTYPE, eogIds: [] });
    const runner = new ShapeRecordingRunner(inner);
    const kv = { contextLength: o.config.contextLength, kvBytesPerToken: kvBytesPerToken(o.config, kvElementBytes(DEFAULT_KV_CACHE_DTYPE)), defaultKvBytes: ENGINE_DEFAULT_KV_BYTES };
    const engine = new Engine(runner, {
      ...resolveEngineOptions({ policy, maxNumSeqs, numBlocks: o.numBlocks, blockSize: o.blockSize }, kv),
      // The model's own tokenizer, as LLM.load would give it: detokenizing every token is part of a step.
      tokenizer: o.tokenizer,
      eogIds: o.tokenizer ? [...o.tokenizer.eogIds] : [],
    });
    // Warm-up: the worker's first steps pay for JIT and page faults. Its pace sets how many tokens
    // the warm-up before each run decodes.
    let warmUpTokens: number;
    try {
      await drain(engine, [[1, 5, 6, 7]], 4);
      const t0 = performance.now();
      await drain(engine, [[1, 5, 6, 7]], 8);
      const stepMs = (performance.now() - t0) / 9;
      warmUpTokens = Math.max(8, Math.min(128, Math.round(WARM_UP_MS / stepMs)));
    } catch (err) {
      await engine.close();
      throw err;
    }
    return new CalibrationEngine(kind, o, engine, runner, warmUpTokens);
  }

  /**
   * Runs a short offline workload (its own seed: a different one each run gives more shapes, not the
   * same ones again) and returns every step with its period (start to the next step's start, when the
   * next followed at once). The run's first step has idleBeforeMs Infinity.
   */
  async run(seed: number): Promise<EngineStepSample[]> {
    const o = this.o;
    const maxLen = Math.min(o.config.contextLength, 1024);
    const workload = buildWorkload(
      {
        kind: 'synthetic',
        seed,
        numRequests: o.numRequests,
        promptDist: { kind: 'uniform', min: 8, max: Math.min(320, maxLen >> 1) },
        outputDist: { kind: 'uniform', min: 8, max: 64 },
        arrival: { kind: 'offline' },
      },
      { vocabSize: o.config.vocabSize, bosId: 1, maxModelLen: maxLen },
    );
    const requests = workload.requests.slice(0, RUN_KINDS[this.kind].requests);
    // Untimed warm-up: one sequence decoding for a few hundred milliseconds. An engine whose worker sat
    // idle while other things ran (its JIT code and caches gone cold) ran its next second ~6% slower
    // than it does in the middle of a long run.
    await drain(this.engine, [[1, 5, 6, 7]], this.warmUpTokens);
    const steps: StepRecord[] = [];
    this.runner.shapes.clear();
    const off = this.engine.onStep((r) => steps.push(r));
    try {
      if (this.kind === 'sparse') {
        for (const r of requests) {
          await new Promise((resolve) => setTimeout(resolve, IDLE_GAP_MS));
          await drain(this.engine, [r.promptTokenIds], 8);
        }
      } else if (this.kind === 'trickle') {
        // Counted in steps, not milliseconds: a timer cannot keep pace with a tiny model's steps.
        const running: Promise<void>[] = [];
        let added = 0;
        let sinceAdd = 0;
        let allAdded!: () => void;
        const done = new Promise<void>((resolve) => (allAdded = resolve));
        const add = () => {
          const r = requests[added++];
          const d = drain(this.engine, [r.promptTokenIds], 0, [r.outputLen]);
          d.catch(() => {}); // handled by Promise.all below; not an unhandled rejection meanwhile
          running.push(d);
          sinceAdd = 0;
          if (added === requests.length) allAdded();
        };
        const offTrickle = this.engine.onStep(() => {
          sinceAdd++;
          // Every request lives at least 9 steps, so the batch runs dry only if a request failed.
          if (added < requests.length && (sinceAdd >= TRICKLE_GAP_STEPS || !this.engine.hasWork())) add();
        });
        try {
          add();
          await done;
          await Promise.all(running);
        } finally {
          offTrickle();
        }
      } else {
        await drain(this.engine, requests.map((r) => r.promptTokenIds), 0, requests.map((r) => r.outputLen));
      }
    } finally {
      off();
    }
    const samples: EngineStepSample[] = [];
    const idleBefore = (i: number) => (i === 0 ? Infinity : steps[i].startMs - (steps[i - 1].startMs + steps[i - 1].totalMs));
    for (let i = 0; i < steps.length; i++) {
      const shape = this.runner.shapes.get(steps[i].step);
      if (!shape || steps[i].error) continue;
      const followed = i + 1 < steps.length && idleBefore(i + 1) <= COLD_AFTER_IDLE_MS;
      samples.push({
        run: this.kind,
        shape,
        features: stepFeatures(o.model, shape),
        periodMs: followed ? steps[i + 1].startMs - steps[i].startMs : NaN,
        runnerMs: steps[i].forwardMs + steps[i].sampleMs,
        totalMs: steps[i].totalMs,
        idleBeforeMs: idleBefore(i),
      });
    }
    return samples;
  }

  close(): Promise<void> {
    return this.engine.close();
  }
}

/** Untimed runs of a grid shape before its timed ones add up to at least this (ms). */
const WARM_GRID_MS = 10;

/** How long the untimed warm-up before each calibration run decodes (8 to 128 tokens). */
const WARM_UP_MS = 300;

/** Idle time before each request of the sparse engine run: long enough for the worker to go to sleep. */
const IDLE_GAP_MS = 25;

async function drain(engine: Engine, prompts: number[][], fixedLen: number, lens?: number[]): Promise<void> {
  const streams = prompts.map((p, i) =>
    engine.addRequest({ promptTokenIds: p, sampling: { ...DEFAULT_SAMPLING, temperature: 0, ignoreEos: true, maxTokens: fixedLen || lens![i], seed: i } }),
  );
  await Promise.all(streams.map(async (s) => { for await (const _ of s) { /* drain */ } }));
}

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
  engineCheck: { steps: number; meanRelError: number; medianAbsRelError: number; totalRelError: number };
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
 * How the fit turns noisy samples into one step time per shape. 'mean' (default): the row curve is
 * fitted on errors relative to its own prediction and the engine overhead per batch size is a mean,
 * so the profile reproduces mean step times, which throughput adds up. 'robust': errors relative to
 * the measured time and median overheads, which lean toward the fast samples (by about the samples'
 * squared coefficient of variation, ~5-9% on this project's machine for one-sequence steps).
 */
export type CalibrationEstimate = 'mean' | 'robust';

export interface CalibrationFit {
  hardware: HardwareProfile;
  /** The row curve fitted to the grid alone (a diagnostic), and to grid and engine together (the profile's). */
  gridFit: RowCurveFit;
  curveFit: RowCurveFit;
  roofline: RooflineFit;
  overhead: { stepOverheadMs: number; perSeqOverheadUs: number };
  engineCheck: CalibrationResult['engineCheck'];
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

function round(x: number, digits: number): number {
  const p = 10 ** digits;
  return Math.round(x * p) / p;
}

/** A fitted curve's values rounded for the profile file (its points' positions kept exact). */
function roundCurve(curve: ReadonlyArray<readonly [number, number]>): Array<[number, number]> {
  return curve.map(([x, ms]) => [x, round(ms, 4)]);
}
