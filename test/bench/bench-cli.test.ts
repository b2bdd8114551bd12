import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeModel } from '../../src/model/make-model.js';
import { runBench } from '../../src/cli/bench.js';
import { UsageError } from '../../src/cli/usage-error.js';

let dir: string;
let model: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'stepwise-bench-cli-'));
  model = join(dir, 'tiny.gguf');
  await makeModel({ preset: 'tiny', dtype: 'f32', seed: 1, out: model });
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the command with its report captured (not process.stdout: the test runner reports there). */
async function bench(args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runBench(args, { write: (s: string) => (out += s) });
  return { code, out };
}

test('bench --compare none,static,continuous on a real model: the table, the timelines, the report files and results.json', async () => {
  const out = join(dir, 'report');
  const json = join(dir, 'elsewhere', 'r.json');
  const r = await bench([
    '--model', model, '--workload', 'synthetic', '--prompt-dist', 'uniform:4,16', '--output-dist', 'uniform:2,12', '--num-requests', '8', '--seed', '3',
    '--compare', 'none,static,continuous', '--max-num-seqs', '4', '--threads', '1', '--backend', 'typescript', '--timeline',
    '--out', out, '--json', json, '--no-progress',
  ]);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /strategy\s+seed tok\/s \(GPU\)\s+ours tok\/s/);
  assert.match(r.out, /continuous \/ static\s+\d+\.\d\dx/);
  assert.match(r.out, /continuous \/ none\s+\d+\.\d\dx/);
  // The ASCII timelines: static holds finished rows ('='), continuous never does.
  const staticPart = r.out.slice(r.out.indexOf('Request timeline: static (batch 4)'), r.out.indexOf('Request timeline: continuous'));
  const contPart = r.out.slice(r.out.indexOf('Request timeline: continuous'), r.out.indexOf('Stepwise bench:'));
  assert.ok(staticPart.length > 0 && contPart.length > 0);
  assert.match(staticPart, /req 0 \|[#=]*=/);
  assert.doesNotMatch(contPart.split('\n').slice(2).join('\n'), /=/);
  for (const f of ['report.html', 'report.md', 'results.json', 'charts/timeline-static.svg', 'charts/timeline-continuous.svg']) assert.ok(existsSync(join(out, f)), f);
  const res = JSON.parse(readFileSync(json, 'utf8'));
  assert.deepEqual(res, JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')));
  assert.equal(res.workload.numRequests, 8);
  assert.deepEqual(res.policies.map((p: { policy: string }) => p.policy), ['none', 'static', 'continuous']);
  for (const p of res.policies) {
    assert.equal(p.completed, 8);
    assert.equal(p.failed, 0);
    assert.equal(p.total_output_tokens, res.workload.outputTokens, `${p.policy}: exactly the workload's output lengths`);
    assert.ok(p.output_throughput > 0);
    assert.ok(p.slot_utilization_overall > 0 && p.slot_utilization_overall <= 1);
    assert.ok(p.compute_utilization > 0 && p.compute_utilization < 1.5);
    assert.ok(p.ttft_ms.p50 <= p.e2e_ms.p50);
  }
  const [none, stat, cont] = res.policies;
  assert.equal(none.slot_utilization_overall, 1, 'one slot, always busy');
  assert.equal(none.slot_capacity, 1);
  assert.equal(stat.slot_capacity, 4);
  assert.equal(cont.slot_capacity, 4);
  // Continuous refills a slot as soon as one frees up: while requests wait, every slot works.
  assert.equal(cont.slot_utilization, 1);
  assert.ok(stat.slot_utilization < 1, 'static wastes slots on finished rows while requests wait');
  assert.ok(cont.num_steps < none.num_steps);
  assert.equal(typeof res.ratios.continuous_over_static, 'number');
  assert.equal(res.ratios.continuous_over_none, cont.output_throughput / none.output_throughput);
});

test('--peer-only runs the workload through llama.cpp on the same GGUF', async () => {
  const json = join(dir, 'peer.json');
  const r = await bench(['--model', model, '--workload', 'fixed', '--num-requests', '3', '--input-len', '4', '--output-len', '5', '--peer-only', '--max-num-seqs', '2', '--threads', '1', '--json', json, '--no-progress']);
  assert.equal(r.code, 0, r.out);
  const res = JSON.parse(readFileSync(json, 'utf8'));
  assert.deepEqual(res.policies, []);
  assert.equal(res.peer.policy, 'llama.cpp');
  assert.equal(res.peer.label, 'llama.cpp (2 seqs)');
  assert.equal(res.peer.completed, 3);
  assert.equal(res.peer.total_output_tokens, 15, 'exactly the output length, EOS or not');
  assert.match(res.peer.version, /^node-llama-cpp 3\.21\.1 \(llama\.cpp /);
});

test('bad flags are usage errors that name the flag', async () => {
  const cases: Array<[string[], RegExp]> = [
    [[], /give --model FILE .* or --url URL/],
    [['--model', '/nonexistent/m.gguf'], /model file not found: \/nonexistent\/m\.gguf/],
    [['--model', 'M', '--compare', 'none,fast'], /--compare takes a comma-separated list of none, static, continuous, got 'none,fast'/],
    [['--model', 'M', '--compare', 'none,none'], /lists a policy twice/],
    [['--model', 'M', '--policy', 'static', '--compare', 'none'], /either --policy or --compare/],
    [['--model', 'M', '--workload', 'fixed'], /--workload fixed needs --input-len N and --output-len N/],
    [['--model', 'M', '--workload', 'bogus'], /--workload must be one of standard, nano, fixed, synthetic, sharegpt/],
    [['--model', 'M', '--input-len', '4'], /--input-len\/--output-len belong to --workload fixed/],
    [['--model', 'M', '--workload', 'sharegpt'], /needs --dataset FILE/],
    [['--model', 'M', '--prompt-dist', 'uniform:9'], /--prompt-dist: uniform takes min,max/],
    [['--model', 'M', '--qps', '0'], /--qps must be a positive number, got '0'/],
    [['--model', 'M', '--arrival', 'poisson'], /--arrival poisson needs --qps X/],
    [['--model', 'M', '--arrival', 'sometimes'], /--arrival must be offline, poisson or burst/],
    [['--model', 'M', '--num-requests', 'many'], /--num-requests must be an integer, got 'many'/],
    [['--model', 'M', '--max-num-seqs', '0'], /--max-num-seqs must be at least 1/],
    [['--model', 'M', '--peer', 'vllm'], /--peer must be llama\.cpp, got 'vllm'/],
    [['--url', 'http://127.0.0.1:1', '--compare', 'none'], /cannot be combined with --url/],
  ];
  for (const [args, re] of cases) {
    const a = args.map((x) => (x === 'M' ? model : x));
    await assert.rejects(bench([...a, '--no-progress']), (e: Error) => e instanceof UsageError && re.test(e.message), args.join(' '));
  }
  await assert.rejects(bench(['--model', model, '--bogus']), /Unknown option '--bogus'/);
});
