// Which step each recent request arrived and finished in, for the live view. The engine's step trace
// says who ran in a step; only the server sees a request arrive (and so wait) and end, so it notes
// the step number at those moments. A bounded ring: the view only ever shows recent requests.
import type { StepTrace } from '../engine/step-trace.js';

export interface LiveRequest {
  /** Row id, as the step trace names the sequence: requestId, or requestId#index when n > 1. */
  id: string;
  /** Step number current when the request arrived (it waits until its first scheduled step). */
  arrivedStep: number;
  finishedStep?: number;
  finishReason?: string;
}

const CAPACITY = 512;

export class LiveRequests {
  private readonly byId = new Map<string, LiveRequest>();
  /** Completions per request id (n), to name rows the same way the step trace's seqs are named. */
  private readonly nOf = new Map<string, number>();
  constructor(private readonly trace: StepTrace) {}

  /** The number the engine's next step will carry. */
  private currentStep(): number {
    const last = this.trace.last();
    return last ? last.step + 1 : 0;
  }

  arrived(requestId: string, n: number): void {
    const step = this.currentStep();
    this.nOf.set(requestId, n);
    for (let i = 0; i < n; i++) {
      const id = n > 1 ? `${requestId}#${i}` : requestId;
      this.byId.set(id, { id, arrivedStep: step });
    }
    while (this.byId.size > CAPACITY) this.byId.delete(this.byId.keys().next().value!);
    while (this.nOf.size > CAPACITY) this.nOf.delete(this.nOf.keys().next().value!);
  }

  seqCount(requestId: string): number {
    return this.nOf.get(requestId) ?? 1;
  }

  finished(requestId: string, index: number, n: number, reason: string): void {
    const r = this.byId.get(n > 1 ? `${requestId}#${index}` : requestId);
    if (!r || r.finishedStep !== undefined) return;
    // Outputs of step s arrive after step s was recorded, so the last recorded step is where it ended.
    r.finishedStep = Math.max(r.arrivedStep, this.currentStep() - 1);
    r.finishReason = reason;
  }

  /** Requests, oldest first. */
  list(): LiveRequest[] {
    return [...this.byId.values()];
  }
}
