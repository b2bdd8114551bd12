// The outputs of one request as its caller sees them: an async iterable the engine pushes into as
// steps produce them, which ends when every completion has finished and throws if the request failed.

import type { RequestTiming } from './sequence.js';
import type { RequestOutput } from './types.js';

/**
 * The outputs of one request, as an async iterable. A request with n > 1 yields the outputs of all
 * its completions, told apart by `index`; the stream ends when every completion has finished. It
 * throws if the step computing the request failed. Leaving a for-await loop early aborts the request.
 */
export class RequestStream implements AsyncIterable<RequestOutput> {
  private readonly queue: RequestOutput[] = [];
  private waiter: { resolve: () => void } | undefined;
  private done = false;
  private error: unknown;
  private iterating = false;

  constructor(
    readonly requestId: string,
    private liveTiming: RequestTiming,
    private readonly onCancel: () => void,
  ) {}

  /** Live per-request timestamps (arrival, first scheduled, first token, every token, finish). */
  get timing(): RequestTiming {
    return this.liveTiming;
  }

  /** @internal The scheduler's timing, once a request held for its grammar has reached the scheduler. */
  bindTiming(t: RequestTiming): void {
    this.liveTiming = t;
  }

  /** Whether the request has ended (finished, aborted or failed). */
  get finished(): boolean {
    return this.done;
  }

  /** @internal */
  push(out: RequestOutput): void {
    if (this.done) return;
    this.queue.push(out);
    this.wake();
  }

  /** @internal */
  end(): void {
    this.done = true;
    this.wake();
  }

  /** @internal */
  fail(err: unknown): void {
    if (this.done) return;
    this.error = err;
    this.done = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.resolve();
  }

  [Symbol.asyncIterator](): AsyncIterator<RequestOutput> {
    if (this.iterating) throw new Error(`request ${this.requestId}: its output stream can be iterated only once`);
    this.iterating = true;
    return {
      next: async (): Promise<IteratorResult<RequestOutput>> => {
        for (;;) {
          if (this.queue.length > 0) return { value: this.queue.shift()!, done: false };
          if (this.done) {
            if (this.error !== undefined) {
              const e = this.error;
              this.error = undefined;
              throw e;
            }
            return { value: undefined, done: true };
          }
          await new Promise<void>((resolve) => (this.waiter = { resolve }));
        }
      },
      return: async (): Promise<IteratorResult<RequestOutput>> => {
        // The consumer stopped listening (e.g. a client disconnected): stop computing for it.
        if (!this.done) this.onCancel();
        this.queue.length = 0;
        return { value: undefined, done: true };
      },
    };
  }
}
