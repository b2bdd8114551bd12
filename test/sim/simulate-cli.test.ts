// `stepwise simulate`: the seed's comparison at GPU scale, results.json and the report, profile files,
// and usage mistakes reported by name.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simulateCommand } from './simulate-command.js';
import { UsageError } from '../../src/cli/usage-error.js';
import { HARDWARE, MODELS, ProfileError } from '../../src/sim/profiles.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'stepwise-simulate-cli-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const simulate = simulateCommand;

test('Llama-2-7B on an A100: none < static < continuous, with the report files and results.json', async () => {
  const outDir = join(dir, 'report');
  const r = await simulate([
    '--hardware', 'A100-80GB', '--model', 'llama-2-7b', '--compare', 'none,static,continuous',
    '--workload', 'synthetic', '--prompt-dist', 'uniform:32,512', '--output-dist', 'lognormal:128,1,16,512', '--num-requests', '64', '--seed', '1',
    '--max-num-seqs', '64', '--static-batch-size', '32', '--out', outDir,
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /Simulated: llama-2-7b on A100-80GB/);
  assert.match(r.out, /strategy\s+seed tok\/s \(GPU\)\s+ours tok\/s/);
  assert.match(r.out, /static \(batch 32\)/);
  assert.match(r.out, /MFU\s+MBU/);
  for (const f of ['report.html', 'report.md', 'results.json', 'charts/timeline-continuous.svg']) assert.ok(existsSync(join(outDir, f)), f);
  assert.match(readFileSync(join(outDir, 'report.md'), 'utf8'), /^# Stepwise simulation\n\n> Simulated: llama-2-7b on A100-80GB/);
  const res = JSON.parse(readFileSync(join(outDir, 'results.json'), 'utf8'));
  assert.equal(res.tool, 'stepwise simulate');
  assert.equal(res.simulation.hardware, 'A100-80GB');
  assert.deepEqual(res.policies.map((p: { policy: string }) => p.policy), ['none', 'static', 'continuous']);
  const [none, stat, cont] = res.policies;
  for (const p of res.policies) {
    assert.equal(p.completed, 64);
    assert.equal(p.total_output_tokens, res.workload.outputTokens);
  }
  assert.ok(none.output_throughput < stat.output_throughput && stat.output_throughput < cont.output_throughput, 'batching pays, continuous most');
  // Batch-1 decoding of a 7B fp16 model is bandwidth-bound: ~13.5 GB per token over ~1.6 TB/s.
  assert.ok(none.output_throughput > 50 && none.output_throughput < 120, `no batching: ${none.output_throughput} tok/s`);
  assert.ok(res.ratios.continuous_over_static > 1.5);
});

test('a calibrated profile file supplies hardware and model; --hardware cpu needs it', async () => {
  const file = join(dir, 'cpu.json');
  const hardware = { ...HARDWARE['A100-80GB'], bandwidthGBs: 10, peakTflops: 0.05, bandwidthEfficiency: 1, computeEfficiency: 1, attentionGflops: 5, kvCacheGB: 0.5 };
  writeFileSync(file, JSON.stringify({ kind: 'stepwise-profile', version: 1, name: 'cpu', hardware, model: MODELS['110m'], modelName: 'm110.gguf' }));
  const json = join(dir, 'cpu-results.json');
  const r = await simulate(['--hardware', 'cpu', '--profile', file, '--workload', 'fixed', '--input-len', '32', '--output-len', '8', '--num-requests', '4', '--json', json]);
  assert.equal(r.code, 0, r.err);
  const res = JSON.parse(readFileSync(json, 'utf8'));
  assert.equal(res.simulation.hardware, 'cpu');
  assert.equal(res.simulation.model, 'm110.gguf');
  assert.equal(res.policies[0].completed, 4);
  assert.equal((await simulate(['--hardware-file', file, '--workload', 'fixed', '--input-len', '8', '--output-len', '2'])).code, 0);
  await assert.rejects(simulate(['--hardware', 'cpu', '--model', '110m']), (e: unknown) => e instanceof UsageError && /--hardware cpu needs --profile FILE/.test((e as Error).message));
});

test('mistakes are reported by name', async () => {
  const usage = (args: string[], re: RegExp) => assert.rejects(simulate(args), (e: unknown) => e instanceof UsageError && re.test((e as Error).message));
  await usage(['--model', 'llama-2-7b'], /--hardware NAME is required/);
  await usage(['--hardware', 'H200'], /--model NAME is required/);
  await usage(['--hardware', 'H200', '--model', '110m', '--compare', 'none,batched'], /--compare takes a comma-separated list/);
  await usage(['--hardware', 'H200', '--model', '110m', '--threads', '2'], /--threads does not apply to a simulation/);
  await usage(['--hardware', 'H200', '--model', '110m', '--weight-bytes=-1'], /--weight-bytes must be a positive number/);
  await usage(['--hardware', 'H200', '--model', '110m', '--workload', 'sharegpt', '--dataset', 'x.json'], /needs a tokenizer/);
  await assert.rejects(simulate(['--hardware', 'TPU', '--model', '110m']), (e: unknown) => e instanceof ProfileError && /unknown hardware 'TPU'/.test((e as Error).message));
  await assert.rejects(simulate(['--hardware', 'H200', '--model', 'gpt-5']), /unknown model 'gpt-5'/);
  const list = await simulate(['--list']);
  assert.match(list.out, /A100-80GB[\s\S]*llama-3-8b\s+8\.03B params/);
});

test('requests the engine would refuse (queue full) are counted as failed, with a non-zero exit', async () => {
  const json = join(dir, 'queue.json');
  const r = await simulate(['--hardware', 'H200', '--model', '110m', '--workload', 'fixed', '--input-len', '16', '--output-len', '4', '--num-requests', '5', '--max-queue', '2', '--json', json]);
  assert.equal(r.code, 1);
  assert.match(r.err, /3 requests refused, first: continuous: request 2: request queue is full/);
  const p = JSON.parse(readFileSync(json, 'utf8')).policies[0];
  assert.equal(p.completed, 2);
  assert.equal(p.failed, 3);
  // A KV cache too small for one full context is refused up front.
  await assert.rejects(simulate(['--hardware', 'H200', '--model', '110m', '--num-blocks', '2']), /cannot hold one 1024-token context/);
});
