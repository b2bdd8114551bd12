#!/usr/bin/env node
// Builds the native kernels addon (binding.gyp + native/*.cc) into build/Release/stepwise_kernels.node
// with the node-gyp that ships inside npm. This is the package's "install" script, so it runs on
// `npm install` / `npm ci`; run it by hand to rebuild.
//
// A failed build must not fail the install: Stepwise then runs on its TypeScript kernels, so this
// script prints a warning saying so and exits 0. STEPWISE_SKIP_NATIVE=1 skips the build.
//
// `node scripts/build-native.mjs --cflags` prints the CPU-specific compiler flags binding.gyp uses;
// STEPWISE_NATIVE_PORTABLE=1 builds without them (portable scalar code).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const addonPath = join(root, 'build', 'Release', 'stepwise_kernels.node');

/**
 * Flags for this machine's CPU: -march=native when the compiler takes it, AVX2/FMA/F16C when
 * present. STEPWISE_NATIVE_PORTABLE=1 gives none (the portable scalar kernels, for a build that
 * must run on other CPUs).
 */
function cpuFlags() {
  const flags = [];
  if (process.env.STEPWISE_NATIVE_PORTABLE === '1') return flags;
  const cxx = process.env.CXX || 'c++';
  const probe = spawnSync(cxx, ['-march=native', '-x', 'c++', '-E', '-'], { input: '', stdio: ['pipe', 'ignore', 'ignore'] });
  if (probe.status === 0) flags.push('-march=native');
  if (process.arch === 'x64') {
    let cpuinfo = '';
    try {
      cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      // Not Linux: -march=native alone decides.
    }
    const has = (f) => new RegExp(`^flags\\s*:.*\\b${f}\\b`, 'm').test(cpuinfo);
    if (has('avx2') && has('fma') && has('f16c')) flags.push('-mavx2', '-mfma', '-mf16c');
  }
  return flags;
}

/**
 * Says why there is no new build and exits 0. After a failed build attempt the previous addon is
 * removed (it may not match the sources any more); otherwise an existing one is left in use.
 */
function warn(reason, { buildFailed = false } = {}) {
  if (buildFailed) rmSync(addonPath, { force: true });
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
  if (process.argv.includes('--cflags')) {
    console.log(cpuFlags().join(' '));
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
  console.log(`stepwise: building the native kernels (${cpuFlags().join(' ') || 'portable flags'})`);
  // configure + build rather than rebuild: make redoes what changed (flags included) and swaps the
  // finished addon in at the end, so a process starting meanwhile still finds the previous one.
  for (const step of [['configure', ...nodedir], ['build', '--jobs=max', ...nodedir]]) {
    const r = spawnSync(gyp.cmd, [...gyp.args, ...step], { cwd: root, stdio: 'inherit' });
    if (r.error) warn(`node-gyp could not start: ${r.error.message}`, { buildFailed: true });
    if (r.status !== 0) warn(`node-gyp ${step[0]} exited with status ${r.status}; its output is above`, { buildFailed: true });
  }

  // Prove the result loads in this Node before calling it done.
  try {
    const addon = createRequire(import.meta.url)(addonPath);
    console.log(`stepwise: native kernels built (${addon.simd}) at ${addonPath}`);
  } catch (e) {
    warn(`the built addon does not load: ${e instanceof Error ? e.message : String(e)}`, { buildFailed: true });
  }
}

main();
