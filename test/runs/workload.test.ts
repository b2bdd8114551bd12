import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRng } from '../../src/runs/rng.js';
import { describeDistribution, parseDistribution, sampleLength } from '../../src/runs/distributions.js';
import { buildWorkload, PRESETS, workloadTotals, type WorkloadSpec } from '../../src/runs/workload.js';
import { WorkloadError } from '../../src/runs/errors.js';
import { percentile } from '../../src/runs/metrics.js';

const target = { vocabSize: 512, bosId: 1 };
const offline = { kind: 'offline' } as const;

test('the RNG is a pure function of its seed', () => {
  const a = new SeededRng(42);
  const b = new SeededRng(42);
  const xs = Array.from({ length: 100 }, () => a.next());
  assert.deepEqual(Array.from({ length: 100 }, () => b.next()), xs);
  assert.notDeepEqual(Array.from({ length: 100 }, () => new SeededRng(43).next()), xs);
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  // Moments of 20k draws: uniform mean 1/2, normal mean 0 / variance 1.
  const r = new SeededRng(1);
  let u = 0;
  let n = 0;
  let n2 = 0;
  for (let i = 0; i < 20000; i++) {
    u += r.next();
    const z = r.normal();
    n += z;
    n2 += z * z;
  }
  assert.ok(Math.abs(u / 20000 - 0.5) < 0.01);
  assert.ok(Math.abs(n / 20000) < 0.03);
  assert.ok(Math.abs(n2 / 20000 - 1) < 0.05);
  for (let i = 0; i < 1000; i++) {
    const k = r.int(3, 5);
    assert.ok(k >= 3 && k <= 5 && Number.isInteger(k));
  }
});

test('distributions parse from kind:params and round-trip', () => {
  for (const s of ['fixed:128', 'uniform:32,512', 'normal:256,64', 'normal:256,64,10,400', 'lognormal:128,1,16,1024']) {
    assert.equal(describeDistribution(parseDistribution(s, '--x')), s);
  }
  assert.deepEqual(parseDistribution('uniform: 1 , 9', '--x'), { kind: 'uniform', min: 1, max: 9 });
  const bad: Array<[string, RegExp]> = [
    ['128', /--prompt-dist: expected kind:params/],
    ['gamma:1,2', /unknown distribution 'gamma'/],
    ['uniform:5', /uniform takes min,max/],
    ['uniform:9,5', /min 9 is above max 5/],
    ['fixed:0', /length must be a positive integer/],
    ['fixed:1.5', /length must be a positive integer/],
    ['lognormal:0,1', /median must be > 0/],
    ['normal:100,-1', /std must be >= 0/],
    ['uniform:a,b', /parameters must be numbers/],
  ];
  for (const [spec, re] of bad) assert.throws(() => parseDistribution(spec, '--prompt-dist'), (e: Error) => e instanceof WorkloadError && re.test(e.message), spec);
});

test('lognormal lengths: median near the given median, clipped to the bounds', () => {
  const d = parseDistribution('lognormal:128,1.0,16,1024', '--x');
  const r = new SeededRng(5);
  const xs = Array.from({ length: 4000 }, () => sampleLength(d, r)).sort((a, b) => a - b);
  assert.ok(xs[0] >= 16 && xs[xs.length - 1] <= 1024);
  const med = percentile(xs, 50);
  assert.ok(med > 118 && med < 138, `median ${med}`);
  assert.ok(xs.filter((x) => x === 1024).length > 0, 'the long tail reaches the clip');
});

test('the same seed gives the same workload; another seed a different one', () => {
  const spec: WorkloadSpec = { kind: 'standard', seed: 7, arrival: offline };
  const a = buildWorkload(spec, target);
  assert.deepEqual(buildWorkload(spec, target), a);
  const b = buildWorkload({ ...spec, seed: 8 }, target);
  assert.notDeepEqual(b.requests.map((r) => r.outputLen), a.requests.map((r) => r.outputLen));
});

