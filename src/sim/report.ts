// The simulation's report: the benchmark's tables, charts and results.json (a simulated run has the
// same shape as a measured one), plus what only a simulation knows — the hardware and model profiles,
// model FLOPs and bandwidth utilisation — and a banner so nobody mistakes it for a measurement.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderCharts, renderHtml, renderMarkdown } from '../runs/report.js';
import { resultsJson } from '../runs/results.js';
import { escapeHtml, fmt, formatTable, type TableFormat } from '../runs/tables.js';
import { profileKvBytesPerToken, totalParams } from './cost-model.js';
import type { SimResults } from './run-sim.js';

/** Per policy: what the simulated hardware did. */
export function simulationTable(r: SimResults, format: TableFormat): string {
  const rows = r.runs.map((x) => [
    x.label,
    fmt.num(x.metrics.outputThroughput),
    fmt.pct(x.slot?.saturated),
    fmt.pct(x.sim.mfu),
    fmt.pct(x.sim.mbu),
    fmt.pct(x.sim.memoryBoundSteps),
    String(x.numSteps ?? '–'),
    String(x.numPreemptions ?? '–'),
    fmt.num(x.sim.wallMs / 1000, 2),
  ]);
  return formatTable(['policy', 'output tok/s', 'slot util (saturated)', 'MFU', 'MBU', 'memory-bound steps', 'steps', 'preemptions', 'simulation s'], rows, format);
}

/** Lines describing the simulated setup. */
export function simulationSummary(r: SimResults): string[] {
  const s = r.simulation;
  const hw = s.hardwareProfile;
  const m = s.modelProfile;
  const kv = r.runs[0]?.sim;
  return [
    `Simulated: ${s.model} on ${s.hardware} (no model was run; step times come from the cost model).`,
    `hardware: ${hw.memoryGB} GB, ${hw.bandwidthGBs} GB/s x ${hw.bandwidthEfficiency}, ${hw.peakTflops} TFLOP/s x ${hw.computeEfficiency}, ` +
      `step overhead ${hw.stepOverheadMs} ms + ${hw.perSeqOverheadUs} us/seq${hw.perTokenUs ? ` + ${hw.perTokenUs} us/row` : ''}` +
      `${hw.attentionGflops !== undefined ? `, attention ${hw.attentionGflops} GFLOP/s` : ''}${hw.kvReadCurve ? `, KV reads from a ${hw.kvReadCurve.length}-point measured curve` : hw.kvBandwidthGBs !== undefined ? `, KV reads ${hw.kvBandwidthGBs} GB/s` : ''}${hw.rowCurve ? `, per-row work from a ${hw.rowCurve.length}-point measured curve` : ''}${hw.coldStepFactor !== undefined ? `, steps on an idle engine x${hw.coldStepFactor}` : ''}${hw.afterPromptFactors ? `, decode steps right after a prompt step x${hw.afterPromptFactors.join('/x')}` : ''}${hw.source ? ` (${hw.source})` : ''}`,
    `model: ${(totalParams(m) / 1e9).toFixed(2)}B params at ${m.weightBytes} bytes, KV ${(profileKvBytesPerToken(m) / 1024).toFixed(1)} KiB/token` +
      (kv ? `; KV cache ${kv.kvCapacityTokens} tokens, ${kv.scheduler.numBlocks} blocks used by the scheduler` : ''),
  ];
}

/** results.json of a simulation: the benchmark's, plus a `simulation` block. */
export function simResultsJson(r: SimResults): Record<string, unknown> {
  return {
    ...resultsJson(r),
    tool: 'stepwise simulate',
    simulation: {
      hardware: r.simulation.hardware,
      hardware_profile: r.simulation.hardwareProfile,
      model: r.simulation.model,
      model_profile: r.simulation.modelProfile,
      runs: r.runs.map((x) => ({ policy: x.policy, label: x.label, mfu: x.sim.mfu, mbu: x.sim.mbu, memory_bound_steps: x.sim.memoryBoundSteps, wall_ms: x.sim.wallMs, scheduler: x.sim.scheduler })),
    },
  };
}

/** Writes report.html, report.md, results.json (`json`, by default simResultsJson's) and charts/ into `dir`. */
export async function writeSimReport(r: SimResults, dir: string, json: Record<string, unknown> = simResultsJson(r)): Promise<{ html: string; markdown: string; json: string }> {
  mkdirSync(join(dir, 'charts'), { recursive: true });
  const charts = await renderCharts(r);
  for (const c of charts) writeFileSync(join(dir, 'charts', `${c.id}.svg`), c.svg);
  const banner = simulationSummary(r);
  const md = renderMarkdown(r, charts).replace(
    /^# Stepwise benchmark\n/,
    `# Stepwise simulation\n\n${banner.map((l) => `> ${l}\n>`).join('\n')}\n\n## Simulated hardware\n\n${simulationTable(r, 'markdown')}\n`,
  );
  const html = renderHtml(r, charts).replace(
    /<h1>Stepwise benchmark<\/h1>/,
    `<h1>Stepwise simulation</h1>\n${banner.map((l) => `<p class="note">${escapeHtml(l)}</p>`).join('\n')}\n<h2>Simulated hardware</h2>\n${simulationTable(r, 'html')}`,
  );
  const files = { html: join(dir, 'report.html'), markdown: join(dir, 'report.md'), json: join(dir, 'results.json') };
  writeFileSync(files.html, html);
  writeFileSync(files.markdown, md);
  writeFileSync(files.json, JSON.stringify(json, null, 2) + '\n');
  return files;
}
