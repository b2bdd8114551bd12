// The comparison tables, as aligned terminal text or Markdown (the same rows either way).
import { ratios, SEED_RATIOS, SEED_REFERENCE, type BenchResults, type RunResult } from './results.js';
import { computeGoodput, describeSlo, type Slo } from './goodput.js';

export type TableFormat = 'text' | 'markdown' | 'html';

export function formatTable(headers: string[], rows: string[][], format: TableFormat, align?: Array<'l' | 'r'>): string {
  const al = align ?? headers.map((_, i) => (i === 0 ? 'l' : 'r'));
  if (format === 'html') {
    const cell = (tag: string, c: string, i: number) => `<${tag}${al[i] === 'r' ? ' class="num"' : ''}>${escapeHtml(c)}</${tag}>`;
    return [
      '<table>',
      `<thead><tr>${headers.map((h, i) => cell('th', h, i)).join('')}</tr></thead>`,
      '<tbody>',
      ...rows.map((r) => `<tr>${r.map((c, i) => cell('td', c, i)).join('')}</tr>`),
      '</tbody></table>',
    ].join('\n');
  }
  if (format === 'markdown') {
    const esc = (s: string) => s.replace(/\|/g, '\\|');
    return [
      `| ${headers.map(esc).join(' | ')} |`,
      `|${al.map((a) => (a === 'r' ? '---:' : ':---')).join('|')}|`,
      ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
    ].join('\n');
  }
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (al[i] === 'r' ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export const fmt = {
  num(x: number | null | undefined, digits = 1): string {
    if (x === null || x === undefined || !Number.isFinite(x)) return '–';
    return x >= 1000 ? x.toFixed(0) : x.toFixed(digits);
  },
  pct(x: number | null | undefined): string {
    if (x === null || x === undefined || !Number.isFinite(x)) return '–';
    return `${(x * 100).toFixed(x < 0.1 ? 1 : 0)}%`;
  },
  ratio(x: number | undefined): string {
    return x === undefined || !Number.isFinite(x) ? '–' : `${x.toFixed(2)}x`;
  },
  range([a, b]: [number, number], digits = 0): string {
    return `${a.toFixed(digits)}–${b.toFixed(digits)}`;
  },
};

/** Our numbers beside the seed's, one row per run (the peer last). */
export function comparisonTable(r: BenchResults, format: TableFormat): string {
  const headers = ['strategy', 'seed tok/s (GPU)', 'ours tok/s', 'seed util', 'slot util (saturated)', 'slot util (overall)', 'compute util', 'TTFT p50 ms', 'TPOT p50 ms', 'E2E p50 ms'];
  const all: RunResult[] = [...r.runs, ...(r.peer ? [r.peer] : [])];
  const rows = all.map((x) => {
    const seed = x.policy === 'none' || x.policy === 'static' || x.policy === 'continuous' ? SEED_REFERENCE[x.policy] : undefined;
    return [
      x.label,
      seed ? fmt.range(seed.throughput) : '',
      fmt.num(x.metrics.outputThroughput),
      seed ? seed.utilization : '',
      fmt.pct(x.slot?.saturated),
      fmt.pct(x.slot?.overall),
      fmt.pct(x.compute?.utilization),
      fmt.num(x.metrics.ttftMs.p50),
      fmt.num(x.metrics.tpotMs.p50, 2),
      fmt.num(x.metrics.e2eMs.p50),
    ];
  });
  return formatTable(headers, rows, format);
}

/** The ratios the seed's claim is about, ours beside the seed's. */
export function ratioTable(r: BenchResults, format: TableFormat): string {
  const rt = ratios(r);
  const rows: string[][] = [];
  if (rt.continuousOverStatic !== undefined) {
    rows.push(['continuous / static', fmt.ratio(rt.continuousOverStatic), `${SEED_RATIOS.continuousOverStatic.claim} (table: ${fmt.range(SEED_RATIOS.continuousOverStatic.fromTable, 1)}x)`]);
  }
  if (rt.continuousOverNone !== undefined) {
    rows.push(['continuous / none', fmt.ratio(rt.continuousOverNone), `${fmt.range(SEED_RATIOS.continuousOverNone.fromTable)}x (table)`]);
  }
  if (rt.stepwiseOverLlamaCpp !== undefined) rows.push(['Stepwise / llama.cpp', fmt.ratio(rt.stepwiseOverLlamaCpp), '']);
  if (rows.length === 0) return '';
  return formatTable(['output throughput ratio', 'ours', 'seed'], rows, format);
}

/**
 * The comparison in one sentence, for the top of the report: how many times static's and no
 * batching's output throughput continuous batching reached, and how busy its slots were while
 * requests waited. Empty when the run did not compare continuous batching with a baseline.
 */
export function conclusionSentence(r: BenchResults): string {
  const rt = ratios(r);
  const cont = r.runs.find((x) => x.policy === 'continuous');
  if (!cont || (rt.continuousOverStatic === undefined && rt.continuousOverNone === undefined)) return '';
  const parts: string[] = [];
  if (rt.continuousOverStatic !== undefined) parts.push(`${fmt.ratio(rt.continuousOverStatic)} static batching's`);
  if (rt.continuousOverNone !== undefined) parts.push(`${fmt.ratio(rt.continuousOverNone)} no batching's`);
  const stat = r.runs.find((x) => x.policy === 'static');
  const pct = (v: number | null | undefined) => (v === null || v === undefined ? undefined : `${(100 * v).toFixed(0)}%`);
  const contUtil = pct(cont.slot?.saturated);
  const statUtil = pct(stat?.slot?.saturated);
  const util = contUtil ? `, with ${contUtil} of its slots computing while requests waited${statUtil ? ` (static: ${statUtil})` : ''}` : '';
  return `Continuous batching reached ${parts.join(' and ')} output throughput${util}.`;
}

/** vLLM's latency block: mean, median, p90, p99 of TTFT, TPOT, ITL and E2E per run. */
export function latencyTable(r: BenchResults, format: TableFormat): string {
  const all: RunResult[] = [...r.runs, ...(r.peer ? [r.peer] : [])];
  const rows: string[][] = [];
  for (const x of all) {
    const m = x.metrics;
    for (const [name, d] of [['TTFT', m.ttftMs], ['TPOT', m.tpotMs], ['ITL', m.itlMs], ['E2E', m.e2eMs]] as const) {
      rows.push([x.label, name, fmt.num(d.mean, 2), fmt.num(d.p50, 2), fmt.num(d.p90, 2), fmt.num(d.p99, 2)]);
    }
  }
  return formatTable(['run', 'metric (ms)', 'mean', 'median', 'p90', 'p99'], rows, format, ['l', 'l', 'r', 'r', 'r', 'r']);
}

/** Throughput figures as vLLM prints them. */
export function throughputTable(r: BenchResults, format: TableFormat): string {
  const all: RunResult[] = [...r.runs, ...(r.peer ? [r.peer] : [])];
  const withGrammar = all.some((x) => x.grammarOverhead);
  const withSpec = all.some((x) => x.speculation);
  const rows = all.map((x) => [
    x.label,
    `${x.metrics.completed}${x.metrics.failed ? ` (+${x.metrics.failed} failed)` : ''}`,
    fmt.num(x.metrics.durationS, 2),
    fmt.num(x.metrics.requestThroughput, 2),
    fmt.num(x.metrics.outputThroughput),
    fmt.num(x.metrics.totalTokenThroughput),
    fmt.num(x.decodeThroughput),
    x.numSteps === null ? '–' : String(x.numSteps),
    x.numPreemptions === null ? '–' : String(x.numPreemptions),
    !x.schedulerOverhead ? '–' : `${fmt.num(x.schedulerOverhead.medianMs, 3)} (${(x.schedulerOverhead.share * 100).toFixed(1)}%)`,
    ...(withGrammar ? [!x.grammarOverhead ? '–' : `${fmt.num(x.grammarOverhead.medianMs, 3)} (${(x.grammarOverhead.share * 100).toFixed(1)}%)`] : []),
    ...(withSpec ? [!x.speculation ? '–' : `${(x.speculation.acceptanceRate * 100).toFixed(1)}% / ${x.speculation.meanAcceptedLength.toFixed(2)}`] : []),
  ]);
  const header = ['run', 'completed', 'duration s', 'req/s', 'output tok/s', 'total tok/s', 'decode-step tok/s', 'steps', 'preemptions', 'sched ms/step (share)'];
  return formatTable([...header, ...(withGrammar ? ['grammar ms/step (share)'] : []), ...(withSpec ? ['spec accepted / mean length'] : [])], rows, format);
}

/** Goodput at an SLO per run: how many completed requests met it, and their rate. */
export function goodputTable(r: BenchResults, slo: Slo, format: TableFormat): string {
  const rows = r.runs.map((x) => {
    const g = computeGoodput(x.records, slo, x.metrics.durationS * 1000);
    return [x.label, `${g.good} of ${x.metrics.completed}`, fmt.pct(g.fraction), fmt.num(g.requestsPerS, 2), fmt.num(x.metrics.requestThroughput, 2)];
  });
  return formatTable([`run (${describeSlo(slo)})`, 'met the SLO', 'share', 'goodput req/s', 'req/s'], rows, format);
}
