// Online overload benchmark for `stepwise serve`: measures the server's capacity, then offers twice
// that (Poisson arrivals, streaming requests) for 60 s and checks how it fails: no 5xx, bounded
// memory, excess load shed with 429 (a bounded --max-queue), and every accepted request completed.
//
//   npx tsx bench/overload.ts [--model FILE] [--duration 60] [--factor 2] [--max-tokens 32]
//                             [--max-num-seqs 16] [--max-queue 32] [--threads N] [--json FILE]
//
// Without --model a 'tiny' preset model is generated in a temp dir. The server runs in its own
// process (as `stepwise serve` would), so its memory can be sampled from /proc and the load
// generator's work does not share its event loop.
import { parseArgs } from 'node:util';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { makeModel } from '../src/model/make-model.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    duration: { type: 'string', default: '60' },
    factor: { type: 'string', default: '2' },
    'capacity-seconds': { type: 'string', default: '10' },
    'max-tokens': { type: 'string', default: '32' },
    'max-num-seqs': { type: 'string', default: '16' },
    'max-queue': { type: 'string', default: '32' },
    threads: { type: 'string' },
    json: { type: 'string' },
  },
});
const DURATION_S = Number(values.duration);
const FACTOR = Number(values.factor);
const CAPACITY_S = Number(values['capacity-seconds']);
const MAX_TOKENS = Number(values['max-tokens']);
const MAX_NUM_SEQS = Number(values['max-num-seqs']);
const MAX_QUEUE = Number(values['max-queue']);
for (const [k, v] of Object.entries({ DURATION_S, FACTOR, CAPACITY_S, MAX_TOKENS, MAX_NUM_SEQS, MAX_QUEUE })) {
  if (!(v > 0)) throw new Error(`bad value for ${k}: ${v}`);
}

const PROMPTS = [
  'Once upon a time there was a little',
  'The quick brown fox jumps over the lazy dog while',
  'In the beginning the sky was dark and',
  'She opened the door and saw',
  'Tom and Lily went to the park to play with their',
];

interface Outcome {
  status: number | 'error';
  /** Streamed to the end: a finish_reason and `data: [DONE]` were seen. */
  complete: boolean;
  ttftMs?: number;
  e2eMs: number;
  error?: string;
}

const agent = new Agent({ keepAlive: true, maxSockets: 1024 });

/** One streaming completion; resolves with how it went (never rejects). */
function streamCompletion(port: number, i: number): Promise<Outcome> {
  const t0 = performance.now();
  const body = JSON.stringify({ prompt: PROMPTS[i % PROMPTS.length], max_tokens: MAX_TOKENS, temperature: 0.8, seed: i, ignore_eos: true, stream: true });
  return new Promise((resolveOutcome) => {
    const req = request({ host: '127.0.0.1', port, path: '/v1/completions', method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      let buf = '';
      let ttftMs: number | undefined;
      let finished = false;
      let done = false;
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (ttftMs === undefined && res.statusCode === 200 && d.includes('"text"')) ttftMs = performance.now() - t0;
        buf += d;
        // Keep only the tail: enough to find the markers, without holding whole streams in memory.
        if (!finished && /"finish_reason":"(length|stop)"/.test(buf)) finished = true;
        if (buf.includes('data: [DONE]')) done = true;
        if (buf.length > 4096) buf = buf.slice(-512);
      });
      res.on('end', () => resolveOutcome({ status: res.statusCode ?? 0, complete: res.statusCode === 200 && finished && done, ttftMs, e2eMs: performance.now() - t0 }));
      res.on('error', (e) => resolveOutcome({ status: 'error', complete: false, e2eMs: performance.now() - t0, error: e.message }));
    });
    req.on('error', (e) => resolveOutcome({ status: 'error', complete: false, e2eMs: performance.now() - t0, error: e.message }));
    req.end(body);
  });
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function get(port: number, path: string): Promise<{ status: number; text: string; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  const text = await res.text();
  return { status: res.status, text, ms: performance.now() - t0 };
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name.replace(/[:]/g, '\\:')}\\{[^}]*\\} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

