// The import rules hold: dependency-cruiser, with the rules in .dependency-cruiser.cjs (the picture in
// docs/architecture.md), finds no violation in src/ — and the check is not vacuous: it resolves the
// tree's imports, and it catches a simulator that imports a kernel.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const CONFIG = join(ROOT, '.dependency-cruiser.cjs');
const DEPCRUISE = join(ROOT, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');

function depcruise(cwd: string, outputType: string) {
  return spawnSync(process.execPath, [DEPCRUISE, 'src', '--config', CONFIG, '--output-type', outputType], { cwd, encoding: 'utf8' });
}

test('src/ follows the import rules', () => {
  const r = depcruise(ROOT, 'json');
  assert.equal(r.status, 0, `dependency-cruiser found violations:\n${depcruise(ROOT, 'err').stdout}`);
  const result = JSON.parse(r.stdout) as {
    modules: Array<{ source: string; dependencies: Array<{ module: string; resolved: string; couldNotResolve: boolean }> }>;
    summary: { violations: Array<{ rule: { name: string }; from: string; to: string }> };
  };
  // The json reporter exits 0 whatever it finds: the violations are in its summary.
  assert.deepEqual(result.summary.violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`), [], 'no import rule is broken');
  const unresolved = result.modules.flatMap((m) => m.dependencies.filter((d) => d.couldNotResolve && d.module.startsWith('.')).map((d) => `${m.source} -> ${d.resolved}`));
  assert.deepEqual(unresolved, [], 'every relative import resolves (a rule cannot see an edge it could not resolve)');
  // The simulated replica is what holds the engine's Scheduler.
  const sim = result.modules.find((m) => m.source === 'src/sim/replica.ts');
  assert.ok(sim?.dependencies.some((d) => d.resolved === 'src/engine/scheduler.ts'), 'the .js specifiers resolve to the .ts sources');
  assert.ok(result.modules.length > 100);
});

test('a rule violation fails the check', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stepwise-import-rules-'));
  try {
    const file = (path: string, text: string) => {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    };
    file('tsconfig.json', JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext' } }));
    file('src/model/kernels/matmul.ts', 'export const matmul = 1;\n');
    file('src/sim/simulator.ts', "import { matmul } from '../model/kernels/matmul.js';\nexport const speed = matmul;\n");
    const r = depcruise(dir, 'err');
    assert.notEqual(r.status, 0);
    assert.match(r.stdout, /sim-only-scheduler-and-runs: src\/sim\/simulator\.ts → src\/model\/kernels\/matmul\.ts/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
