// A whole `stepwise simulate` run: build the workload exactly as `stepwise bench` would, simulate it
// under each batching policy, and gather the results in the benchmark's own structure (BenchResults),
// so its metrics, tables, charts and report apply to simulated runs unchanged.
import { performance } from 'node:perf_hooks';
import type { SimLoadOptions } from './engine-options.js';
import type { BatchingPolicy, StepRecord } from '../engine/step-trace.js';
import { computeMetrics } from '../runs/metrics.js';
import { buildWorkload, workloadSummary, type Workload, type WorkloadSpec } from '../runs/workload.js';
import { computeUtilization, isSaturatedStep, slotCapacity, usefulSeqs, type ModelShape, type SlotUtilization } from '../runs/utilization.js';
import { buildTimeline } from '../runs/timeline.js';
import { policyLabel, type BenchResults, type RunResult } from '../runs/results.js';
import { blockParams, headDim, kvCapacityTokens, outputParams, type HardwareProfile, type ModelProfile } from './cost-model.js';
import { CostModelTimer } from './step-time.js';
import { simulate, type SimSchedulerOptions } from './simulator.js';
import { resolveSimOptions } from './engine-options.js';

export interface SimRunOptions {
  hardwareName: string;
  hardware: HardwareProfile;
  modelName: string;
  model: ModelProfile;
  workload: WorkloadSpec;
  policies: BatchingPolicy[];
  load: SimLoadOptions;
  /** Called with each finished run. */
  onRun?: (run: SimRunResult) => void;
  /** Keep step records (default true; the timeline and utilisation need them). */
  keepSteps?: boolean;
}

/** A simulated run: the benchmark's RunResult plus what only a simulation knows. */
export interface SimRunResult extends RunResult {
  sim: {
    /** Model FLOPs and memory-bandwidth utilisation against the datasheet peak and bandwidth. */
    mfu: number;
    mbu: number;
    /** Fraction of steps bound by memory traffic rather than arithmetic. */
    memoryBoundSteps: number;
    /** Real time the simulation took. */
    wallMs: number;
    scheduler: SimSchedulerOptions;
    kvCapacityTokens: number;
    /** The run had too many steps to keep their records (no timeline, no trace-based compute figure). */
    stepsDropped: boolean;
  };
}

export interface SimResults extends BenchResults {
  runs: SimRunResult[];
  simulation: {
    hardware: string;
    hardwareProfile: HardwareProfile;
    model: string;
    modelProfile: ModelProfile;
  };
}

/** The model dimensions the benchmark's FLOP counting wants, from a profile. */
export function configFromProfile(m: ModelProfile): ModelShape {
  return { dim: m.dim, hiddenDim: m.hiddenDim, nLayers: m.nLayers, nHeads: m.nHeads, nKvHeads: m.nKvHeads, headDim: headDim(m), vocabSize: m.vocabSize };
}

export function buildSimWorkload(spec: WorkloadSpec, model: ModelProfile, load: SimLoadOptions): Workload {
  return buildWorkload(spec, { vocabSize: model.vocabSize, bosId: 1, maxModelLen: Math.min(load.maxModelLen ?? model.contextLength, model.contextLength) });
}

/**
 * Utilisation figures accumulated step by step with the benchmark's own definitions (usefulSeqs,
 * isSaturatedStep, decode-only steps), so they are available even when a huge run's step records
 * are not kept.
 */
class StepAccumulator {
  private used = 0;
  private satUsed = 0;
  private satSteps = 0;
  private steps = 0;
  private decodeTokens = 0;
  private decodeMs = 0;

  constructor(private readonly capacity: number) {}

  add(r: StepRecord): void {
    const u = Math.min(usefulSeqs(r), this.capacity);
    this.used += u;
    this.steps++;
    if (isSaturatedStep(r)) {
      this.satUsed += u;
      this.satSteps++;
    }
    if (r.numPrefillTokens === 0 && r.numDecodeTokens > 0) {
      this.decodeTokens += r.numDecodeTokens;
      this.decodeMs += r.totalMs;
    }
  }

  slot(): SlotUtilization {
    const c = this.capacity;
    return {
      saturated: this.satSteps > 0 ? this.satUsed / (this.satSteps * c) : null,
      overall: this.steps > 0 ? this.used / (this.steps * c) : 0,
      saturatedSteps: this.satSteps,
      steps: this.steps,
      capacity: c,
    };
  }

