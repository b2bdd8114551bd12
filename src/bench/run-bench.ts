// One benchmark run end to end: build the workload once, run it under each batching policy (a fresh
// engine per policy, same model, same workload), optionally through the llama.cpp peer or a remote
// server, and gather every figure into BenchResults.
import { availableParallelism, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { LLM, type LoadOptions } from '../llm.js';
import { DEFAULT_ENGINE_OPTIONS } from '../engine/engine-options.js';
import type { BatchingPolicy, StepRecord } from '../engine/step-trace.js';
import type { ModelConfig } from '../model/config.js';
import type { Tokenizer } from '../model/tokenizer-types.js';
import { readModelHeader, type ModelHeader } from '../model/loaders/header.js';
import { getKernels } from '../model/kernels/index.js';
import { tokenizerFromGguf, tokenizerFromLlama2cFile } from '../model/tokenizer.js';
import { computeMetrics, type RequestRecord } from '../runs/metrics.js';
import { buildWorkload, workloadSummary, type Workload, type WorkloadSpec, type WorkloadTarget } from '../runs/workload.js';
import { runOffline, warmUp } from './offline.js';
import { runOnline } from './online.js';
import { runLlamaCpp } from './peers/llama-cpp.js';
import { measurePeakFlops } from './peak.js';
import { computeUtilization, decodeThroughput, matmulParams, slotCapacity, slotUtilization } from '../runs/utilization.js';
import { buildTimeline } from '../runs/timeline.js';
import { policyLabel, type BenchResults, type RunResult } from '../runs/results.js';
import type { Progress } from './progress.js';
import type { StructuredOutputsParams } from '../engine/structured/constraint.js';
import { WorkloadError } from '../runs/errors.js';
import { basename } from 'node:path';

export interface BenchOptions {
  /** Model file: run in process (offline), and/or give the workload its vocabulary and the peer its GGUF. */
  model?: string;
  /** OpenAI-compatible server to measure (online mode). */
  url?: string;
  servedModelName?: string;
  apiKey?: string;
  useText?: boolean;
  /** Vocabulary size for synthetic prompts when no --model is given (online mode). */
  vocabSize?: number;
  workload: WorkloadSpec;
  /** Stepwise policies to run, in order (offline mode). */
  policies: BatchingPolicy[];
  peer?: 'llama.cpp';
  /** Threads for the peer (default: the Stepwise runs' thread count). */
  peerThreads?: number;
  load: LoadOptions;
  progress: Progress;
  /** Called with each finished run (to print its timeline, say). */
  onRun?: (run: RunResult) => void;
  /** Offline runs: every request under this output constraint (structured outputs). */
  structuredOutputs?: StructuredOutputsParams;
}

export async function runBenchmark(o: BenchOptions): Promise<BenchResults> {
  const wall0 = performance.now();
  const startedAt = new Date().toISOString();
  const cores = availableParallelism();
  const loadAvgStart = loadavg()[0];
  if (loadAvgStart > cores) {
    o.progress.note(
      `note: the machine is busy (load average ${loadAvgStart.toFixed(1)} on ${cores} cores): timings will be noisy` +
        (o.peer ? `, and llama.cpp's spin-waiting threads suffer most from it (--peer-threads 1 avoids that)` : ''),
    );
  }
  const header = o.model ? await readModelHeader(o.model) : undefined;
  const tokenizer = header ? modelTokenizer(header, o.load.tokenizer) : null;
  const workload = buildWorkload(o.workload, workloadTarget(header, tokenizer, o));
  if (workload.clipped > 0) o.progress.note(`note: ${workload.clipped} of ${workload.requests.length} requests clipped to fit the ${workloadTarget(header, tokenizer, o).maxModelLen}-token context`);
  const results: BenchResults = {
    mode: o.url ? 'online' : 'offline',
    startedAt,
    model: { name: o.model ? basename(o.model) : (o.servedModelName ?? o.url ?? '?') },
    workload: workloadSummary(workload),
    runs: [],
    wallS: 0,
  };
  if (header) {
    results.model.params = matmulParams(header.config);
    results.model.contextLength = header.config.contextLength;
  }

  if (o.url) {
    const label = 'server';
    o.progress.stage(label, workload.requests.length);
    const run = await runOnline(workload, { url: o.url, model: o.servedModelName, apiKey: o.apiKey, useText: o.useText, onRequestDone: () => o.progress.tick() });
    results.model.name = run.model;
    const r = remoteResult('online', `server ${run.model}`, run.records, run.durationMs);
    o.progress.done(summaryLine(r));
    results.runs.push(r);
    o.onRun?.(r);
  }

  let threads = o.load.threads ?? availableParallelism();
  let maxNumSeqs = o.load.maxNumSeqs ?? DEFAULT_ENGINE_OPTIONS.maxNumSeqs;
  if (!o.url) {
    for (const policy of o.policies) {
      const llm = await LLM.load(o.model!, { ...o.load, policy });
      try {
        const opts = llm.options;
        threads = opts.threads;
        maxNumSeqs = opts.maxNumSeqs;
        if (results.peakFlops === undefined) {
          results.model.backend = llm.backend;
          results.model.threads = opts.threads;
          results.engine = {
            max_num_seqs: opts.maxNumSeqs,
            max_num_batched_tokens: opts.maxNumBatchedTokens,
            static_batch_size: Math.min(opts.staticBatchSize, opts.maxNumSeqs),
            num_blocks: opts.numBlocks,
            block_size: opts.blockSize,
            prefix_caching: opts.enablePrefixCaching,
            max_model_len: opts.maxModelLen,
          };
          if (opts.maxNumSeqs >= workload.requests.length && o.policies.includes('continuous')) {
            o.progress.note(
              `note: max-num-seqs ${opts.maxNumSeqs} >= ${workload.requests.length} requests: nobody waits for a slot, so there is no saturated phase ` +
                `and continuous batching has nothing to refill; give fewer slots than requests (e.g. --max-num-seqs ${Math.max(1, Math.floor(workload.requests.length / 4))}) to see what it buys`,
            );
          }
          o.progress.note(`measuring the kernels' peak (${llm.backend})...`);
          results.peakFlops = measurePeakFlops(await getKernels(opts.backend, { threads: opts.threads })).flops;
        }
        const longest = workload.requests.reduce((n, r) => Math.max(n, r.promptTokenIds.length), 0);
        const warmLen = Math.min(longest, opts.maxNumBatchedTokens, opts.maxModelLen - 4);
        await warmUp(llm, header!.config.vocabSize, tokenizer?.bosId ?? (header!.format === 'llama2c' ? 1 : undefined), warmLen);
        const label = policyLabel(policy, Math.min(opts.staticBatchSize, opts.maxNumSeqs));
        o.progress.stage(label, workload.requests.length);
        const run = await runOffline(llm, workload, { structuredOutputs: o.structuredOutputs, onRequestDone: () => o.progress.tick() });
        const r = stepwiseResult(policy, label, run, header!.config, slotCapacity(policy, opts.maxNumSeqs, opts.staticBatchSize), results.peakFlops);
        o.progress.done(summaryLine(r));
        results.runs.push(r);
        o.onRun?.(r);
      } finally {
        await llm.close();
      }
    }
  }

  if (o.peer === 'llama.cpp') {
    if (!o.model || header?.format !== 'gguf') throw new WorkloadError('--peer llama.cpp needs --model with a GGUF file (llama.cpp cannot read llama2.c checkpoints)');
    o.progress.stage('llama.cpp', workload.requests.length);
    const run = await runLlamaCpp(workload, { modelPath: o.model, threads: o.peerThreads ?? threads, concurrency: maxNumSeqs, onRequestDone: () => o.progress.tick() });
    const r = { ...remoteResult('llama.cpp', `llama.cpp (${run.concurrency} seqs)`, run.records, run.durationMs), version: run.version };
    o.progress.done(summaryLine(r));
    results.peer = r;
    o.onRun?.(r);
  }
  results.wallS = (performance.now() - wall0) / 1000;
  results.machine = { cores, loadAvgStart, loadAvgEnd: loadavg()[0] };
  return results;
}

function modelTokenizer(h: ModelHeader, tokenizerFile: string | undefined): Tokenizer | null {
  if (tokenizerFile) return tokenizerFromLlama2cFile(tokenizerFile);
  return h.format === 'gguf' ? tokenizerFromGguf(h.metadata) : null;
}

function workloadTarget(h: ModelHeader | undefined, tokenizer: Tokenizer | null, o: BenchOptions): WorkloadTarget {
  if (!h) {
    if (o.workload.kind === 'sharegpt') throw new WorkloadError('the sharegpt workload needs --model (its tokenizer measures the conversations)');
    if (o.vocabSize === undefined) throw new WorkloadError('synthetic prompts are token ids: give --model (a local copy of the served model) or --vocab-size N');
    return { vocabSize: o.vocabSize, maxModelLen: o.load.maxModelLen, tokenizer: null };
  }
  const ctx = h.config.contextLength;
  return {
    vocabSize: h.config.vocabSize,
    bosId: tokenizer?.bosId ?? (h.format === 'llama2c' ? 1 : undefined),
    maxModelLen: Math.min(o.load.maxModelLen ?? ctx, ctx),
    tokenizer,
  };
}

/** Speculative decoding: share of proposed tokens accepted, and tokens per verification (accepted + the runner's own), as vLLM reports them. */
export function speculationSummary(steps: readonly StepRecord[]): { acceptanceRate: number; meanAcceptedLength: number; draftTokens: number } | null {
  let drafts = 0;
  let tokens = 0;
  let accepted = 0;
  for (const s of steps) {
    drafts += s.numDrafts ?? 0;
    tokens += s.numDraftTokens ?? 0;
    accepted += s.numAcceptedTokens ?? 0;
  }
  if (drafts === 0) return null;
  return { acceptanceRate: accepted / tokens, meanAcceptedLength: 1 + accepted / drafts, draftTokens: tokens };
}

/** Structured outputs: the grammar masks' time per step (median over steps that computed any) and share of all step time. */
export function grammarOverhead(steps: readonly StepRecord[]): { medianMs: number; share: number } | null {
  const per = steps.filter((s) => s.grammarMs !== undefined).map((s) => s.grammarMs!).sort((a, b) => a - b);
  if (per.length === 0) return null;
  const total = steps.reduce((sum, s) => sum + s.totalMs, 0);
  return { medianMs: per[Math.floor(per.length / 2)]!, share: total > 0 ? per.reduce((a, b) => a + b, 0) / total : 0 };
}

/** The scheduler's own cost: schedule() + update() per step, against the whole step (issue target: < 5%). */
export function schedulerOverhead(steps: readonly StepRecord[]): { medianMs: number; share: number } | null {
  if (steps.length === 0) return null;
  const per = steps.map((s) => s.scheduleMs + s.updateMs).sort((a, b) => a - b);
  const total = steps.reduce((sum, s) => sum + s.totalMs, 0);
  const sched = per.reduce((a, b) => a + b, 0);
  return { medianMs: per[Math.floor(per.length / 2)], share: total > 0 ? sched / total : 0 };
}

function stepwiseResult(
  policy: BatchingPolicy,
  label: string,
  run: Awaited<ReturnType<typeof runOffline>>,
  config: ModelConfig,
  capacity: number,
  peakFlops: number | undefined,
): RunResult {
  const metrics = computeMetrics(run.records, run.durationMs);
  return {
    policy,
    label,
    metrics,
    slot: slotUtilization(run.steps, capacity),
    compute: peakFlops ? computeUtilization(run.steps, config, metrics.durationS, peakFlops) : null,
    numSteps: run.steps.length,
    numPreemptions: run.numPreemptions,
    decodeThroughput: decodeThroughput(run.steps),
    schedulerOverhead: schedulerOverhead(run.steps),
    grammarOverhead: grammarOverhead(run.steps),
    speculation: speculationSummary(run.steps),
    records: run.records,
    steps: run.steps,
    timeline: buildTimeline(run.steps, run.timelineRequests),
  };
}

function remoteResult(policy: 'online' | 'llama.cpp', label: string, records: RequestRecord[], durationMs: number): RunResult {
  return { policy, label, metrics: computeMetrics(records, durationMs), slot: null, compute: null, numSteps: null, numPreemptions: null, decodeThroughput: null, schedulerOverhead: null, records };
}

function summaryLine(r: RunResult): string {
  const m = r.metrics;
  const util = r.slot ? `, slot util ${r.slot.saturated === null ? '–' : (r.slot.saturated * 100).toFixed(0) + '%'} saturated / ${(r.slot.overall * 100).toFixed(0)}% overall` : '';
  const failed = m.failed ? `, ${m.failed} FAILED` : '';
  return `${r.label}: ${m.completed} requests in ${m.durationS.toFixed(2)} s, ${m.outputThroughput.toFixed(1)} output tok/s${util}${failed}`;
}

export type { Workload };
