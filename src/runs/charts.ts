// The report's charts as Vega-Lite specifications, rendered to SVG strings in Node (vega View with
// the headless 'none' renderer), so the HTML report is self-contained and needs no script to draw.
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { BenchResults, RunResult } from './results.js';
import type { Timeline } from './timeline.js';
import { usefulSeqs } from './utilization.js';

export const STATE_COLORS = { running: '#2a9d8f', waiting: '#e9c46a', held: '#e76f51' } as const;
const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

function allRuns(r: BenchResults): RunResult[] {
  return [...r.runs, ...(r.peer ? [r.peer] : [])];
}

/** Output throughput per run, one bar each. */
export function throughputSpec(r: BenchResults): TopLevelSpec {
  const values = allRuns(r).map((x) => ({ run: x.label, throughput: x.metrics.outputThroughput }));
  return {
    $schema: SCHEMA,
    title: 'Output throughput (tokens/s)',
    width: 420,
    height: { step: 34 },
    data: { values },
    layer: [
      { mark: { type: 'bar', color: '#264653' } },
      { mark: { type: 'text', align: 'left', dx: 4 }, encoding: { text: { field: 'throughput', type: 'quantitative', format: '.1f' } } },
    ],
    encoding: {
      y: { field: 'run', type: 'nominal', sort: null, title: null },
      x: { field: 'throughput', type: 'quantitative', title: 'output tokens/s' },
    },
  };
}

/** Slot utilisation (saturated phase and overall) and compute utilisation per Stepwise run. */
export function utilizationSpec(r: BenchResults): TopLevelSpec {
  const values: Array<{ run: string; measure: string; value: number }> = [];
  for (const x of r.runs) {
    if (x.slot?.saturated !== null && x.slot?.saturated !== undefined) values.push({ run: x.label, measure: 'slots, saturated phase', value: x.slot.saturated });
    if (x.slot) values.push({ run: x.label, measure: 'slots, whole run', value: x.slot.overall });
    if (x.compute) values.push({ run: x.label, measure: 'compute (of measured peak)', value: x.compute.utilization });
  }
  return {
    $schema: SCHEMA,
    title: 'Utilisation',
    width: 420,
    data: { values },
    mark: 'bar',
    encoding: {
      y: { field: 'run', type: 'nominal', sort: null, title: null },
      yOffset: { field: 'measure', type: 'nominal' },
      x: { field: 'value', type: 'quantitative', axis: { format: '%' }, scale: { domain: [0, 1] }, title: null },
      color: { field: 'measure', type: 'nominal', title: null, legend: { orient: 'bottom', labelLimit: 320 } },
    },
  };
}

type LatencyMetric = 'ttft' | 'tpot' | 'e2e';
const LATENCY_TITLES: Record<LatencyMetric, string> = {
  ttft: 'Time to first token (ms)',
  tpot: 'Time per output token (ms)',
  e2e: 'End-to-end latency (ms)',
};

/** Per-request latency values of one metric, for the CDFs. */
export function latencyValues(x: RunResult, metric: LatencyMetric): number[] {
  const out: number[] = [];
  for (const rec of x.records) {
    if (!rec.success || rec.chunkMs.length === 0) continue;
    const ttft = rec.chunkMs[0] - rec.sentMs;
    const e2e = rec.chunkMs[rec.chunkMs.length - 1] - rec.sentMs;
    if (metric === 'ttft') out.push(ttft);
    else if (metric === 'e2e') out.push(e2e);
    else if (rec.outputLen > 1) out.push((e2e - ttft) / (rec.outputLen - 1));
  }
  return out.sort((a, b) => a - b);
}

/** Empirical CDF of a latency metric, one line per run. */
export function latencyCdfSpec(r: BenchResults, metric: LatencyMetric): TopLevelSpec {
  const values: Array<{ run: string; ms: number; fraction: number }> = [];
  for (const x of allRuns(r)) {
    const v = latencyValues(x, metric);
    v.forEach((ms, i) => values.push({ run: x.label, ms, fraction: (i + 1) / v.length }));
  }
  return {
    $schema: SCHEMA,
    title: `${LATENCY_TITLES[metric]}: CDF over requests`,
    width: 420,
    height: 220,
    data: { values },
    mark: { type: 'line', interpolate: 'step-after', point: false },
    encoding: {
      x: { field: 'ms', type: 'quantitative', title: 'ms' },
      y: { field: 'fraction', type: 'quantitative', title: 'fraction of requests', axis: { format: '%' } },
      color: { field: 'run', type: 'nominal', sort: null, title: null, legend: { orient: 'bottom', labelLimit: 320 } },
    },
  };
}

/**
 * The request timeline: rows = requests, x = step, colour = waiting / running / finished-but-held.
 * `stepDomain` lets several timelines share one step axis, so their lengths compare at a glance.
 */
export function timelineSpec(t: Timeline, title: string, stepDomain = t.numSteps): TopLevelSpec {
  const values = t.segments.map((s) => ({ request: s.request, r1: s.request + 1, state: s.state, start: s.startStep, end: s.endStep }));
  return {
    $schema: SCHEMA,
    title,
    width: 640,
    height: Math.min(520, Math.max(120, t.numRequests * 5)),
    data: { values },
    mark: { type: 'rect' },
    encoding: {
      x: { field: 'start', type: 'quantitative', title: 'engine step', scale: { domain: [0, Math.max(1, stepDomain)] } },
      x2: { field: 'end' },
      y: { field: 'request', type: 'quantitative', title: 'request', scale: { domain: [0, Math.max(1, t.numRequests)], reverse: true, nice: false } },
      y2: { field: 'r1' },
      color: {
        field: 'state',
        type: 'nominal',
        title: null,
        scale: { domain: ['running', 'waiting', 'held'], range: [STATE_COLORS.running, STATE_COLORS.waiting, STATE_COLORS.held] },
        legend: { orient: 'bottom', labelLimit: 320, labelExpr: "datum.label === 'held' ? 'finished, held as padding' : datum.label" },
      },
    },
  };
}

/** Busy slots and waiting requests per step (thinned to at most ~600 points per series). */
export function slotsOverStepsSpec(x: RunResult): TopLevelSpec | undefined {
  if (!x.steps || x.steps.length === 0 || !x.slot) return undefined;
  const every = Math.max(1, Math.ceil(x.steps.length / 600));
  const values: Array<{ step: number; series: string; value: number }> = [];
  x.steps.forEach((s, i) => {
    if (i % every !== 0) return;
    values.push({ step: i, series: 'busy slots', value: usefulSeqs(s) });
    values.push({ step: i, series: 'waiting requests', value: s.numWaiting });
  });
  return {
    $schema: SCHEMA,
    title: `${x.label}: busy slots (of ${x.slot.capacity}) and queue per step`,
    width: 640,
    height: 160,
    data: { values },
    mark: { type: 'line', interpolate: 'step-after' },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'engine step' },
      y: { field: 'value', type: 'quantitative', title: null },
      color: { field: 'series', type: 'nominal', title: null, scale: { range: [STATE_COLORS.running, STATE_COLORS.waiting] }, legend: { orient: 'bottom', labelLimit: 320 } },
    },
  };
}
