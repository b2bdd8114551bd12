// Runs one HTTP request's prompts on the engine: adds every engine request up front (so a full queue
// is refused before any response is sent), feeds outputs to the route as they arrive, and aborts
// everything the moment the client goes away so the KV blocks come back on the next step.
import type { LLM } from '../llm.js';
import type { RequestStream } from '../engine/engine.js';
import { EngineClosedError, InvalidRequestError, PromptTooLongError, QueueFullError } from '../engine/request-errors.js';
import type { RequestOutput } from '../engine/types.js';
import { ApiError, invalidParam } from './errors.js';
import type { GenerationPlan } from './request-params.js';
import type { RequestTracker, ServerMetrics } from './metrics.js';
import type { LiveRequests } from './live-requests.js';

/** What a generation needs of the server (the routes' ServeContext has it). */
export interface GenerationContext {
  llm: LLM;
  metrics: ServerMetrics;
  live: LiveRequests;
}

/** Seconds a client is told to wait after a 429 (the queue drains at step speed, so retry soon). */
export const RETRY_AFTER_SECONDS = 1;

/** Maps an engine error raised while adding a request onto the HTTP error a client should see. */
export function apiErrorFromEngine(e: unknown, promptParam: string): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof QueueFullError) {
    return new ApiError(429, `the server is overloaded: ${e.message}`, 'rate_limit_error', null, 'queue_full', {
      'retry-after': String(RETRY_AFTER_SECONDS),
    });
  }
  if (e instanceof PromptTooLongError || e instanceof InvalidRequestError || e instanceof RangeError) return invalidParam(promptParam, e.message);
  const param = (e as { param?: unknown }).param;
  if (typeof param === 'string') return invalidParam(param, (e as Error).message);
  if (e instanceof EngineClosedError) {
    return new ApiError(503, 'the server is shutting down', 'server_error', null, 'shutting_down');
  }
  return new ApiError(500, `internal error: ${(e as Error)?.message ?? String(e)}`, 'server_error');
}

export interface OutputEvent {
  /** Index of the prompt this output belongs to (completions may send several). */
  promptIndex: number;
  out: RequestOutput;
}

export class Generation {
  private aborted = false;

  private constructor(
    private readonly llm: LLM,
    private readonly live: LiveRequests,
    private readonly n: number,
    readonly streams: RequestStream[],
    private readonly trackers: RequestTracker[],
  ) {}

  /** Adds one engine request per prompt; if any is refused, the ones already added are aborted. */
  static start(ctx: GenerationContext, plan: GenerationPlan, idBase: string, promptParam: string): Generation {
    const { llm, metrics, live } = ctx;
    const streams: RequestStream[] = [];
    const trackers: RequestTracker[] = [];
    try {
      plan.prompts.forEach((ids, i) => {
        trackers.push(metrics.track());
        streams.push(
          llm.stream(ids, {
            ...plan.sampling,
            priority: plan.priority,
            requestId: plan.prompts.length === 1 ? idBase : `${idBase}-${i}`,
          }),
        );
      });
    } catch (e) {
      for (const s of streams) safeAbort(llm, s.requestId);
      throw apiErrorFromEngine(e, promptParam);
    }
    for (const s of streams) live.arrived(s.requestId, plan.sampling.n);
    return new Generation(llm, live, plan.sampling.n, streams, trackers);
  }

  /** Stops every engine request of this HTTP request (client gone, or server draining). */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    for (const s of this.streams) safeAbort(this.llm, s.requestId);
  }

  /**
   * Feeds every output of every prompt to `onOutput`, awaiting it (so a slow client slows only its
   * own consumption). Resolves when all streams ended; a stream failure aborts the siblings at once
   * (so no work runs for a response that cannot complete) and rejects once they have wound down.
   */
  async run(onOutput: (e: OutputEvent) => Promise<void> | void): Promise<void> {
    const tasks = this.streams.map(async (stream, promptIndex) => {
      const tracker = this.trackers[promptIndex];
      try {
        for await (const out of stream) {
          const t = stream.timing;
          tracker.onOutput(out, t.firstScheduledMs !== undefined ? t.firstScheduledMs - t.arrivalMs : undefined);
          if (out.finished) this.live.finished(stream.requestId, out.index, this.n, out.finishReason ?? 'stop');
          await onOutput({ promptIndex, out });
        }
      } catch (e) {
        this.abort();
        throw e;
      } finally {
        tracker.onDone();
      }
    });
    const results = await Promise.allSettled(tasks);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}

function safeAbort(llm: LLM, requestId: string): void {
  try {
    llm.engine.abort(requestId);
  } catch {
    // Already finished and forgotten by the engine: nothing left to free.
  }
}
