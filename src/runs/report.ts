// The benchmark report: report.html (self-contained: inline CSS and SVG charts, no script, no
// network), report.md (the same tables, charts as SVG files beside it) and results.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { latencyCdfSpec, renderSvg, slotsOverStepsSpec, throughputSpec, timelineSpec, utilizationSpec } from './charts.js';
import { resultsJson, type BenchResults } from './results.js';
import { comparisonTable, conclusionSentence, escapeHtml, fmt, latencyTable, ratioTable, throughputTable, type TableFormat } from './tables.js';

export interface Chart {
  /** File name stem (charts/<id>.svg). */
  id: string;
  title: string;
  svg: string;
}

/** Renders every chart the results support. */
export async function renderCharts(r: BenchResults): Promise<Chart[]> {
  const specs: Array<{ id: string; title: string; spec: TopLevelSpec | undefined }> = [
    { id: 'throughput', title: 'Output throughput', spec: throughputSpec(r) },
    { id: 'utilization', title: 'Utilisation', spec: r.runs.some((x) => x.slot) ? utilizationSpec(r) : undefined },
    { id: 'ttft-cdf', title: 'TTFT distribution', spec: latencyCdfSpec(r, 'ttft') },
    { id: 'tpot-cdf', title: 'TPOT distribution', spec: latencyCdfSpec(r, 'tpot') },
    { id: 'e2e-cdf', title: 'End-to-end latency distribution', spec: latencyCdfSpec(r, 'e2e') },
  ];
  // The seed's diagram for static and continuous batching (for whichever Stepwise policy ran, if neither did).
  const withTimeline = r.runs.filter((x) => x.timeline);
  const shown = withTimeline.filter((x) => x.policy === 'static' || x.policy === 'continuous');
  const drawn = shown.length > 0 ? shown : withTimeline.slice(0, 1);
  const steps = Math.max(...drawn.map((x) => x.timeline!.numSteps));
  for (const x of drawn) {
    specs.push({ id: `timeline-${x.policy}`, title: `Request timeline: ${x.label}`, spec: timelineSpec(x.timeline!, `Request timeline: ${x.label}`, steps) });
    specs.push({ id: `slots-${x.policy}`, title: `Busy slots: ${x.label}`, spec: slotsOverStepsSpec(x) });
  }
  const charts: Chart[] = [];
  for (const s of specs) if (s.spec) charts.push({ id: s.id, title: s.title, svg: await renderSvg(s.spec) });
  return charts;
}

function header(r: BenchResults): Array<[string, string]> {
  const rows: Array<[string, string]> = [
    ['model', `${r.model.name}${r.model.params ? ` (${(r.model.params / 1e6).toFixed(2)}M matmul params)` : ''}`],
  ];
  if (r.model.backend) rows.push(['kernels', r.model.backend]);
  rows.push(['workload', `${r.workload.name}: ${r.workload.description} (seed ${r.workload.seed})`]);
  rows.push(['tokens', `${r.workload.promptTokens} prompt + ${r.workload.outputTokens} output${r.workload.clipped ? `; ${r.workload.clipped} requests clipped to the context length` : ''}`]);
  if (r.engine) rows.push(['engine', Object.entries(r.engine).map(([k, v]) => `${k}=${String(v)}`).join(', ')]);
  if (r.peakFlops) rows.push(['measured kernel peak', `${fmt.num(r.peakFlops / 1e9, 2)} GFLOP/s (batched f32 matmul)`]);
  if (r.peer) rows.push(['peer', r.peer.version]);
  rows.push(['run', `${r.mode}, started ${r.startedAt}, ${fmt.num(r.wallS, 1)} s in all`]);
  if (r.machine) rows.push(['machine', `${r.machine.cores} cores, load average ${r.machine.loadAvgStart.toFixed(1)} at the start, ${r.machine.loadAvgEnd.toFixed(1)} at the end`]);
  return rows;
}

const NOTES = [
  'The seed figures are GPU numbers; these were measured on this CPU. Compare the ratios between policies and the utilisation, not absolute tokens/s.',
  'Slot utilisation = sequences computing a real token / slots available (max_num_seqs for continuous, the batch size for static, 1 for none), over the decode steps taken while requests were waiting (saturated) and over the whole run (drain included). With no batching it is 100% by definition — the waste shows in compute utilisation instead.',
  'Compute utilisation = achieved FLOP/s (2 x matmul params x tokens + output projection per sampled row + attention) over the peak the kernels reached on a batched matmul at the start of the run.',
  'TTFT, TPOT (first token excluded: (e2e - TTFT) / (output tokens - 1)), ITL and E2E follow vLLM\'s benchmark_serving.py; every request generates exactly its output length (EOS ignored), greedily.',
];

