// Offline mode: the engine in this process (LLM.load), the workload fed through LLM.stream at each
// request's arrival time, every output timed as it reaches the caller, every engine step recorded
// from the trace. Client-side timings here include the hop from the worker thread — the same place
// an HTTP client would stand, minus the network.
import { performance } from 'node:perf_hooks';
import type { LLM } from '../llm.js';
import type { StepRecord } from '../engine/step-trace.js';
import type { RequestRecord } from '../runs/metrics.js';
import type { TimelineRequest } from '../runs/timeline.js';
import type { BenchRequest, Workload } from '../runs/workload.js';
import type { StructuredOutputsParams } from '../engine/structured/constraint.js';

export interface OfflineRun {
  records: RequestRecord[];
  /** Every step the engine took during the run, in order. */
  steps: StepRecord[];
  timelineRequests: TimelineRequest[];
  durationMs: number;
  numPreemptions: number;
}

export interface OfflineRunOptions {
  onRequestDone?: (r: RequestRecord) => void;
  /** Every request under this output constraint (compiled before the clock starts). */
  structuredOutputs?: StructuredOutputsParams;
}

/** Runs a workload to completion on an already loaded model. */
export async function runOffline(llm: LLM, workload: Workload, opts: OfflineRunOptions = {}): Promise<OfflineRun> {
  const steps: StepRecord[] = [];
  // Subscribe rather than read the trace afterwards: its ring buffer holds only the newest steps.
  const unsubscribe = llm.engine.onStep((r) => steps.push(r));
  const timelineRequests: TimelineRequest[] = [];
  let numPreemptions = 0;
  const structured = opts.structuredOutputs ? { structuredOutputs: opts.structuredOutputs } : {};
  if (opts.structuredOutputs) await llm.compileStructuredOutputs(opts.structuredOutputs);
  const t0 = performance.now();
  try {
    const one = async (req: BenchRequest): Promise<RequestRecord> => {
      const addedAtMs = performance.now();
      const rec: RequestRecord = { index: req.index, promptLen: req.promptTokenIds.length, outputLen: 0, sentMs: addedAtMs - t0, chunkMs: [], endMs: 0, success: false };
      try {
        // Greedy, exactly outputLen tokens: lengths come from the workload, not from the model's EOS
        // (under an output constraint, a request also ends where its grammar does).
        const stream = llm.stream(req.promptTokenIds, { maxTokens: req.outputLen, ignoreEos: true, temperature: 0, requestId: `bench-${req.index}`, ...structured });
        rec.requestId = stream.requestId;
        timelineRequests.push({ index: req.index, requestId: stream.requestId, addedAtMs });
        let preempted = 0;
        for await (const out of stream) {
          if (out.newTokenIds.length > 0) {
            rec.chunkMs.push(performance.now() - t0);
            rec.outputLen += out.newTokenIds.length;
          }
          preempted = out.numPreemptions;
          if (out.finished && out.finishReason === 'abort') throw new Error('request was aborted');
        }
        numPreemptions += preempted;
        rec.success = true;
      } catch (err) {
        rec.error = (err as Error).message;
      }
      rec.endMs = performance.now() - t0;
      opts.onRequestDone?.(rec);
      return rec;
    };
    const pending: Promise<RequestRecord>[] = [];
    const timers: NodeJS.Timeout[] = [];
    for (const req of workload.requests) {
      if (req.arrivalMs <= 0) pending.push(one(req));
      else pending.push(new Promise((resolve) => timers.push(setTimeout(() => resolve(one(req)), req.arrivalMs))));
    }
    const records = await Promise.all(pending);
    const durationMs = Math.max(0, ...records.map((r) => r.endMs));
    timelineRequests.sort((a, b) => a.index - b.index);
    return { records: records.sort((a, b) => a.index - b.index), steps, timelineRequests, durationMs, numPreemptions };
  } finally {
    unsubscribe();
  }
}

/**
 * Tokens through the engine before timing starts: worker start-up, JIT and caches, and one prompt
 * of `promptLen` tokens (the workload's longest step) so the forward pass's buffers have grown to
 * size before the clock starts, as vLLM's start-up profile run does; the first timed prompt would
 * otherwise carry its page faults (tens of ms on a 512-token prompt, as much as a thread's share).
 */
export async function warmUp(llm: LLM, vocabSize: number, bosId: number | undefined, promptLen = 4): Promise<void> {
  const prompt = Array.from({ length: Math.max(4, promptLen) }, (_, i) => (i === 0 ? (bosId ?? 1) : 3 + ((i * 7) % 97)) % vocabSize);
  await llm.generate(prompt, { maxTokens: 4, ignoreEos: true, temperature: 0 });
}
