// The request timeline — the seed's diagram, drawn from the real step trace: one row per request,
// one column per engine step, each cell saying whether the request was waiting for a slot, running
// (computing a real token), or finished but held in its static batch as padding.
import type { StepRecord } from '../engine/step-trace.js';

export type TimelineState = 'waiting' | 'running' | 'held';

export interface TimelineSegment {
  /** Request index in the workload (the row). */
  request: number;
  state: TimelineState;
  /** Step indices (0 = first step of the run), end exclusive. */
  startStep: number;
  endStep: number;
}

export interface Timeline {
  numSteps: number;
  numRequests: number;
  segments: TimelineSegment[];
}

export interface TimelineRequest {
  index: number;
  requestId: string;
  /** When the request reached the engine, on the engine's clock (the clock of StepRecord.startMs). */
  addedAtMs: number;
}

export function buildTimeline(records: readonly StepRecord[], requests: readonly TimelineRequest[]): Timeline {
  const byId = new Map<string, TimelineRequest>();
  for (const r of requests) byId.set(r.requestId, r);
  // Per request: the state in each step it took part in.
  const seen = new Map<string, Map<number, TimelineState>>();
  records.forEach((rec, step) => {
    for (const s of rec.seqs) {
      if (!byId.has(s.requestId)) continue;
      let m = seen.get(s.requestId);
      if (!m) seen.set(s.requestId, (m = new Map()));
      const state: TimelineState = s.prefillTokens + s.decodeTokens > 0 ? 'running' : 'held';
      if (m.get(step) !== 'running') m.set(step, state);
    }
  });
  const segments: TimelineSegment[] = [];
  for (const req of requests) {
    const m = seen.get(req.requestId);
    // A request added while step i was being scheduled or run can only take part from a later step.
    const arrival = firstStepAtOrAfter(records, req.addedAtMs);
    const last = m ? Math.max(...m.keys()) : -1;
    const end = m ? last + 1 : records.length; // never scheduled: waited until the end
    let cur: TimelineSegment | undefined;
    for (let step = Math.min(arrival, m ? Math.min(...m.keys()) : arrival); step < end; step++) {
      const state = m?.get(step) ?? 'waiting';
      if (cur && cur.state === state && cur.endStep === step) cur.endStep = step + 1;
      else segments.push((cur = { request: req.index, state, startStep: step, endStep: step + 1 }));
    }
  }
  return { numSteps: records.length, numRequests: requests.length, segments };
}

/**
 * Index of the first step that started at or after `ms` (records.length if none). Steps run one after
 * another, so start times ascend: a binary search (a linear scan per request was quadratic, ~1 s for
 * a simulated run of 10,000 requests).
 */
function firstStepAtOrAfter(records: readonly StepRecord[], ms: number): number {
  let lo = 0;
  let hi = records.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (records[mid].startMs >= ms) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

const CHARS: Record<TimelineState, string> = { running: '#', held: '=', waiting: '.' };
// When a column stands for several steps, it shows the most telling state among them.
const PRIORITY: Record<TimelineState, number> = { running: 3, held: 2, waiting: 1 };

/**
 * The timeline as text: rows = requests, columns = steps (several steps per column when the run is
 * longer than `width`), '#' running, '.' waiting, '=' finished but held, blank before arrival and after the end.
 */
export function renderAsciiTimeline(t: Timeline, opts: { title?: string; width?: number; maxRows?: number } = {}): string {
  const width = Math.max(10, opts.width ?? 100);
  const maxRows = opts.maxRows ?? 48;
  const cols = Math.max(1, Math.min(t.numSteps, width));
  const stepsPerCol = t.numSteps / cols;
  const rows = Math.min(t.numRequests, maxRows);
  const grid: Array<Array<TimelineState | undefined>> = Array.from({ length: rows }, () => new Array(cols).fill(undefined));
  for (const s of t.segments) {
    if (s.request >= rows) continue;
    const c0 = Math.floor(s.startStep / stepsPerCol);
    const c1 = Math.min(cols - 1, Math.floor((s.endStep - 1) / stepsPerCol));
    for (let c = c0; c <= c1; c++) {
      const prev = grid[s.request][c];
      if (!prev || PRIORITY[s.state] > PRIORITY[prev]) grid[s.request][c] = s.state;
    }
  }
  const label = (i: number) => `req ${String(i).padStart(String(t.numRequests - 1).length)} |`;
  const lines: string[] = [];
  if (opts.title) lines.push(opts.title);
  const scale = stepsPerCol > 1 ? `1 column = ${stepsPerCol.toFixed(1)} steps` : '1 column = 1 step';
  lines.push(`${t.numSteps} steps (${scale});  # running  . waiting  = finished, held as padding`);
  for (let r = 0; r < rows; r++) lines.push(label(r) + grid[r].map((s) => (s ? CHARS[s] : ' ')).join('').trimEnd());
  if (t.numRequests > rows) lines.push(`... ${t.numRequests - rows} more requests not shown`);
  return lines.join('\n');
}