export function renderMarkdown(r: BenchResults, charts: Chart[], chartDir = 'charts'): string {
  const t: TableFormat = 'markdown';
  const out: string[] = ['# Stepwise benchmark', ''];
  // The answer first: the throughput chart and one sentence, then the detail.
  const answer = conclusionSentence(r);
  const first = charts.find((c) => c.id === 'throughput');
  if (first) out.push(`![${first.title}](${chartDir}/${first.id}.svg)`, '');
  if (answer) out.push(`**${answer}**`, '');
  for (const [k, v] of header(r)) out.push(`- **${k}**: ${v}`);
  out.push('', '## Batching strategies against the seed', '', comparisonTable(r, t), '');
  const ratiosMd = ratioTable(r, t);
  if (ratiosMd) out.push(ratiosMd, '');
  out.push(...NOTES.map((n) => `> ${n}\n>`), '');
  out.push('## Throughput', '', throughputTable(r, t), '', '## Latency', '', latencyTable(r, t), '', '## Charts', '');
  for (const c of charts) out.push(`### ${c.title}`, '', `![${c.title}](${chartDir}/${c.id}.svg)`, '');
  return out.join('\n');
}

export function renderHtml(r: BenchResults, charts: Chart[]): string {
  const t: TableFormat = 'html';
  const ratiosHtml = ratioTable(r, t);
  // The answer first: the throughput bar chart and one sentence of conclusion, then the detail.
  const answer = conclusionSentence(r);
  const first = charts.find((c) => c.id === 'throughput');
  const rest = charts.filter((c) => c !== first);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Stepwise benchmark: ${escapeHtml(r.model.name)}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: .3rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6rem 0; } th, td { padding: .25rem .6rem; border-bottom: 1px solid #eee; text-align: left; }
th { background: #f5f5f5; } .num { text-align: right; font-variant-numeric: tabular-nums; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; } dt { font-weight: 600; } dd { margin: 0; }
.answer { font-size: 1.15rem; font-weight: 600; margin: .6rem 0 1.2rem; }
.note { color: #555; background: #fafafa; border-left: 3px solid #ccc; padding: .4rem .8rem; margin: .4rem 0; }
figure { margin: 1.2rem 0; } figcaption { font-weight: 600; margin-bottom: .3rem; }
</style>
</head>
<body>
<h1>Stepwise benchmark</h1>
${first ? `<figure id="chart-${first.id}" class="chart"><figcaption>${escapeHtml(first.title)}</figcaption>\n${first.svg}\n</figure>` : ''}
${answer ? `<p class="answer" id="answer">${escapeHtml(answer)}</p>` : ''}
<dl>
${header(r).map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join('\n')}
</dl>
<h2>Batching strategies against the seed</h2>
${comparisonTable(r, t)}
${ratiosHtml}
${NOTES.map((n) => `<p class="note">${escapeHtml(n)}</p>`).join('\n')}
<h2>Charts</h2>
${rest.map((c) => `<figure id="chart-${c.id}" class="chart"><figcaption>${escapeHtml(c.title)}</figcaption>\n${c.svg}\n</figure>`).join('\n')}
<h2>Throughput</h2>
${throughputTable(r, t)}
<h2>Latency</h2>
${latencyTable(r, t)}
</body>
</html>
`;
}

/** Writes report.html, report.md, results.json and charts/*.svg into `dir`; returns their paths. */
export async function writeReport(r: BenchResults, dir: string): Promise<{ html: string; markdown: string; json: string }> {
  mkdirSync(join(dir, 'charts'), { recursive: true });
  const charts = await renderCharts(r);
  for (const c of charts) writeFileSync(join(dir, 'charts', `${c.id}.svg`), c.svg);
  const html = join(dir, 'report.html');
  const markdown = join(dir, 'report.md');
  const json = join(dir, 'results.json');
  writeFileSync(html, renderHtml(r, charts));
  writeFileSync(markdown, renderMarkdown(r, charts));
  writeFileSync(json, JSON.stringify(resultsJson(r), null, 2) + '\n');
  return { html, markdown, json };
}
