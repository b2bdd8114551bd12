// Several replicas behind a real load balancer, on loopback: three `stepwise serve` processes behind
// HAProxy (Debian's package; least connections, active health checks on /health every 300 ms, two
// failures to go down, two passes to come back), under steady streaming load. One replica is
// killed: only the requests it had in flight fail, HAProxy stops sending to it within its health
// checks, the other replicas answer everything; restarted, the replica rejoins and takes requests.
// Started and stopped by the test itself; skipped with a note where haproxy is not installed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeModel } from '../../src/model/make-model.js';

const HAPROXY = ['/usr/sbin/haproxy', 'haproxy'].find((p) => spawnSync(p, ['-v']).status === 0);
const CHECK_MS = 300;
const FALL = 2;
const RISE = 2;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Outcome {
  start: number;
  end: number;
  server: string | null;
  ok: boolean;
  status: number;
  error?: string;
}

describe('three replicas behind HAProxy', { skip: HAPROXY ? false : 'haproxy is not installed (apt-get install haproxy; CI installs it as root)', timeout: 120_000 }, () => {
  let dir: string;
  let model: string;
  const ports: number[] = [];
  const replicas: Array<ChildProcess | undefined> = [];
  let haproxy: ChildProcess | undefined;
  let front = 0;
  let stats = 0;

  async function startReplica(i: number): Promise<void> {
    const p = spawn(process.execPath, ['bin/stepwise.js', 'serve', '--model', model, '--port', String(ports[i]), '--max-num-seqs', '4', '--drain-timeout', '1', '--threads', '1'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    replicas[i] = p;
    let err = '';
    p.stderr!.on('data', (d) => (err += String(d)));
    const deadline = Date.now() + 30_000;
    while (!err.includes('serving')) {
      if (Date.now() > deadline || p.exitCode !== null) throw new Error(`replica ${i} did not start: ${err}`);
      await sleep(50);
    }
  }

  /** Each server's status as HAProxy's stats page reports it (UP, DOWN, UP 1/2...). */
  async function serverStates(): Promise<Record<string, string>> {
    const csv = await (await fetch(`http://127.0.0.1:${stats}/stats;csv`)).text();
    const out: Record<string, string> = {};
    for (const line of csv.split('\n')) {
      const f = line.split(',');
      if (f[0] === 'stepwise' && f[1]!.startsWith('r')) out[f[1]!] = f[17]!;
    }
    return out;
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stepwise-replicas-'));
    model = join(dir, 'tiny.gguf');
    await makeModel({ preset: 'tiny', dtype: 'f32', seed: 1, out: model });
    for (let i = 0; i < 3; i++) ports.push(await freePort());
    front = await freePort();
    stats = await freePort();
    await Promise.all([0, 1, 2].map((i) => startReplica(i)));
    const cfg = [
      'global',
      '  maxconn 256',
      'defaults',
      '  mode http',
      '  timeout connect 1s',
      '  timeout client 30s',
      '  timeout server 30s',
      // A connection refused (a dead replica not yet marked down) is retried on another server.
      '  retries 2',
      '  option redispatch',
      'frontend api',
      `  bind 127.0.0.1:${front}`,
      '  default_backend stepwise',
      'frontend stats',
      `  bind 127.0.0.1:${stats}`,
      '  stats enable',
      '  stats uri /stats',
      'backend stepwise',
      '  balance leastconn',
      '  option httpchk GET /health',
      '  http-check expect status 200',
      '  http-response set-header x-served-by %s',
      ...ports.map((p, i) => `  server r${i} 127.0.0.1:${p} check inter ${CHECK_MS} fall ${FALL} rise ${RISE}`),
    ].join('\n');
    writeFileSync(join(dir, 'haproxy.cfg'), cfg + '\n');
    haproxy = spawn(HAPROXY!, ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'ignore', 'pipe'] });
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        const s = await serverStates();
        if (Object.values(s).filter((x) => x === 'UP').length === 3) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error('HAProxy did not see three healthy replicas');
      await sleep(100);
    }
  });

  after(async () => {
    haproxy?.kill('SIGKILL');
    for (const r of replicas) r?.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * One streamed completion through the balancer, on a connection of its own (so a keep-alive
   * connection the balancer closed between requests is never mistaken for a failure): which replica
   * answered, and whether the stream ended with [DONE].
   */
  function request(): Promise<Outcome> {
    const start = performance.now();
    const body = JSON.stringify({ prompt: 'Once upon a time', max_tokens: 120, ignore_eos: true, stream: true });
    return new Promise((resolve) => {
      const done = (o: Omit<Outcome, 'start' | 'end'>) => resolve({ start, end: performance.now(), ...o });
      const req = httpRequest(
        { host: '127.0.0.1', port: front, path: '/v1/completions', method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (res) => {
          const server = (res.headers['x-served-by'] as string | undefined) ?? null;
          let text = '';
          res.on('data', (d) => (text += String(d)));
          res.on('end', () => done({ server, status: res.statusCode ?? 0, ok: res.statusCode === 200 && text.trimEnd().endsWith('data: [DONE]') }));
          res.on('error', (e) => done({ server, status: res.statusCode ?? 0, ok: false, error: e.message }));
        },
      );
      req.on('error', (e) => done({ server: null, status: 0, ok: false, error: e.message }));
      req.end(body);
    });
  }

  it('loses only the killed replica in-flight requests, routes around it, and takes it back', async (t) => {
    const outcomes: Outcome[] = [];
    let running = true;
    const workers = Array.from({ length: 8 }, async () => {
      while (running) outcomes.push(await request());
    });
    await sleep(1500);
    const killAt = performance.now();
    replicas[1]!.kill('SIGKILL');
    let downAt = 0;
    while (!downAt) {
      if ((await serverStates()).r1?.startsWith('DOWN')) downAt = performance.now();
      else await sleep(20);
      assert.ok(performance.now() - killAt < 10_000, 'HAProxy marks the killed replica down');
    }
    await sleep(1500);
    const restartAt = performance.now();
    await startReplica(1);
    let upAt = 0;
    while (!upAt) {
      if ((await serverStates()).r1 === 'UP') upAt = performance.now();
      else await sleep(20);
      assert.ok(performance.now() - restartAt < 20_000, 'the restarted replica comes back up');
    }
    await sleep(2000);
    running = false;
    await Promise.all(workers);

    t.diagnostic(`${outcomes.length} requests, ${outcomes.filter((o) => !o.ok).length} failed (in flight on the killed replica); marked down ${(downAt - killAt).toFixed(0)} ms after the kill, back up ${(upAt - restartAt).toFixed(0)} ms after its restart began`);
    // Down within its health checks: FALL failed checks, one interval apart, plus one interval of phase.
    assert.ok(downAt - killAt <= (FALL + 1) * CHECK_MS + 400, `marked down ${(downAt - killAt).toFixed(0)} ms after the kill`);
    const failed = outcomes.filter((o) => !o.ok);
    for (const f of failed) {
      // In flight on the killed replica: running when it died, or handed to it (its kernel still
      // accepts connections for the moments SIGKILL takes) before the checks marked it down.
      assert.ok(f.start < downAt && f.end >= killAt, `a failure outside the kill: ${JSON.stringify(f)}`);
      assert.ok(f.server === null || f.server === 'r1', `a failure on a healthy replica: ${JSON.stringify(f)}`);
    }
    assert.ok(failed.length <= 8, `${failed.length} failures: at most the killed replica's share of the 8 clients`);
    assert.ok(outcomes.filter((o) => o.server !== 'r1').every((o) => o.ok || o.server === null), 'the other replicas answer everything');
    assert.equal(outcomes.filter((o) => o.start > downAt && o.end < restartAt && o.server === 'r1').length, 0, 'nothing is sent to a replica marked down');
    assert.ok(outcomes.some((o) => o.start > upAt && o.server === 'r1' && o.ok), 'the restarted replica takes requests again');
    assert.ok(outcomes.filter((o) => o.ok).length > 30, `${outcomes.length} requests`);
  });
});
