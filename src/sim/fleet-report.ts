// The fleet simulation's report: one row per router with what sizing a deployment turns on
// (throughput, goodput at the SLO, TTFT and TPOT percentiles, load balance, prefix-cache hits), the
// spread over replicas, optionally every replica; the benchmark's throughput and latency tables;
// results.json with every figure; and report.md / report.html with the same tables and the charts.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeSlo } from '../runs/goodput.js';
import { renderCharts } from '../runs/report.js';
import { escapeHtml, fmt, formatTable, latencyTable, throughputTable, type TableFormat } from '../runs/tables.js';
import type { FleetResults, FleetRunResult } from './run-fleet.js';
import { simResultsJson, simulationSummary } from './report.js';

function range(xs: readonly number[], f: (x: number) => string): string {
  if (xs.length === 0) return '–';
  return `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
}

/** One row per router: the figures a sizing decision turns on. */
export function fleetTable(r: FleetResults, format: TableFormat): string {
  const slo = describeSlo(r.fleet.slo);
  const rows = r.runs.map((x) => {
    const m = x.metrics;
    const g = x.fleet.goodput;
    return [
      x.label,
      fmt.num(m.requestThroughput, 2),
      fmt.num(m.outputThroughput),
      g ? `${fmt.num(g.requestsPerS, 2)} (${fmt.pct(g.fraction)})` : '–',
      fmt.num(m.ttftMs.p50),
      fmt.num(m.ttftMs.p99),
      fmt.num(m.tpotMs.p50, 2),
      fmt.num(m.tpotMs.p99, 2),
      fmt.num(m.e2eMs.p50),
      fmt.pct(x.fleet.prefixHitRate),
      fmt.ratio(x.fleet.requestsMaxOverMean),
      fmt.num(x.sim.wallMs / 1000, 2),
    ];
  });
  return formatTable(
    ['router', 'req/s', 'output tok/s', `goodput req/s (${slo})`, 'TTFT p50 ms', 'TTFT p99 ms', 'TPOT p50 ms', 'TPOT p99 ms', 'E2E p50 ms', 'prefix hits', 'requests max/mean', 'simulation s'],
    rows,
    format,
  );
}

/** How the work spread over the replicas, per router (min–max over replicas). */
export function balanceTable(r: FleetResults, format: TableFormat): string {
  const rows = r.runs.map((x) => {
    const p = x.fleet.perReplica;
    return [
      x.label,
      range(p.map((y) => y.requests), String),
      range(p.map((y) => y.outputTokens), String),
      fmt.ratio(x.fleet.outputTokensMaxOverMean),
      range(p.map((y) => y.prefixHitRate), fmt.pct),
      range(p.map((y) => y.busy), fmt.pct),
      x.fleet.replicasPerPrefixGroup === null ? '–' : fmt.num(x.fleet.replicasPerPrefixGroup, 1),
      String(x.numPreemptions ?? '–'),
    ];
  });
  return formatTable(['router', 'requests per replica', 'output tokens per replica', 'tokens max/mean', 'prefix hits per replica', 'busy per replica', 'replicas per prefix group', 'preemptions'], rows, format);
}

/** Every replica of every router's run. */
export function replicaTable(r: FleetResults, format: TableFormat): string {
  const rows = r.runs.flatMap((x) =>
    x.fleet.perReplica.map((y) => [x.label, String(y.index), String(y.requests), String(y.outputTokens), fmt.pct(y.prefixHitRate), String(y.preemptions), String(y.steps), fmt.pct(y.busy)]),
  );
  return formatTable(['router', 'replica', 'requests', 'output tokens', 'prefix hits', 'preemptions', 'steps', 'busy'], rows, format, ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r']);
}

/** Lines describing the simulated fleet. */
export function fleetSummary(r: FleetResults): string[] {
  const s = r.runs[0]?.sim.scheduler;
  return [
    ...simulationSummary(r),
    `fleet: ${r.fleet.replicas} replicas of that engine${s ? ` (${s.policy}, max ${s.maxNumSeqs} sequences, prefix caching ${s.enablePrefixCaching ? 'on' : 'off'})` : ''}, one router in front; goodput SLO: ${describeSlo(r.fleet.slo)}`,
  ];
}

function runFleetJson(x: FleetRunResult) {
  const f = x.fleet;
  return {
    router: x.router,
    replicas: f.replicas,
    goodput: f.goodput ? { good: f.goodput.good, request_goodput: f.goodput.requestsPerS, fraction: f.goodput.fraction } : null,
    prefix_hit_rate: f.prefixHitRate,
    requests_max_over_mean: f.requestsMaxOverMean,
    output_tokens_max_over_mean: f.outputTokensMaxOverMean,
    replicas_per_prefix_group: f.replicasPerPrefixGroup,
    per_replica: f.perReplica.map((y) => ({
      replica: y.index,
      requests: y.requests,
      completed: y.completed,
      output_tokens: y.outputTokens,
      prefix_cache_queries: y.prefixQueries,
      prefix_cache_hits: y.prefixHits,
      prefix_hit_rate: y.prefixHitRate,
      preemptions: y.preemptions,
      steps: y.steps,
      busy: y.busy,
    })),
  };
}

/** results.json of a fleet simulation: a simulation's (one entry per router under `policies`), plus `fleet`. */
export function fleetResultsJson(r: FleetResults): Record<string, unknown> {
  return {
    ...simResultsJson(r),
    fleet: {
      replicas: r.fleet.replicas,
      slo: { ttft_ms: r.fleet.slo.ttftMs ?? null, tpot_ms: r.fleet.slo.tpotMs ?? null },
      runs: r.runs.map(runFleetJson),
    },
  };
}

/** Writes report.html, report.md, results.json and charts/ into `dir`. */
export async function writeFleetReport(r: FleetResults, dir: string, perReplica = false): Promise<{ html: string; markdown: string; json: string }> {
  mkdirSync(join(dir, 'charts'), { recursive: true });
  const charts = await renderCharts(r);
  for (const c of charts) writeFileSync(join(dir, 'charts', `${c.id}.svg`), c.svg);
  const sections = (t: TableFormat): Array<[string, string]> => [
    ['Routers', fleetTable(r, t)],
    ['Load balance', balanceTable(r, t)],
    ...(perReplica ? [['Replicas', replicaTable(r, t)] as [string, string]] : []),
    ['Throughput', throughputTable(r, t)],
    ['Latency', latencyTable(r, t)],
  ];
  const banner = [...fleetSummary(r), `workload: ${r.workload.description}, seed ${r.workload.seed}`];
  const md = [
    '# Stepwise fleet simulation',
    '',
    ...banner.map((l) => `> ${l}\n>`),
    '',
    ...sections('markdown').flatMap(([h, t]) => [`## ${h}`, '', t, '']),
    '## Charts',
    '',
    ...charts.flatMap((c) => [`### ${c.title}`, '', `![${c.title}](charts/${c.id}.svg)`, '']),
  ].join('\n');
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Stepwise fleet simulation: ${escapeHtml(r.model.name)}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222; }
h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6rem 0; } th, td { padding: .25rem .6rem; border-bottom: 1px solid #eee; text-align: left; }
th { background: #f5f5f5; } .num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #555; background: #fafafa; border-left: 3px solid #ccc; padding: .4rem .8rem; margin: .4rem 0; }
</style>
</head>
<body>
<h1>Stepwise fleet simulation</h1>
${banner.map((l) => `<p class="note">${escapeHtml(l)}</p>`).join('\n')}
${sections('html').map(([h, t]) => `<h2>${escapeHtml(h)}</h2>\n${t}`).join('\n')}
<h2>Charts</h2>
${charts.map((c) => `<figure id="chart-${c.id}"><figcaption>${escapeHtml(c.title)}</figcaption>\n${c.svg}\n</figure>`).join('\n')}
</body>
</html>
`;
  const files = { html: join(dir, 'report.html'), markdown: join(dir, 'report.md'), json: join(dir, 'results.json') };
  writeFileSync(files.html, html);
  writeFileSync(files.markdown, md);
  writeFileSync(files.json, JSON.stringify(fleetResultsJson(r), null, 2) + '\n');
  return files;
}
