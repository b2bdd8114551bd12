// Everything one `stepwise bench` run measured, in one structure: the report, the terminal table and
// results.json are all views of it.
import type { BatchingPolicy, StepRecord } from '../engine/step-trace.js';
import type { RunMetrics, Distribution, RequestRecord } from './metrics.js';
import type { ComputeUtilization, SlotUtilization } from './utilization.js';
import type { Timeline } from './timeline.js';
import type { WorkloadSummary } from './workload.js';

/** One measured configuration: a Stepwise policy, a remote server, or the llama.cpp peer. */
export interface RunResult {
  /** 'none' | 'static' | 'continuous' for Stepwise runs; 'online' or 'llama.cpp' otherwise. */
  policy: BatchingPolicy | 'online' | 'llama.cpp';
  /** How the run is named in tables ("static (batch 32)", "llama.cpp (16 seqs)"). */
  label: string;
  metrics: RunMetrics;
  /** From the engine's step trace; null where there is none (remote servers, llama.cpp). */
  slot: SlotUtilization | null;
  compute: ComputeUtilization | null;
  numSteps: number | null;
  numPreemptions: number | null;
  /** Decode tokens per second of engine time over steps that did no prefill (null without a trace). */
  decodeThroughput: number | null;
  /** schedule() + update() per step (median ms) and their share of all step time; null without a trace. */
  schedulerOverhead?: { medianMs: number; share: number } | null;
  /** Structured outputs: grammar masks per step (median ms over steps that computed any) and their share of all step time. */
  grammarOverhead?: { medianMs: number; share: number } | null;
  /** Speculative decoding: share of proposed tokens accepted and mean tokens per verification (1 + accepted per draft). */
  speculation?: { acceptanceRate: number; meanAcceptedLength: number; draftTokens: number } | null;
  records: RequestRecord[];
  /** Only for Stepwise runs. */
  steps?: StepRecord[];
  timeline?: Timeline;
}

export interface BenchResults {
  mode: 'offline' | 'online';
  startedAt: string;
  model: {
    name: string;
    /** Weights of the matmuls (blocks + output projection). */
    params?: number;
    backend?: string;
    threads?: number;
    contextLength?: number;
  };
  workload: WorkloadSummary;
  /** Engine settings of the Stepwise runs (max_num_seqs, static batch size, ...). */
  engine?: Record<string, unknown>;
  peakFlops?: number;
  runs: RunResult[];
  peer?: RunResult & { version: string };
  /** Wall time of the whole benchmark, model loads included. */
  wallS: number;
  /** The machine, and how busy it was (1-minute load average) before and after: timings on a shared box are noisy. */
  machine?: { cores: number; loadAvgStart: number; loadAvgEnd: number };
}

/** The seed's reference table (GPU figures): what we set out to reproduce, in ratios. */
export const SEED_REFERENCE: Record<BatchingPolicy, { label: string; throughput: [number, number]; utilization: string }> = {
  none: { label: 'no batching', throughput: [30, 50], utilization: '<10%' },
  static: { label: 'static (batch 32)', throughput: [500, 800], utilization: '40–60%' },
  continuous: { label: 'continuous', throughput: [1500, 3000], utilization: '80–95%' },
};

/** "Continuous batching typically provides 2–4x throughput improvement over static batching." */
export const SEED_RATIOS = {
  continuousOverStatic: { claim: '2–4x', fromTable: [1500 / 800, 3000 / 500] as [number, number] },
  continuousOverNone: { fromTable: [1500 / 50, 3000 / 30] as [number, number] },
};

export interface Ratios {
  continuousOverStatic?: number;
  continuousOverNone?: number;
  /** Best Stepwise policy (continuous when run) over the llama.cpp peer, output throughput. */
  stepwiseOverLlamaCpp?: number;
}

export function findRun(r: BenchResults, policy: RunResult['policy']): RunResult | undefined {
  return r.runs.find((x) => x.policy === policy);
}

