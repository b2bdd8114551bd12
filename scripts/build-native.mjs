#!/usr/bin/env node
// Builds the native kernels addon (binding.gyp + native/*.cc) into build/Release/stepwise_kernels.node
// with the node-gyp that ships inside npm. This is the package's "install" script, so it runs on
// `npm install` / `npm ci`; run it by hand to rebuild.
//
// A failed build must not fail the install: Stepwise then runs on its TypeScript kernels, so this
// script prints a warning saying so and exits 0. STEPWISE_SKIP_NATIVE=1 skips the build.
//
// `node scripts/build-native.mjs --probe avx2|avx512` prints 1 when binding.gyp should build that
// variant; STEPWISE_NATIVE_PORTABLE=1 builds the generic (scalar) variant alone.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const releaseDir = join(root, 'build', 'Release');
// The variant every build has; it also answers which CPU features there are.
const addonPath = join(releaseDir, 'stepwise_kernels_generic.node');

// The instruction-set levels binding.gyp builds beyond the generic one, and the flags each needs.
const LEVEL_FLAGS = {
  avx2: ['-mavx2', '-mfma', '-mf16c'],
  avx512: ['-mavx2', '-mfma', '-mf16c', '-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512dq', '-mavx512vnni', '-mavx512bf16', '-mavx512vbmi'],
};

/**
 * Whether binding.gyp should build the `level` variant: only on x86-64, only when the compiler
 * takes its flags (the build machine's own CPU does not matter: the variant is chosen at run
 * time), and never with STEPWISE_NATIVE_PORTABLE=1 (the generic build alone).
 */
function probeLevel(level) {
  const flags = LEVEL_FLAGS[level];
  if (!flags || process.env.STEPWISE_NATIVE_PORTABLE === '1' || process.arch !== 'x64') return false;
  const cxx = process.env.CXX || 'c++';
  const src = '#include <immintrin.h>\nint main() { return 0; }\n';
  const r = spawnSync(cxx, [...flags, '-x', 'c++', '-fsyntax-only', '-'], { input: src, stdio: ['pipe', 'ignore', 'ignore'] });
  return !r.error && r.status === 0;
}

/**
 * Says why there is no new build and exits 0. After a failed build attempt the previous addon is
 * removed (it may not match the sources any more); otherwise an existing one is left in use.
 */
function warn(reason, { buildFailed = false } = {}) {
  if (buildFailed) {
    for (const v of ['generic', 'avx2', 'avx512']) rmSync(join(releaseDir, `stepwise_kernels_${v}.node`), { force: true });
  }
  const fallback = existsSync(addonPath)
    ? `stepwise: the earlier build at ${addonPath} stays in use.\n`
    : 'stepwise: the TypeScript kernels will be used instead; they are correct but much slower.\n';
  console.warn(
    `\nstepwise: the native kernels were not built (${reason}).\n` +
      fallback +
      'stepwise: to build them later, install a C++17 compiler, make and python3, then run: node scripts/build-native.mjs\n',
  );
  process.exit(0);
}

function hasCommand(cmd) {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

/** npm's own node-gyp: the one npm points install scripts at, else the copy inside npm's folder. */
function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  for (const c of candidates) if (c && existsSync(c)) return { cmd: process.execPath, args: [c] };
  // Last resort: whatever node-gyp npx can find without downloading one.
  const npx = spawnSync('npx', ['--no-install', 'node-gyp', '--version'], { stdio: 'ignore' });
  if (!npx.error && npx.status === 0) return { cmd: 'npx', args: ['--no-install', 'node-gyp'] };
  return null;
}

function main() {
  const probe = process.argv.indexOf('--probe');
  if (probe >= 0) {
    console.log(probeLevel(process.argv[probe + 1]) ? 1 : 0);
    return;
  }
  if (process.env.STEPWISE_SKIP_NATIVE === '1') warn('STEPWISE_SKIP_NATIVE=1');
  const cxx = process.env.CXX;
  if (cxx ? !hasCommand(cxx) : !hasCommand('g++') && !hasCommand('c++')) {
    warn(cxx ? `the C++ compiler CXX=${cxx} does not run` : 'no C++ compiler: neither g++ nor c++ is on PATH');
  }
  if (!hasCommand('make') && process.platform !== 'win32') warn('make is not on PATH');
  const gyp = findNodeGyp();
  if (!gyp) warn('node-gyp was not found (neither npm\'s bundled copy nor one npx can run offline)');

  // Build against the running Node's own headers when they are installed beside it, so no header
  // download is needed (machines without network access). npm may already say so (nodedir).
  const nodedir = [];
  const prefix = resolve(dirname(process.execPath), '..');
  if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) {
    nodedir.push(`--nodedir=${prefix}`);
  }
  const levels = ['generic', ...Object.keys(LEVEL_FLAGS).filter(probeLevel)];
  console.log(`stepwise: building the native kernels (${levels.join(', ')})`);
  // configure + build rather than rebuild: make redoes what changed (flags included) and swaps the
  // finished addon in at the end, so a process starting meanwhile still finds the previous one.
  for (const step of [['configure', ...nodedir], ['build', '--jobs=max', ...nodedir]]) {
    const r = spawnSync(gyp.cmd, [...gyp.args, ...step], { cwd: root, stdio: 'inherit' });
    if (r.error) warn(`node-gyp could not start: ${r.error.message}`, { buildFailed: true });
    if (r.status !== 0) warn(`node-gyp ${step[0]} exited with status ${r.status}; its output is above`, { buildFailed: true });
  }

  // Prove the variant this machine will use loads in this Node before calling it done.
  try {
    const generic = createRequire(import.meta.url)(addonPath);
    const cpu = generic.cpu ?? {};
    const avx2 = cpu.avx2 && cpu.fma && cpu.f16c;
    const avx512 = avx2 && ['avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512vnni', 'avx512bf16', 'avx512vbmi'].every((f) => cpu[f]);
    const best = [avx512 && 'avx512', avx2 && 'avx2'].find((v) => v && existsSync(join(releaseDir, `stepwise_kernels_${v}.node`)));
    const addon = best ? createRequire(import.meta.url)(join(releaseDir, `stepwise_kernels_${best}.node`)) : generic;
    console.log(`stepwise: native kernels built (${levels.join(', ')}); this CPU uses ${addon.simd}, in ${releaseDir}`);
  } catch (e) {
    warn(`the built addon does not load: ${e instanceof Error ? e.message : String(e)}`, { buildFailed: true });
  }
}

main();