test('standard preset: 128 requests, prompts uniform 32..512, outputs lognormal 16..1024; --num-requests scales it', () => {
  const w = buildWorkload({ kind: 'standard', seed: 0, arrival: offline }, target);
  assert.equal(w.requests.length, PRESETS.standard.numRequests);
  assert.equal(w.requests.length, 128);
  for (const r of w.requests) {
    assert.ok(r.promptTokenIds.length >= 32 && r.promptTokenIds.length <= 512);
    assert.ok(r.outputLen >= 16 && r.outputLen <= 1024);
    assert.equal(r.arrivalMs, 0);
    assert.equal(r.promptTokenIds[0], 1, 'BOS leads');
    assert.ok(r.promptTokenIds.slice(1).every((t) => t >= 3 && t < 512), 'no control ids, inside the vocabulary');
  }
  assert.equal(buildWorkload({ kind: 'standard', seed: 0, numRequests: 32, arrival: offline }, target).requests.length, 32);
  const nano = buildWorkload({ kind: 'nano', seed: 0, arrival: offline }, { vocabSize: 32000 });
  assert.equal(nano.requests.length, 256);
  for (const r of nano.requests) {
    assert.ok(r.promptTokenIds.length >= 100 && r.promptTokenIds.length <= 1024);
    assert.ok(r.outputLen >= 100 && r.outputLen <= 1024);
  }
});

test('fixed workload: exact lengths', () => {
  const w = buildWorkload({ kind: 'fixed', seed: 0, numRequests: 5, inputLen: 16, outputLen: 128, arrival: offline }, target);
  assert.equal(w.requests.length, 5);
  assert.ok(w.requests.every((r) => r.promptTokenIds.length === 16 && r.outputLen === 128));
  assert.deepEqual(workloadTotals(w), { promptTokens: 80, outputTokens: 640 });
  assert.throws(() => buildWorkload({ kind: 'fixed', seed: 0, arrival: offline }, target), /needs --input-len and --output-len/);
  assert.throws(() => buildWorkload({ kind: 'fixed', seed: 0, inputLen: 0, outputLen: 3, arrival: offline }, target), /--input-len: length must be a positive integer/);
  assert.throws(() => buildWorkload({ kind: 'synthetic', seed: 0, arrival: offline }, target), /needs --prompt-dist and --output-dist/);
  assert.throws(() => buildWorkload({ kind: 'standard', seed: 0, numRequests: 0, arrival: offline }, target), /positive integer/);
});

test('arrivals: Poisson gaps average 1/qps, bursts land together, and lengths do not depend on the arrival process', () => {
  const base: WorkloadSpec = { kind: 'standard', seed: 3, numRequests: 2000, arrival: offline };
  const p = buildWorkload({ ...base, arrival: { kind: 'poisson', qps: 4 } }, target);
  assert.equal(p.requests[0].arrivalMs, 0);
  for (let i = 1; i < p.requests.length; i++) assert.ok(p.requests[i].arrivalMs >= p.requests[i - 1].arrivalMs);
  const meanGap = p.requests[p.requests.length - 1].arrivalMs / (p.requests.length - 1);
  assert.ok(Math.abs(meanGap - 250) < 25, `mean gap ${meanGap} ms`);
  const b = buildWorkload({ ...base, numRequests: 7, arrival: { kind: 'burst', size: 3, intervalMs: 500 } }, target);
  assert.deepEqual(b.requests.map((r) => r.arrivalMs), [0, 0, 0, 500, 500, 500, 1000]);
  const o = buildWorkload(base, target);
  assert.deepEqual(p.requests.map((r) => r.outputLen), o.requests.map((r) => r.outputLen));
  assert.deepEqual(p.requests.map((r) => r.promptTokenIds), o.requests.map((r) => r.promptTokenIds));
  assert.throws(() => buildWorkload({ ...base, arrival: { kind: 'poisson', qps: 0 } }, target), /--qps must be a positive number/);
  assert.throws(() => buildWorkload({ ...base, arrival: { kind: 'burst', size: 0, intervalMs: 5 } }, target), /--burst-size must be a positive integer/);
});

