import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderCharts, writeReport } from '../../src/runs/report.js';
import { ratios } from '../../src/runs/results.js';
import { comparisonTable, ratioTable } from '../../src/runs/tables.js';
import { fakeResults } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';

// Just enough of the DOM's types for the page.evaluate callbacks (the project compiles without lib "dom").
interface DomNode {
  id: string;
  querySelectorAll(selector: string): DomNode[] & { length: number };
  getAttribute(name: string): string | null;
}
type PageGlobal = { document: DomNode };

test('the fabricated runs give the utilisation the definitions say', () => {
  const r = fakeResults();
  const [none, stat, cont] = r.runs;
  assert.equal(none.slot!.overall, 1);
  // Static: batches of lengths (2,3,4) and (2,3,4): 3+3+2+1 = 9 useful of 12 slots per batch.
  assert.equal(stat.slot!.overall, 18 / 24);
  assert.equal(cont.slot!.overall, 18 / 24); // the fabricated "continuous" does not refill: same shape, no padding rows
  assert.ok(stat.timeline!.segments.some((s) => s.state === 'held'));
  assert.ok(!cont.timeline!.segments.some((s) => s.state === 'held'));
});

test('tables: our numbers beside the seed, ratios beside the claim', () => {
  const r = fakeResults();
  const table = comparisonTable(r, 'markdown').split('\n');
  assert.match(table[0], /^\| strategy \| seed tok\/s \(GPU\) \| ours tok\/s \| seed util \| slot util \(saturated\)/);
  assert.match(table[2], /^\| no batching \| 30–50 \| /);
  assert.match(table[3], /^\| static \(batch 3\) \| 500–800 \| .* \| 40–60% \|/);
  assert.match(table[4], /^\| continuous \| 1500–3000 \|/);
  assert.match(table[5], /^\| llama\.cpp \(3 seqs\) \| {2}\|/);
  const rt = ratios(r);
  assert.equal(rt.continuousOverStatic, r.runs[2].metrics.outputThroughput / r.runs[1].metrics.outputThroughput);
  assert.equal(rt.continuousOverNone, r.runs[2].metrics.outputThroughput / r.runs[0].metrics.outputThroughput);
  assert.equal(rt.stepwiseOverLlamaCpp, r.runs[2].metrics.outputThroughput / r.peer!.metrics.outputThroughput);
  assert.match(ratioTable(r, 'text'), /continuous \/ static\s+\d+\.\d\dx\s+2–4x/);
});

test('report files: HTML with inline SVG charts and no external resources, Markdown, results.json with every figure', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stepwise-report-'));
  try {
    const r = fakeResults();
    const files = await writeReport(r, dir);
    const html = readFileSync(files.html, 'utf8');
    assert.ok(!/<script/i.test(html), 'no script');
    assert.ok(!/(src|href)\s*=\s*["']?(https?:)?\/\//i.test(html), 'nothing fetched from the network');
    const md = readFileSync(files.markdown, 'utf8');
    assert.match(md, /\| strategy \| seed tok\/s/);
    for (const m of md.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)) assert.ok(existsSync(join(dir, m[1])), `${m[1]} written`);
    assert.match(md, /charts\/timeline-static\.svg/);
    assert.match(md, /charts\/timeline-continuous\.svg/);
    const json = JSON.parse(readFileSync(files.json, 'utf8'));
    assert.deepEqual(json.policies.map((p: { policy: string }) => p.policy), ['none', 'static', 'continuous']);
    for (const p of json.policies) {
      for (const k of ['output_throughput', 'slot_utilization', 'slot_utilization_overall', 'compute_utilization']) assert.equal(typeof p[k], 'number', k);
      for (const k of ['ttft_ms', 'tpot_ms', 'e2e_ms']) for (const q of ['p50', 'p90', 'p99']) assert.equal(typeof p[k][q], 'number', `${k}.${q}`);
    }
    assert.equal(json.ratios.continuous_over_static, ratios(r).continuousOverStatic);
    assert.equal(typeof json.ratios.continuous_over_none, 'number');
    assert.equal(json.peer.policy, 'llama.cpp');
    // The answer comes first: the throughput bar chart and the one-sentence conclusion precede the
    // header, the tables and every other chart.
    const at = (needle: string) => html.indexOf(needle);
    const rt2 = ratios(r);
    const sentence = `Continuous batching reached ${rt2.continuousOverStatic!.toFixed(2)}x static batching's and ${rt2.continuousOverNone!.toFixed(2)}x no batching's output throughput`;
    assert.ok(at(sentence) > 0, `the conclusion names both ratios: ${html.match(/<p class="answer"[^<]*/)?.[0]}`);
    assert.match(html, /of its slots computing while requests waited \(static: \d+%\)/);
    assert.ok(at('id="chart-throughput"') < at(sentence), 'chart, then sentence');
    assert.ok(at(sentence) < at('<dl>') && at('<dl>') < at('id="chart-utilization"'), 'before the detail and the other charts');
    assert.ok(md.indexOf('charts/throughput.svg') < md.indexOf('- **model**'), 'the Markdown report opens the same way');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the HTML report loads in headless Chromium, offline, and every chart has marks', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} not found (apt-get install chromium)` }, async () => {
  const { chromium } = await import('playwright-core');
  const dir = mkdtempSync(join(tmpdir(), 'stepwise-report-'));
  const profile = mkdtempSync(join(tmpdir(), 'stepwise-chromium-'));
  const r = fakeResults();
  const charts = await renderCharts(r);
  const files = await writeReport(r, dir);
  // A fresh profile (user data dir) per run: Playwright takes it as launchPersistentContext's argument.
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const requested: string[] = [];
    page.on('request', (req) => requested.push(req.url()));
    await page.goto(`file://${files.html}`);
    assert.deepEqual(requested.filter((u) => !u.startsWith('file://')), [], 'no network requests');
    assert.equal(await page.title(), 'Stepwise benchmark: fake.gguf');
    const marks = await page.evaluate(() =>
      Object.fromEntries([...(globalThis as unknown as PageGlobal).document.querySelectorAll('figure.chart')].map((f) => [f.id, { all: f.querySelectorAll('svg g.role-mark > *').length, rects: f.querySelectorAll('svg g.mark-rect.role-mark > path').length }])),
    );
    assert.deepEqual(Object.keys(marks), charts.map((c) => `chart-${c.id}`));
    for (const [id, m] of Object.entries(marks)) assert.ok(m.all > 0, `${id} has marks`);
    assert.equal(marks['chart-throughput'].rects, 4, 'one bar per run (3 policies + llama.cpp)');
    assert.equal(marks['chart-timeline-static'].rects, r.runs[1].timeline!.segments.length, 'one rectangle per timeline segment');
    assert.equal(marks['chart-timeline-continuous'].rects, r.runs[2].timeline!.segments.length);
    // The held (finished-but-padded) rows of static batching are drawn in their own colour.
    const fills = await page.evaluate(() => [...(globalThis as unknown as PageGlobal).document.querySelectorAll('#chart-timeline-static g.mark-rect.role-mark > path')].map((p) => p.getAttribute('fill')));
    assert.ok(fills.includes('#e76f51') && fills.includes('#2a9d8f'));
  } finally {
    await browser.close();
    rmSync(dir, { recursive: true, force: true });
    rmSync(profile, { recursive: true, force: true });
  }
});
