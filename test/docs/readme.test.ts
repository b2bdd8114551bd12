// The README cannot rot: its quick commands that finish in seconds run here (`--help` of every
// command, `generate` on a tiny model, the library example), and every relative link in the README
// and in docs/ points at a file that exists. The commands run through bin/stepwise.js and the
// library example imports 'stepwise', as a user's would (npm install builds dist/ first).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { makeModel } from '../../src/model/make-model.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const BIN = join(ROOT, 'bin', 'stepwise.js');
const built = existsSync(join(ROOT, 'dist', 'src', 'cli', 'main.js'));

let dir: string;
let tiny: string; // the model the README's commands are pointed at
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'stepwise-readme-'));
  // The quick start's own model (a second's work): the examples use its vocabulary's ids.
  tiny = join(dir, 'small-f32.gguf');
  await makeModel({ preset: 'small', dtype: 'f32', seed: 1, out: tiny });
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** The fenced code blocks of a language in the README. */
function blocks(lang: string): string[] {
  return [...readme.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);
}

/** `npx stepwise ...` lines of the README's shell blocks, as argument lists (continuations joined). */
function stepwiseCommands(): string[][] {
  const lines = blocks('sh').join('\n').replace(/\\\n\s*/g, ' ').split('\n');
  return lines
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l.startsWith('npx stepwise '))
    .map((l) => [...l.slice('npx stepwise '.length).matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!));
}

function run(args: string[], timeout = 60_000): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('every command the README shows answers --help', { skip: built ? false : 'dist/ not built (npm install builds it)' }, () => {
  const commands = new Set(stepwiseCommands().map((a) => a[0]!));
  for (const c of ['make-model', 'generate', 'serve', 'bench', 'simulate']) assert.ok(commands.has(c), `the quick start shows ${c}`);
  const top = run(['--help']);
  assert.equal(top.code, 0);
  for (const c of commands) {
    if (c === '--help') continue;
    assert.match(top.stdout, new RegExp(`^  ${c} `, 'm'), `stepwise --help lists ${c}`);
    const r = run([c, '--help']);
    assert.equal(r.code, 0, `${c} --help: ${r.stderr}`);
    assert.match(r.stdout, /Usage|usage/, `${c} --help prints its usage`);
  }
});

test("the README's generate command runs on the small preset", { skip: built ? false : 'dist/ not built' }, () => {
  const gens = stepwiseCommands().filter((a) => a[0] === 'generate');
  assert.ok(gens.length > 0, 'the README shows a generate command');
  for (const args of gens) {
    const i = args.indexOf('--model');
    const r = run(args.map((a, k) => (k === i + 1 ? tiny : a)));
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.ok(r.stdout.length > 0, 'it printed a continuation');
  }
});

test("the README's library example runs as written (on the small preset)", { skip: built ? false : 'dist/ not built' }, () => {
  const example = blocks('js').find((b) => b.includes("from 'stepwise'"));
  assert.ok(example, 'the README has a library example importing stepwise');
  // Inside the package folder, so `import ... from 'stepwise'` resolves to this package.
  const cache = join(ROOT, '.cache');
  mkdirSync(cache, { recursive: true });
  const file = join(cache, `readme-example-${process.pid}.mjs`);
  writeFileSync(file, example.replace(/models\/small-f32\.gguf/g, tiny.replace(/\\/g, '/')));
  try {
    const out = execFileSync(process.execPath, [file], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    assert.ok(out.length > 0, 'the example printed its outputs');
  } finally {
    rmSync(file, { force: true });
  }
});

test('every relative link in the README and docs/ resolves', () => {
  const files = [join(ROOT, 'README.md'), ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join(ROOT, 'docs', f))];
  let links = 0;
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/.test(target) || target.startsWith('#')) continue;
      links++;
      const path = resolve(dirname(f), target.split('#')[0]!);
      assert.ok(existsSync(path), `${f.slice(ROOT.length + 1)} links to ${target}, which does not exist`);
    }
  }
  assert.ok(links >= 6, `found ${links} links`);
});

test('the README stays a README: at most 12,000 characters', () => {
  assert.ok(readme.length <= 12_000, `README.md is ${readme.length} characters`);
});