test('requests longer than the context are clipped to fit, and counted', () => {
  const w = buildWorkload({ kind: 'standard', seed: 0, arrival: offline }, { ...target, maxModelLen: 256 });
  assert.ok(w.clipped > 0);
  for (const r of w.requests) {
    assert.ok(r.promptTokenIds.length + r.outputLen <= 256);
    assert.ok(r.outputLen >= 1);
  }
  assert.equal(buildWorkload({ kind: 'standard', seed: 0, arrival: offline }, { ...target, maxModelLen: 4096 }).clipped, 0);
});

test('shared prefixes: each prompt is one of G fixed prefixes, then the prompt the workload would have given', () => {
  const base: WorkloadSpec = { kind: 'standard', seed: 4, numRequests: 300, arrival: offline };
  const plain = buildWorkload(base, target);
  const w = buildWorkload({ ...base, sharedPrefix: { length: 40, groups: 3 } }, target);
  const prefixes = new Map<number, string>();
  for (let i = 0; i < w.requests.length; i++) {
    const r = w.requests[i];
    const own = plain.requests[i].promptTokenIds;
    assert.ok(r.prefixGroup !== undefined && r.prefixGroup >= 0 && r.prefixGroup < 3);
    assert.equal(r.promptTokenIds.length, 40 + own.length);
    assert.equal(r.promptTokenIds[0], target.bosId, 'the prefix leads with the BOS');
    // The rest is the plain workload's prompt (its BOS aside: one BOS per prompt) and outputs.
    assert.deepEqual(r.promptTokenIds.slice(41), own.slice(1));
    assert.notEqual(r.promptTokenIds[40], target.bosId);
    assert.equal(r.outputLen, plain.requests[i].outputLen);
    const key = r.promptTokenIds.slice(0, 40).join(',');
    assert.equal(prefixes.get(r.prefixGroup!) ?? key, key, `group ${r.prefixGroup} has one prefix`);
    prefixes.set(r.prefixGroup!, key);
  }
  assert.equal(new Set(prefixes.values()).size, 3, 'three different prefixes');
  // Groups drawn about evenly.
  for (let g = 0; g < 3; g++) {
    const n = w.requests.filter((r) => r.prefixGroup === g).length;
    assert.ok(n > 70 && n < 130, `group ${g}: ${n} requests`);
  }
  assert.match(w.description, /each prompt led by one of 3 shared 40-token prefixes/);
  assert.deepEqual(buildWorkload({ ...base, sharedPrefix: { length: 40, groups: 3 } }, target).requests, w.requests);
});

test('shared prefixes: clipping shortens the request\'s own part, never the prefix; bad specs are refused', () => {
  const w = buildWorkload({ kind: 'standard', seed: 0, numRequests: 200, arrival: offline, sharedPrefix: { length: 200, groups: 2 } }, { ...target, maxModelLen: 400 });
  assert.ok(w.clipped > 0);
  for (const r of w.requests) {
    assert.ok(r.promptTokenIds.length >= 200 && r.promptTokenIds.length + r.outputLen <= 400);
    assert.ok(r.outputLen >= 1);
  }
  const spec = (length: number, groups: number): WorkloadSpec => ({ kind: 'standard', seed: 0, arrival: offline, sharedPrefix: { length, groups } });
  assert.throws(() => buildWorkload(spec(0, 2), target), /shared prefix length must be a positive integer, got 0/);
  assert.throws(() => buildWorkload(spec(16, 0), target), /number of prefix groups must be a positive integer, got 0/);
  assert.throws(() => buildWorkload(spec(400, 1), { ...target, maxModelLen: 400 }), /a shared prefix of 400 tokens leaves no room/);
  assert.throws(() => buildWorkload({ ...spec(16, 1), kind: 'sharegpt', dataset: 'x.json' }, target), /not sharegpt/);
});