  decodeThroughput(): number | null {
    return this.decodeMs > 0 ? this.decodeTokens / (this.decodeMs / 1000) : null;
  }
}

/** Simulates one policy on a built workload. */
export function simulatePolicy(workload: Workload, policy: BatchingPolicy, o: Pick<SimRunOptions, 'hardware' | 'model' | 'load' | 'keepSteps'>): SimRunResult {
  const sched = resolveSimOptions({ ...o.load, policy }, o.hardware, o.model);
  const timer = new CostModelTimer(o.hardware, o.model);
  const acc = new StepAccumulator(slotCapacity(policy, sched.maxNumSeqs, sched.staticBatchSize));
  const t0 = performance.now();
  const run = simulate({ requests: workload.requests, scheduler: sched, stepTimeMs: (out, ctx) => timer.stepTimeMs(out, ctx.idleMs), keepSteps: o.keepSteps ?? true, onStep: (r) => acc.add(r) });
  const wallMs = performance.now() - t0;
  const metrics = computeMetrics(run.records, run.durationMs);
  const util = timer.utilization(run.durationMs);
  const kept = run.steps.length > 0;
  return {
    policy,
    label: policyLabel(policy, Math.min(sched.staticBatchSize, sched.maxNumSeqs)),
    metrics,
    slot: acc.slot(),
    // The benchmark's FLOP count follows each sequence through the trace, so it needs the records.
    compute: kept ? computeUtilization(run.steps, configFromProfile(o.model), metrics.durationS, o.hardware.peakTflops * 1e12) : null,
    numSteps: run.numSteps,
    numPreemptions: run.numPreemptions,
    decodeThroughput: acc.decodeThroughput(),
    records: run.records,
    ...(kept ? { steps: run.steps, timeline: buildTimeline(run.steps, run.timelineRequests) } : {}),
    sim: {
      mfu: util.mfu,
      mbu: util.mbu,
      memoryBoundSteps: timer.totals.steps > 0 ? timer.totals.memBoundSteps / timer.totals.steps : 0,
      wallMs,
      scheduler: sched,
      kvCapacityTokens: kvCapacityTokens(o.hardware, o.model),
      stepsDropped: run.stepsDropped,
    },
  };
}

/** What every simulation's results start with: the model, the workload, the simulated hardware. */
export function simResultsHeader(o: Pick<SimRunOptions, 'hardwareName' | 'hardware' | 'modelName' | 'model'>, workload: Workload): Omit<SimResults, 'runs'> {
  return {
    mode: 'offline',
    startedAt: new Date().toISOString(),
    model: {
      name: `${o.modelName} (simulated)`,
      params: blockParams(o.model) + outputParams(o.model),
      backend: `simulated ${o.hardwareName}`,
      contextLength: o.model.contextLength,
    },
    workload: workloadSummary(workload),
    peakFlops: o.hardware.peakTflops * 1e12,
    wallS: 0,
    simulation: { hardware: o.hardwareName, hardwareProfile: o.hardware, model: o.modelName, modelProfile: o.model },
  };
}

/** The engine settings block of results.json, from the scheduler settings a run used. */
export function engineSummary(s: SimSchedulerOptions): Record<string, unknown> {
  return {
    max_num_seqs: s.maxNumSeqs,
    max_num_batched_tokens: s.maxNumBatchedTokens,
    static_batch_size: Math.min(s.staticBatchSize, s.maxNumSeqs),
    num_blocks: s.numBlocks,
    block_size: s.blockSize,
    prefix_caching: s.enablePrefixCaching,
    max_model_len: s.maxModelLen,
  };
}

export function runSimulation(o: SimRunOptions): SimResults {
  const wall0 = performance.now();
  const workload = buildSimWorkload(o.workload, o.model, o.load);
  const results: SimResults = { ...simResultsHeader(o, workload), runs: [] };
  for (const policy of o.policies) {
    const r = simulatePolicy(workload, policy, o);
    results.engine ??= engineSummary(r.sim.scheduler);
    results.runs.push(r);
    o.onRun?.(r);
  }
  results.wallS = (performance.now() - wall0) / 1000;
  return results;
}