export function ratios(r: BenchResults): Ratios {
  const tp = (p: RunResult['policy']) => findRun(r, p)?.metrics.outputThroughput;
  const div = (a?: number, b?: number) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
  const out: Ratios = {};
  const cs = div(tp('continuous'), tp('static'));
  const cn = div(tp('continuous'), tp('none'));
  if (cs !== undefined) out.continuousOverStatic = cs;
  if (cn !== undefined) out.continuousOverNone = cn;
  if (r.peer) {
    const mine = findRun(r, 'continuous') ?? r.runs[0];
    const sp = div(mine?.metrics.outputThroughput, r.peer.metrics.outputThroughput);
    if (sp !== undefined) out.stepwiseOverLlamaCpp = sp;
  }
  return out;
}

function dist(d: Distribution) {
  return { mean: d.mean, p50: d.p50, p90: d.p90, p99: d.p99 };
}

function runJson(x: RunResult) {
  const m = x.metrics;
  return {
    policy: x.policy,
    label: x.label,
    completed: m.completed,
    failed: m.failed,
    duration_s: m.durationS,
    total_input_tokens: m.totalInputTokens,
    total_output_tokens: m.totalOutputTokens,
    request_throughput: m.requestThroughput,
    output_throughput: m.outputThroughput,
    total_token_throughput: m.totalTokenThroughput,
    slot_utilization: x.slot?.saturated ?? null,
    slot_utilization_overall: x.slot?.overall ?? null,
    slot_capacity: x.slot?.capacity ?? null,
    saturated_steps: x.slot?.saturatedSteps ?? null,
    compute_utilization: x.compute?.utilization ?? null,
    achieved_gflops: x.compute ? x.compute.achievedFlops / 1e9 : null,
    decode_throughput: x.decodeThroughput,
    scheduler_ms_p50: x.schedulerOverhead?.medianMs ?? null,
    scheduler_share: x.schedulerOverhead?.share ?? null,
    grammar_ms_p50: x.grammarOverhead?.medianMs ?? null,
    grammar_share: x.grammarOverhead?.share ?? null,
    spec_acceptance_rate: x.speculation?.acceptanceRate ?? null,
    spec_mean_accepted_length: x.speculation?.meanAcceptedLength ?? null,
    num_steps: x.numSteps,
    num_preemptions: x.numPreemptions,
    ttft_ms: dist(m.ttftMs),
    tpot_ms: dist(m.tpotMs),
    itl_ms: dist(m.itlMs),
    e2e_ms: dist(m.e2eMs),
  };
}

/** results.json: every figure, snake_case like vLLM's result files. */
export function resultsJson(r: BenchResults): Record<string, unknown> {
  const rt = ratios(r);
  return {
    tool: 'stepwise bench',
    started_at: r.startedAt,
    mode: r.mode,
    wall_s: r.wallS,
    machine: r.machine ? { cores: r.machine.cores, load_avg_start: r.machine.loadAvgStart, load_avg_end: r.machine.loadAvgEnd } : null,
    model: r.model,
    workload: r.workload,
    engine: r.engine ?? null,
    peak_gflops: r.peakFlops !== undefined ? r.peakFlops / 1e9 : null,
    policies: r.runs.map(runJson),
    peer: r.peer ? { ...runJson(r.peer), version: r.peer.version } : null,
    ratios: {
      continuous_over_static: rt.continuousOverStatic ?? null,
      continuous_over_none: rt.continuousOverNone ?? null,
      stepwise_over_llama_cpp: rt.stepwiseOverLlamaCpp ?? null,
    },
    seed_reference: {
      note: 'GPU figures from the seed; Stepwise measures on this CPU, so compare ratios and utilisation, not absolute throughput',
      table: SEED_REFERENCE,
      continuous_over_static: SEED_RATIOS.continuousOverStatic,
      continuous_over_none: SEED_RATIOS.continuousOverNone,
    },
  };
}

/** How a run of a policy is labelled in tables, charts and the report. */
export function policyLabel(policy: BatchingPolicy, staticBatch: number): string {
  if (policy === 'none') return 'no batching';
  if (policy === 'static') return `static (batch ${staticBatch})`;
  return 'continuous';
}
