// Profiles: the built-in ones load and are sane; files and names that are wrong are refused with a
// message naming the field or listing the choices.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { HARDWARE, MODELS, hardwareProfile, modelProfile, readProfileFile, validateHardware, ProfileError } from '../../src/sim/profiles.js';
import { resolveSimOptions } from '../../src/sim/engine-options.js';
import { kvCapacityTokens } from '../../src/sim/cost-model.js';

test('the built-in profiles cover the GPUs and models the issue names', () => {
  for (const h of ['A100-80GB', 'H100-SXM', 'H200']) assert.ok(HARDWARE[h], h);
  for (const m of ['llama-2-7b', 'llama-3-8b', '110m']) assert.ok(MODELS[m], m);
  // H200 has more memory and bandwidth than H100 at the same compute.
  assert.ok(HARDWARE.H200.memoryGB > HARDWARE['H100-SXM'].memoryGB && HARDWARE.H200.bandwidthGBs > HARDWARE['H100-SXM'].bandwidthGBs);
  assert.ok(kvCapacityTokens(HARDWARE.H200, MODELS['llama-3-8b']) > kvCapacityTokens(HARDWARE['A100-80GB'], MODELS['llama-3-8b']));
});

test('names resolve ignoring case; unknown names list the known ones', () => {
  assert.equal(hardwareProfile('a100-80gb').name, 'A100-80GB');
  assert.equal(modelProfile('LLAMA-3-8B').name, 'llama-3-8b');
  assert.throws(() => hardwareProfile('TPUv9'), (e: unknown) => e instanceof ProfileError && /unknown hardware 'TPUv9': known hardwares are A100-80GB, H100-SXM, H200/.test((e as Error).message));
});

test('a malformed hardware profile names the bad field', () => {
  assert.throws(() => validateHardware({ ...HARDWARE.H200, bandwidthGBs: 'fast' }, 'hardware profile X'), /hardware profile X: bandwidthGBs must be a number >= 0, got "fast"/);
  assert.throws(() => validateHardware({ ...HARDWARE.H200, peakTflops: 0 }, 'X'), /peakTflops must be greater than 0/);
  assert.throws(() => validateHardware({ ...HARDWARE.H200, attentionGflops: -1 }, 'X'), /attentionGflops must be a number >= 0/);
  assert.throws(() => validateHardware({ ...HARDWARE.H200, kvBandwidthGBs: 0 }, 'X'), /kvBandwidthGBs must be greater than 0/);
  assert.throws(() => validateHardware({ ...HARDWARE.H200, coldStepFactor: 0.5 }, 'X'), /coldStepFactor must be at least 1 when given, got 0.5/);
  for (const afterPromptFactors of [[1.2, 0.9], ['1.2'], 1.2, [Infinity]])
    assert.throws(() => validateHardware({ ...HARDWARE.H200, afterPromptFactors }, 'X'), /X: afterPromptFactors must be a list of numbers >= 1 when given/, JSON.stringify(afterPromptFactors));
  assert.deepEqual(validateHardware({ ...HARDWARE.H200, afterPromptFactors: [1.3, 1.1] }, 'X').afterPromptFactors, [1.3, 1.1]);
  assert.throws(() => validateHardware({ ...HARDWARE.H200, perPrefillRowUs: -2 }, 'X'), /perPrefillRowUs must be a number >= 0 when given, got -2/);
  assert.throws(() => validateHardware({ ...HARDWARE.H200, perPrefillSeqUs: 'x' }, 'X'), /perPrefillSeqUs must be a number >= 0 when given/);
  for (const rowCurve of [[], [[2, 1], [1, 2]], [[1, -1]], [[0, 1]], [[1, 2, 3]], 'steep'])
    assert.throws(() => validateHardware({ ...HARDWARE.H200, rowCurve }, 'X'), /X: rowCurve must be a list of \[rows, ms\] pairs with rows > 0 increasing/, JSON.stringify(rowCurve));
  assert.deepEqual(validateHardware({ ...HARDWARE.H200, rowCurve: [[1, 2], [8, 3.5]] }, 'X').rowCurve, [[1, 2], [8, 3.5]]);
  // The prompt-excess curve starts at 0 prompt rows.
  for (const prefillExcessCurve of [[], [[64, 1], [16, 0.5]], [[0, 0], [16, -1]], [[-1, 0]], 'flat'])
    assert.throws(() => validateHardware({ ...HARDWARE.H200, prefillExcessCurve }, 'X'), /X: prefillExcessCurve must be a list of \[rows, ms\] pairs with rows >= 0 increasing/, JSON.stringify(prefillExcessCurve));
  assert.deepEqual(validateHardware({ ...HARDWARE.H200, prefillExcessCurve: [[0, 0], [16, 0.3], [256, 2]] }, 'X').prefillExcessCurve, [[0, 0], [16, 0.3], [256, 2]]);
  assert.throws(() => validateHardware({ ...HARDWARE.H200, kvReadCurve: [[0, 0], [1e6, -1]] }, 'X'), /X: kvReadCurve must be a list of \[rows, ms\] pairs with rows >= 0 increasing/);
});

