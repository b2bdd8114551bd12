// The live view at / loads in headless Chromium (no network beyond loopback) while requests run,
// and shows them: a running request in its table, the grid drawn, the queue and KV figures filled.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { extra, makeTinyModel, startServer, type TestServer } from './server-helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const missing = existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is missing (apt-get install chromium): skipping the browser test`;

describe('live view in headless Chromium', { skip: missing }, () => {
  let model: { path: string; cleanup: () => void };
  let s: TestServer;
  let browser: BrowserContext;
  let profile: string;

  before(async () => {
    model = await makeTinyModel();
    s = await startServer(model.path, { maxNumSeqs: 4 }, { apiKey: 'live-key' });
    profile = mkdtempSync(join(tmpdir(), 'stepwise-chromium-'));
    // A fresh profile directory (Playwright passes it as --user-data-dir).
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync',
      ],
    });
  });
  after(async () => {
    await browser?.close();
    await s?.close();
    model?.cleanup();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  it('shows running requests, the queue and KV usage while requests run', async () => {
    // Six clients on four slots, each sending long requests back to back: some run, some wait.
    let stop = false;
    const finishes: string[] = [];
    const load = Array.from({ length: 6 }, async (_, i) => {
      while (!stop) {
        const r = await s.client.completions.create(extra({ model: s.model, prompt: `Request number ${i}`, max_tokens: 150, temperature: 0 }, { ignore_eos: true }));
        finishes.push(r.choices[0].finish_reason);
      }
    });
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const outside: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(s.baseURL)) outside.push(r.url());
    });
    await page.goto(`${s.baseURL}/#key=live-key`);
    await page.waitForSelector('#requests tbody tr[data-state="running"]', { timeout: 15_000 });
    const running = await page.locator('#requests tbody tr[data-state="running"]').count();
    assert.ok(running >= 1, 'at least one request is shown running');
    // Running requests first, then the queue, then finished ones.
    const states = await page.$$eval('#requests tbody tr', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.state ?? ''));
    const rank: Record<string, number> = { running: 0, waiting: 1, finished: 2 };
    assert.deepEqual(states, [...states].sort((a, b) => rank[a]! - rank[b]!), `rows in order running, waiting, finished: ${states.join(' ')}`);
    await page.waitForFunction(() => Number(document.getElementById('running')!.textContent) >= 1, undefined, { timeout: 5000 });
    assert.match((await page.textContent('#kvtext')) ?? '', /^\d+(\.\d)?%$/);
    await page.waitForFunction(() => Number(document.getElementById('step')!.textContent) > 0, undefined, { timeout: 5000 });
    assert.equal(await page.textContent('#model'), s.llm.modelName);
    // The grid has something drawn on it.
    const painted = await page.evaluate(() => {
      const c = document.getElementById('grid') as HTMLCanvasElement;
      const data = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) n++;
      return n;
    });
    assert.ok(painted > 100, `canvas painted pixels: ${painted}`);
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(outside, [], 'the page fetches nothing beyond the server');
    await page.close();
    stop = true;
    await Promise.all(load);
    assert.ok(finishes.length >= 6 && finishes.every((f) => f === 'length'));
  });

  it('the data endpoint is behind the API key; the page says how to pass it', async () => {
    const res = await fetch(`${s.baseURL}/v1/stepwise/steps`);
    assert.equal(res.status, 401);
    const page = await browser.newPage();
    await page.goto(`${s.baseURL}/`);
    await page.waitForFunction(() => /401/.test(document.getElementById('status')!.textContent ?? ''), undefined, { timeout: 10_000 });
    assert.match((await page.textContent('#status')) ?? '', /#key=/);
    await page.close();
  });
});
