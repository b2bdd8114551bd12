// Calibration's second measurement: short runs of the real Engine with its worker-thread runner —
// continuous batching, static batches, one request at a time, requests on an idle engine, requests
// trickling in while others run. One engine per kind stays open across runs (a fresh engine runs
// slower for its first second or two). The step trace gives, per step, the runner's forward time and
// the step's period (start to next start); the shapes come from the SchedulerOutputs themselves.
import { performance } from 'node:perf_hooks';
import { Engine } from '../../engine/engine.js';
import { resolveEngineOptions } from '../../engine/engine-options.js';
import type { StepRecord } from '../../engine/step-trace.js';
import { DEFAULT_SAMPLING, type ModelRunner, type SchedulerOutput } from '../../engine/types.js';
import { WorkerModelRunner } from '../../engine/worker-runner.js';
import type { ModelConfig } from '../../model/config.js';
import type { KernelBackend } from '../../model/kernels/index.js';
import { DEFAULT_KV_CACHE_DTYPE, kvElementBytes } from '../../model/kernels/kv-dtype.js';
import type { Tokenizer } from '../../model/tokenizer-types.js';
import { buildWorkload } from '../../runs/workload.js';
import { ENGINE_DEFAULT_KV_BYTES, type EngineRunKind, type EngineStepSample } from '../../sim/calibration-fit.js';
import { COLD_AFTER_IDLE_MS, stepFeatures, type ModelProfile, type SeqShape } from '../../sim/cost-model.js';
import { stepShape } from '../../sim/step-time.js';
import { kvBytesPerToken } from '../../util/kv-bytes.js';

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
