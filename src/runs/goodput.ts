// Goodput at a service-level objective, as vLLM's serving benchmark defines it (--goodput): the
// completed requests per second that met every latency bound given. Throughput says how much a
// deployment serves; goodput says how much of it was served well enough to count, which is what
// sizing a fleet is about.
import { requestLatencies, type RequestRecord } from './metrics.js';

/** Latency bounds a request must meet (an unset bound is not checked). */
export interface Slo {
  ttftMs?: number;
  tpotMs?: number;
}

export interface Goodput {
  /** Completed requests that met every bound. */
  good: number;
  /** good / the run's duration. */
  requestsPerS: number;
  /** good / completed requests (0 when none completed). */
  fraction: number;
}

/**
 * Whether a completed request met the SLO. A request with one output token has no TPOT and meets
 * any TPOT bound, as in vLLM (its TPOT counts as 0); a failed request meets nothing.
 */
export function meetsSlo(r: RequestRecord, slo: Slo): boolean {
  if (!r.success) return false;
  const l = requestLatencies(r);
  if (slo.ttftMs !== undefined && !(l.ttftMs !== undefined && l.ttftMs <= slo.ttftMs)) return false;
  if (slo.tpotMs !== undefined && (l.tpotMs ?? 0) > slo.tpotMs) return false;
  return true;
}

export function computeGoodput(records: readonly RequestRecord[], slo: Slo, durationMs: number): Goodput {
  let good = 0;
  let completed = 0;
  for (const r of records) {
    if (!r.success) continue;
    completed++;
    if (meetsSlo(r, slo)) good++;
  }
  return { good, requestsPerS: durationMs > 0 ? good / (durationMs / 1000) : 0, fraction: completed > 0 ? good / completed : 0 };
}

/** Whether the SLO sets any bound (goodput means nothing without one). */
export function hasSlo(slo: Slo): boolean {
  return slo.ttftMs !== undefined || slo.tpotMs !== undefined;
}

/** "TTFT <= 500 ms, TPOT <= 50 ms" (or "no SLO"). */
export function describeSlo(slo: Slo): string {
  const parts: string[] = [];
  if (slo.ttftMs !== undefined) parts.push(`TTFT <= ${slo.ttftMs} ms`);
  if (slo.tpotMs !== undefined) parts.push(`TPOT <= ${slo.tpotMs} ms`);
  return parts.length > 0 ? parts.join(', ') : 'no SLO';
}
