// `stepwise generate` end to end in a child process: JSON output, speculative decoding with a draft
// model, and clear one-line errors (no stack trace) for the mistakes users make: missing or corrupt
// model files, prompts longer than the context, a draft model with another vocabulary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sharedModelFile, STORIES260K } from '../helpers/models.js';
import { makeModel, modelSpec, PRESETS } from '../../src/model/make-model.js';
import { syntheticVocab } from '../../src/model/synthetic-vocab.js';
import { writeGgufFile } from '../../src/model/loaders/gguf-writer.js';

const ENTRY = join(import.meta.dirname, 'cli-entry.ts');

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', ENTRY, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function assertCleanError(r: { stderr: string }, pattern: RegExp): void {
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

const stories = sharedModelFile(STORIES260K);

test('generate --json prints token ids, and the same seed gives the same sample', { skip: stories.missing }, () => {
  const args = ['generate', '--model', stories.path, '--prompt-ids', '1', '--max-tokens', '12', '--backend', 'typescript'];
  const greedy = cli(...args, '--temperature', '0', '--json');
  assert.equal(greedy.code, 0, greedy.stderr);
  const body = JSON.parse(greedy.stdout);
  assert.equal(body.token_ids.length, 12);
  assert.equal(body.finish_reason, 'length');
  assert.deepEqual(body.prompt_token_ids, [1]);
  const a = JSON.parse(cli(...args, '--temperature', '1', '--seed', '7', '--json').stdout);
  const b = JSON.parse(cli(...args, '--temperature', '1', '--seed', '7', '--json', '--threads', '1').stdout);
  assert.deepEqual(a.token_ids, b.token_ids);
});

test('generate streams token ids for a model without a tokenizer', { skip: stories.missing }, () => {
  const r = cli('generate', '--model', stories.path, '--prompt-ids', '1', '--max-tokens', '5', '--temperature', '0');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim().split(/\s+/).length, 5);
  assert.match(r.stderr, /stories260K\.bin on /, 'logs the kernels backend');
});

test('a prompt longer than the context is a clear error', { skip: stories.missing }, () => {
  const ids = Array.from({ length: 600 }, (_, i) => 1 + (i % 500)).join(',');
  const r = cli('generate', '--model', stories.path, '--prompt-ids', ids, '--max-tokens', '4');
  assert.equal(r.code, 1);
  assertCleanError(r, /600/);
  assertCleanError(r, /512/);
});

test('missing, truncated and corrupt model files are named in one line', async () => {
  const missing = cli('generate', '--model', '/nonexistent/model.gguf', '--prompt', 'hi');
  assert.equal(missing.code, 2);
  assertCleanError(missing, /model file not found: \/nonexistent\/model\.gguf/);

  const dir = mkdtempSync(join(tmpdir(), 'stepwise-cli-'));
  const good = join(dir, 'tiny.gguf');
  await makeModel({ preset: 'tiny', dtype: 'f32', seed: 1, out: good });
  const bytes = readFileSync(good);
  const truncated = join(dir, 'truncated.gguf');
  writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
  const t = cli('generate', '--model', truncated, '--prompt', 'hi', '--max-tokens', '2');
  assert.equal(t.code, 1);
  assertCleanError(t, /truncated\.gguf/);

  const corrupt = join(dir, 'corrupt.gguf');
  writeFileSync(corrupt, Buffer.from('this is not a model file at all, just text'));
  const c = cli('generate', '--model', corrupt, '--prompt', 'hi');
  assert.equal(c.code, 1);
  assertCleanError(c, /corrupt\.gguf/);
});

test('usage mistakes exit 2 and name the flag; --help exits 0', () => {
  const unknown = cli('generate', '--model', 'x', '--bogus');
  assert.equal(unknown.code, 2);
  assertCleanError(unknown, /bogus/);
  const bad = cli('generate', '--model', 'x', '--prompt', 'p', '--max-tokens', 'many');
  assert.equal(bad.code, 2);
  assertCleanError(bad, /--max-tokens/);
  const both = cli('generate', '--model', 'x', '--prompt', 'p', '--prompt-ids', '1');
  assert.equal(both.code, 2);
  const help = cli('generate', '--help');
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--prompt-ids/);
  const top = cli('--help');
  assert.equal(top.code, 0);
  assert.match(top.stdout, /serve/);
  const nope = cli('frobnicate');
  assert.equal(nope.code, 2);
});

test('generate with a draft model: the same greedy tokens; a draft with another vocabulary is one line naming it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stepwise-cli-draft-'));
  const target = join(dir, 'tiny.gguf');
  await makeModel({ preset: 'tiny', dtype: 'f32', seed: 1, out: target });
  const other = join(dir, 'vocab-600.gguf');
  writeGgufFile(other, modelSpec({ shape: { ...PRESETS.tiny, vocabSize: 600 }, dtype: 'f32', seed: 1, vocab: syntheticVocab(600), name: 'vocab-600' }).spec);
  const args = ['generate', '--model', target, '--prompt-ids', '1,40,41', '--max-tokens', '24', '--temperature', '0', '--json'];
  const plain = cli(...args);
  assert.equal(plain.code, 0, plain.stderr);
  const self = cli(...args, '--speculative-method', 'draft', '--draft-dtype', 'q4_0', '--num-speculative-tokens', '3');
  assert.equal(self.code, 0, self.stderr);
  assert.deepEqual(JSON.parse(self.stdout).token_ids, JSON.parse(plain.stdout).token_ids);
  const bad = cli(...args, '--speculative-method', 'draft', '--draft-model', other);
  assert.equal(bad.code, 1);
  assertCleanError(bad, /^stepwise: draft model \S*vocab-600\.gguf has a vocabulary of 600 tokens, the target model's has 512[^\n]*\n$/);
  const stray = cli(...args, '--draft-model', other);
  assert.equal(stray.code, 2);
  assertCleanError(stray, /--draft-model needs --speculative-method draft/);
  const none = cli(...args, '--speculative-method', 'draft');
  assert.equal(none.code, 2);
  assertCleanError(none, /--speculative-method draft needs --draft-model FILE or --draft-dtype/);
});

test('make-model creates the folder it writes into', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stepwise-mm-'));
  const out = join(dir, 'nested', 'models', 'tiny.gguf');
  const r = cli('make-model', '--preset', 'tiny', '--dtype', 'f32', '--seed', '1', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(readFileSync(out).length > 0);
});

test('--version names the package version and the kernels this machine uses', () => {
  const r = cli('--version');
  assert.equal(r.code, 0, r.stderr);
  const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  assert.match(r.stdout, new RegExp(`^${pkg.version.replace(/\./g, '\\.')}\\nkernels: (native-(avx512-vnni|avx2|scalar)|typescript \\(.+\\))\\n$`));
  // A forced variant shows up there too; an impossible one is explained.
  const generic = spawnSync(process.execPath, ['--import', 'tsx', ENTRY, '--version'], { encoding: 'utf8', env: { ...process.env, STEPWISE_ISA: 'generic' } });
  if (/native-/.test(r.stdout)) assert.match(generic.stdout, /kernels: native-scalar\n/);
});
