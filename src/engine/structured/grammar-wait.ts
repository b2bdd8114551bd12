// Requests whose output constraint is still compiling: they wait here, outside the scheduler, with
// their output stream already handed out, and reach the scheduler once their grammar is ready (vLLM
// keeps such requests in WAITING_FOR_FSM). A grammar that does not compile, or an error met on the
// way in (a full queue), ends the request's stream instead; an abort meanwhile simply drops it.

import { InvalidRequestError } from '../request-errors.js';
import { RequestStream } from '../request-stream.js';
import type { RequestTiming } from '../sequence.js';
import { resolveConstraint, type StructuredOutputsParams } from './constraint.js';

export interface GrammarWaitHooks<R> {
  /** Whether a request id is taken (by a stream or the scheduler). */
  inUse(requestId: string): boolean;
  compile(so: StructuredOutputsParams): Promise<void>;
  /** Hands the request to the scheduler, as addRequest would; returns its live timing. */
  admit(r: R & { requestId: string }, arrivalMs: number): RequestTiming;
  /** The stream is done with (failed): the engine forgets it. */
  forget(requestId: string): void;
  abort(requestId: string): void;
}

export class GrammarWait<R extends { requestId?: string }> {
  private readonly held = new Set<string>();
  private count = 0;

  constructor(private readonly hooks: GrammarWaitHooks<R>) {}

  /** Holds `r` until its constraint compiles; returns its stream at once. Throws for a malformed constraint or a taken id. */
  hold(r: R, so: StructuredOutputsParams, arrivalMs: number): RequestStream {
    resolveConstraint(so);
    const requestId = r.requestId ?? `grammar-${++this.count}`;
    if (this.hooks.inUse(requestId)) throw new InvalidRequestError(`request id '${requestId}' is already in use`);
    const timing: RequestTiming = { arrivalMs, tokenTimesMs: [] };
    const stream = new RequestStream(requestId, timing, () => this.hooks.abort(requestId));
    this.held.add(requestId);
    const fail = (e: unknown) => {
      this.hooks.forget(requestId);
      stream.fail(e);
    };
    this.hooks.compile(so).then(
      () => {
        if (!this.held.delete(requestId)) return; // aborted meanwhile
        try {
          stream.bindTiming(this.hooks.admit({ ...r, requestId }, arrivalMs));
        } catch (e) {
          fail(e);
        }
      },
      (e: unknown) => this.held.delete(requestId) && fail(e),
    );
    return stream;
  }

  /** Drops a held request (abort): true when it was held. */
  release(requestId: string): boolean {
    return this.held.delete(requestId);
  }

  ids(): string[] {
    return [...this.held];
  }
}