async function startServer(modelPath: string): Promise<{ child: ChildProcess; port: number }> {
  const main = resolve('src/cli/main.ts');
  const args = ['serve', '--model', modelPath, '--port', '0', '--max-num-seqs', String(MAX_NUM_SEQS), '--max-queue', String(MAX_QUEUE)];
  if (values.threads) args.push('--threads', values.threads);
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', `const m = await import(${JSON.stringify(main)}); process.exitCode = await m.main(process.argv.slice(1));`, ...args],
    { stdio: ['ignore', 'inherit', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  const port = await new Promise<number>((ok, fail) => {
    child.stderr!.on('data', (d: string) => {
      stderr += d;
      process.stderr.write(d);
      const m = /serving \S+ on http:\/\/[^:]+:(\d+)/.exec(stderr);
      if (m) ok(Number(m[1]));
    });
    child.on('exit', (code) => fail(new Error(`server exited (${code}) before listening`)));
  });
  return { child, port };
}

async function main(): Promise<void> {
  let tmp: string | undefined;
  let modelPath = values.model;
  if (!modelPath) {
    tmp = mkdtempSync(join(tmpdir(), 'stepwise-overload-'));
    modelPath = join(tmp, 'tiny.gguf');
    await makeModel({ preset: 'tiny', dtype: 'f32', seed: 1, out: modelPath });
  }
  const { child, port } = await startServer(modelPath);
  const pid = child.pid!;
  try {
    // 1. Capacity: closed loop, one client per sequence slot, for CAPACITY_S seconds.
    console.error(`measuring capacity for ${CAPACITY_S} s with ${MAX_NUM_SEQS} closed-loop clients...`);
    let capDone = 0;
    const capEnd = performance.now() + CAPACITY_S * 1000;
    await Promise.all(
      Array.from({ length: MAX_NUM_SEQS }, async (_, c) => {
        for (let i = 0; performance.now() < capEnd; i++) {
          const o = await streamCompletion(port, c * 100_000 + i);
          if (o.complete) capDone++;
        }
      }),
    );
    const capacity = capDone / CAPACITY_S;
    const rate = capacity * FACTOR;
    console.error(`capacity ${capacity.toFixed(2)} req/s; offering ${rate.toFixed(2)} req/s (x${FACTOR}) for ${DURATION_S} s...`);

    // 2. Overload: Poisson arrivals at FACTOR x capacity.
    const outcomes: Promise<Outcome>[] = [];
    const rss: number[] = [];
    const waiting: number[] = [];
    const health: number[] = [];
    const healthBad: number[] = [];
    const sampler = setInterval(() => {
      rss.push(rssBytes(pid));
      void get(port, '/metrics').then((m) => waiting.push(metric(m.text, 'vllm:num_requests_waiting')), () => {});
    }, 1000);
    const prober = setInterval(() => {
      void get(port, '/health').then((h) => (h.status === 200 ? health.push(h.ms) : healthBad.push(h.status)), () => healthBad.push(-1));
    }, 100);
    const t0 = performance.now();
    let next = t0;
    let i = 0;
    // A seeded exponential gap generator, so runs are comparable.
    let state = 12345;
    const uniform = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) + 0.5) / 2 ** 32;
    while (performance.now() - t0 < DURATION_S * 1000) {
      next += (-Math.log(uniform()) / rate) * 1000;
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      outcomes.push(streamCompletion(port, 1_000_000 + i++));
    }
    const offeredS = (performance.now() - t0) / 1000;
    console.error(`arrivals stopped after ${offeredS.toFixed(1)} s (${outcomes.length} requests); waiting for accepted ones to finish...`);
    const results = await Promise.all(outcomes);
    clearInterval(sampler);
    clearInterval(prober);
    rss.push(rssBytes(pid));

    const accepted = results.filter((r) => r.status === 200);
    const report = {
      model: modelPath,
      maxNumSeqs: MAX_NUM_SEQS,
      maxQueue: MAX_QUEUE,
      maxTokens: MAX_TOKENS,
      capacityReqPerS: +capacity.toFixed(3),
      offeredReqPerS: +rate.toFixed(3),
      durationS: +offeredS.toFixed(1),
      requests: results.length,
      accepted: accepted.length,
      acceptedCompleted: accepted.filter((r) => r.complete).length,
      rejected429: results.filter((r) => r.status === 429).length,
      status5xx: results.filter((r) => typeof r.status === 'number' && r.status >= 500).length,
      otherStatus: results.filter((r) => typeof r.status === 'number' && r.status !== 200 && r.status !== 429 && r.status < 500).length,
      connectionErrors: results.filter((r) => r.status === 'error').length,
      goodputReqPerS: +(accepted.filter((r) => r.complete).length / offeredS).toFixed(3),
      ttftMs: { p50: +pct(accepted.flatMap((r) => (r.ttftMs === undefined ? [] : [r.ttftMs])), 0.5).toFixed(1), p99: +pct(accepted.flatMap((r) => (r.ttftMs === undefined ? [] : [r.ttftMs])), 0.99).toFixed(1) },
      e2eMs: { p50: +pct(accepted.map((r) => r.e2eMs), 0.5).toFixed(1), p99: +pct(accepted.map((r) => r.e2eMs), 0.99).toFixed(1) },
      rejectLatencyMs: { p50: +pct(results.filter((r) => r.status === 429).map((r) => r.e2eMs), 0.5).toFixed(1) },
      serverRssMiB: {
        start: +(rss[0] / 2 ** 20).toFixed(1),
        max: +(Math.max(...rss) / 2 ** 20).toFixed(1),
        end: +(rss[rss.length - 1] / 2 ** 20).toFixed(1),
        secondHalfGrowth: +((Math.max(...rss.slice(rss.length >> 1)) - Math.max(...rss.slice(0, rss.length >> 1))) / 2 ** 20).toFixed(1),
      },
      queueMax: Math.max(...waiting.filter((x) => Number.isFinite(x))),
      healthMs: { probes: health.length, p50: +pct(health, 0.5).toFixed(2), p99: +pct(health, 0.99).toFixed(2), max: +Math.max(...health).toFixed(2), non200: healthBad.length },
    };
    console.log(JSON.stringify(report, null, 2));
    if (values.json) writeFileSync(values.json, JSON.stringify(report, null, 2) + '\n');
    const ok = report.status5xx === 0 && report.acceptedCompleted === report.accepted && report.connectionErrors === 0;
    console.error(ok ? 'PASS: no 5xx, every accepted request completed' : 'FAIL: see the report above');
    process.exitCode = ok ? 0 : 1;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    agent.destroy();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
