// `stepwise simulate --replicas N`: the fleet's tables and results.json, --replicas 1 as the lone
// engine it always was, and usage mistakes as one line naming the flag.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simulateCommand } from './simulate-command.js';
import { UsageError } from '../../src/cli/usage-error.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'stepwise-simulate-fleet-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const simulate = simulateCommand;

const SMALL = ['--hardware', 'H100-SXM', '--model', 'llama-3-8b', '--workload', 'synthetic', '--prompt-dist', 'uniform:16,128', '--output-dist', 'uniform:8,64', '--num-requests', '96', '--qps', '40', '--seed', '2'];

test('a fleet under several routers: the router and balance tables, goodput, results.json and the report', async () => {
  const outDir = join(dir, 'fleet');
  const r = await simulate([...SMALL, '--replicas', '4', '--shared-prefix-len', '256', '--num-prefix-groups', '4', '--compare-routers', 'round-robin,least-queue,kv-usage,prefix-affinity', '--slo-ttft-ms', '200', '--slo-tpot-ms', '40', '--per-replica', '--out', outDir]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /fleet: 4 replicas of that engine/);
  assert.match(r.out, /router\s+req\/s\s+output tok\/s\s+goodput req\/s \(TTFT <= 200 ms, TPOT <= 40 ms\)/);
  assert.match(r.out, /requests per replica/);
  assert.match(r.out, /^prefix-affinity\s+3\s+/m, 'the per-replica table lists replica 3');
  for (const name of ['round-robin', 'least-queue', 'kv-usage', 'prefix-affinity']) assert.match(r.err, new RegExp(`simulate: ${name} x4: 96 requests`));
  for (const f of ['report.html', 'report.md', 'results.json', 'charts/throughput.svg']) assert.ok(existsSync(join(outDir, f)), f);
  assert.match(readFileSync(join(outDir, 'report.md'), 'utf8'), /^# Stepwise fleet simulation\n/);
  const res = JSON.parse(readFileSync(join(outDir, 'results.json'), 'utf8'));
  assert.equal(res.tool, 'stepwise simulate');
  assert.equal(res.engine.replicas, 4);
  assert.deepEqual(res.workload.sharedPrefix, { length: 256, groups: 4 });
  assert.deepEqual(res.fleet.slo, { ttft_ms: 200, tpot_ms: 40 });
  assert.deepEqual(res.fleet.runs.map((x: { router: string }) => x.router), ['round-robin', 'least-queue', 'kv-usage', 'prefix-affinity']);
  for (const [i, run] of res.fleet.runs.entries()) {
    assert.equal(run.per_replica.length, 4);
    const requests = run.per_replica.reduce((a: number, y: { requests: number }) => a + y.requests, 0);
    const tokens = run.per_replica.reduce((a: number, y: { output_tokens: number }) => a + y.output_tokens, 0);
    assert.equal(requests, 96);
    assert.equal(tokens, res.workload.outputTokens);
    assert.equal(res.policies[i].completed, 96);
    assert.ok(run.goodput.good <= 96 && run.goodput.request_goodput <= res.policies[i].request_throughput + 1e-9);
    assert.ok(run.prefix_hit_rate > 0 && run.prefix_hit_rate < 1);
  }
  // Round-robin: 96 requests over 4 replicas, 24 each.
  assert.ok(res.fleet.runs[0].per_replica.every((y: { requests: number }) => y.requests === 24));
  assert.equal(res.fleet.runs[0].requests_max_over_mean, 1);
});

test('--replicas 1 is the lone engine: the same results as without it', async () => {
  const a = join(dir, 'one.json');
  const b = join(dir, 'plain.json');
  assert.equal((await simulate([...SMALL, '--replicas', '1', '--json', a])).code, 0);
  assert.equal((await simulate([...SMALL, '--json', b])).code, 0);
  // Everything but when it ran and how long the simulation took on this machine.
  const strip = (file: string) => {
    const j = JSON.parse(readFileSync(file, 'utf8'));
    delete j.started_at;
    delete j.wall_s;
    for (const x of j.simulation.runs) delete x.wall_ms;
    return j;
  };
  assert.deepEqual(strip(a), strip(b));
  assert.equal(strip(a).fleet, undefined);
});

test('an SLO on a lone engine adds a goodput table and block', async () => {
  const json = join(dir, 'slo.json');
  const r = await simulate([...SMALL, '--slo-ttft-ms', '100', '--json', json]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /run \(TTFT <= 100 ms\)\s+met the SLO\s+share\s+goodput req\/s/);
  const g = JSON.parse(readFileSync(json, 'utf8')).goodput;
  assert.deepEqual(g.slo, { ttft_ms: 100, tpot_ms: null });
  assert.equal(g.runs.length, 1);
});

test('fleet mistakes are reported by name', async () => {
  const usage = (args: string[], re: RegExp) => assert.rejects(simulate([...SMALL, ...args]), (e: unknown) => e instanceof UsageError && re.test((e as Error).message), re.source);
  await usage(['--replicas', '0'], /--replicas must be at least 1, got 0/);
  await usage(['--replicas', 'two'], /--replicas must be an integer, got 'two'/);
  await usage(['--replicas', '4', '--router', 'random'], /--router must name routers among round-robin, least-queue, kv-usage, prefix-affinity, got 'random'/);
  await usage(['--replicas', '4', '--compare-routers', 'round-robin,fastest'], /--compare-routers must name routers among .* got 'fastest'/);
  await usage(['--replicas', '4', '--compare-routers', 'round-robin,round-robin'], /names a router twice/);
  await usage(['--replicas', '4', '--router', 'least-queue', '--compare-routers', 'round-robin'], /either --router or --compare-routers/);
  await usage(['--router', 'least-queue'], /--router routes requests among replicas: give --replicas N with N >= 2/);
  await usage(['--replicas', '1', '--compare-routers', 'round-robin,least-queue'], /--compare-routers routes requests among replicas/);
  await usage(['--replicas', '4', '--compare', 'static,continuous'], /--compare compares batching policies on one engine/);
  await usage(['--replicas', '4', '--timeline'], /--timeline draws one engine's steps/);
  await usage(['--replicas', '4', '--affinity-max-imbalance', '8'], /applies to the prefix-affinity router/);
  await usage(['--replicas', '4', '--router', 'prefix-affinity', '--affinity-max-imbalance=-1'], /--affinity-max-imbalance must be at least 0/);
  await usage(['--per-replica'], /--per-replica lists the replicas of a fleet/);
  await usage(['--slo-ttft-ms', '0'], /--slo-ttft-ms must be a positive number/);
  await usage(['--num-prefix-groups', '4'], /--num-prefix-groups needs --shared-prefix-len N/);
  await usage(['--shared-prefix-len', '0'], /--shared-prefix-len must be at least 1/);
});

test('through the command line: one line on stderr and exit status 2', () => {
  const entry = join(import.meta.dirname, '..', 'cli', 'cli-entry.ts');
  const r = spawnSync(process.execPath, ['--import', 'tsx', entry, 'simulate', '--hardware', 'H100-SXM', '--model', 'llama-3-8b', '--replicas', '0'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.equal(r.stderr, 'stepwise: --replicas must be at least 1, got 0\n');
  const u = spawnSync(process.execPath, ['--import', 'tsx', entry, 'simulate', '--hardware', 'H100-SXM', '--model', 'llama-3-8b', '--replicas', '8', '--router', 'random'], { encoding: 'utf8' });
  assert.equal(u.status, 2);
  assert.equal(u.stderr.trim().split('\n').length, 1);
  assert.match(u.stderr, /--router must name routers among/);
});