test('profile files: missing, not JSON, not a profile, bad model field', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stepwise-profile-'));
  try {
    assert.throws(() => readProfileFile(join(dir, 'nope.json')), /cannot read profile file .*nope\.json: ENOENT/);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ not json');
    assert.throws(() => readProfileFile(bad), /is not valid JSON/);
    writeFileSync(bad, JSON.stringify({ hardware: {} }));
    assert.throws(() => readProfileFile(bad), /is not a Stepwise profile/);
    const good = { kind: 'stepwise-profile', version: 1, name: 'cpu', hardware: HARDWARE.H200, model: MODELS['110m'] };
    writeFileSync(bad, JSON.stringify({ ...good, model: { ...MODELS['110m'], nKvHeads: 5 } }));
    assert.throws(() => readProfileFile(bad), /model: nHeads \(12\) must be a multiple of nKvHeads \(5\)/);
    writeFileSync(bad, JSON.stringify({ ...good, version: 2 }));
    assert.throws(() => readProfileFile(bad), /has version 2/);
    writeFileSync(bad, JSON.stringify(good));
    assert.equal(readProfileFile(bad).name, 'cpu');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('simulated engine options follow LLM.load: defaults, KV capacity from memory capped at every seat\'s full context', () => {
  const m = MODELS['llama-2-7b'];
  const o = resolveSimOptions({}, HARDWARE['A100-80GB'], m);
  assert.equal(o.policy, 'continuous');
  assert.equal(o.maxNumSeqs, 64);
  assert.equal(o.maxNumBatchedTokens, 2048);
  assert.equal(o.staticBatchSize, 64);
  assert.equal(o.maxModelLen, 4096);
  // 64 seats x 4096 tokens = 16384 blocks of 16, more than the ~6976 blocks the A100 has room for.
  assert.equal(o.numBlocks, Math.floor(kvCapacityTokens(HARDWARE['A100-80GB'], m) / 16));
  // Few seats: capped at their full contexts.
  assert.equal(resolveSimOptions({ maxNumSeqs: 4 }, HARDWARE['A100-80GB'], m).numBlocks, 4 * 256);
  assert.equal(resolveSimOptions({ numBlocks: 500 }, HARDWARE['A100-80GB'], m).numBlocks, 500);
  assert.equal(resolveSimOptions({ kvCacheMemory: 1024 * 524288 * 16 }, HARDWARE['A100-80GB'], m).numBlocks, 1024);
  // A model that does not fit: clear error.
  const tiny = { ...HARDWARE['A100-80GB'], memoryGB: 20 };
  assert.throws(() => resolveSimOptions({}, tiny, m), /cannot hold one 4096-token context/);
});
