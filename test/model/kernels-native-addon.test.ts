// The native addon as a process component: safe in worker threads, never keeps a process alive,
// and an install that cannot build it still succeeds (with a warning) so the TypeScript kernels
// take over.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';

import { nativeAddonPath, nativeUnavailableReason, selectedNativeAddonPath } from '../../src/model/kernels/native.js';
import { quantize } from '../../src/model/kernels/quant.js';

const skip = nativeUnavailableReason() ?? false;

function values(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed));
}

describe('native addon', { skip }, () => {
  it('interleaves f32, f16, bf16 and every quantized type in the avx512 build, and only there', () => {
    // The interleaved GEMM (native/qmatmul-x16.cc) is reached only through repack: a build that
    // compiled it out would still pass every accuracy test, so its presence is checked here.
    const addon = createRequire(import.meta.url)(selectedNativeAddonPath());
    const k = new addon.NativeKernels(1);
    try {
      for (const [dtype, code, packedCode, bytesPer256] of [['q4_0', 4, 15, 144], ['q4_k', 5, 16, 148], ['q8_0', 3, 17, 272], ['q6_k', 6, 18, 210], ['q5_k', 12, 19, 180], ['f32', 0, 20, 1024], ['f16', 1, 21, 512], ['bf16', 2, 22, 512], ['q4_1', 7, 23, 160], ['q5_0', 8, 24, 176], ['q5_1', 9, 25, 192], ['iq4_nl', 13, 26, 144], ['iq4_xs', 14, 27, 138], ['q3_k', 11, 28, 114], ['q2_k', 10, 29, 100]] as const) {
        const rows = 20, cols = 256;
        const packed = k.repack(quantize(dtype, values(rows * cols, 3), rows, cols), code, rows, cols);
        if (addon.simd !== 'avx512-vnni') {
          assert.equal(packed, null, `${addon.simd}: no interleaved form`);
          continue;
        }
        assert.equal(packed.dtype, packedCode);
        // Two groups of 16 rows: the last one padded with zeros.
        assert.equal(packed.data.length, 32 * bytesPer256);
      }
    } finally {
      k.close();
    }
  });

  it('runs in several worker threads at once, with the same bits as on the main thread, and lets them exit', async () => {
    const rows = 96;
    const cols = 512;
    const M = 7;
    const w = quantize('q4_k', values(rows * cols, 1), rows, cols);
    const x = values(M * cols, 2);
    // The main thread calls the addon as the workers do (the file's q4_k, code 5, not repacked).
    const expected = new Float32Array(M * rows);
    const main = new (createRequire(import.meta.url)(selectedNativeAddonPath()).NativeKernels)(2);
    main.matmul(expected, x, w, 5, rows, cols, M, 'w');
    main.close();

    // Plain JavaScript workers load the addon directly: this checks the addon, not tsx.
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const addon = require(workerData.path);
      const k = new addon.NativeKernels(2);
      const out = new Float32Array(workerData.M * workerData.rows);
      for (let i = 0; i < 20; i++) k.matmul(out, workerData.x, workerData.w, 5, workerData.rows, workerData.cols, workerData.M, 'w');
      parentPort.postMessage(out);
      // No close(): the pool must not keep the worker alive.
    `;
    const results = await Promise.all(
      [0, 1].map(
        () =>
          new Promise<Float32Array>((resolve, reject) => {
            const worker = new Worker(code, { eval: true, workerData: { path: selectedNativeAddonPath(), w, x, rows, cols, M } });
            let result: Float32Array | undefined;
            const timer = setTimeout(() => reject(new Error('worker did not exit within 10 s')), 10_000);
            worker.on('message', (m: Float32Array) => (result = m));
            worker.on('error', reject);
            worker.on('exit', (codeOut) => {
              clearTimeout(timer);
              if (codeOut !== 0 || !result) reject(new Error(`worker exited with ${codeOut}`));
              else resolve(result);
            });
          }),
      ),
    );
    for (const r of results) assert.deepEqual(new Uint32Array(r.buffer), new Uint32Array(expected.buffer));
  });

  it('does not keep a process alive after its last call', () => {
    const code = `
      const addon = require(${JSON.stringify(nativeAddonPath())});
      const k = new addon.NativeKernels(2);
      const out = new Float32Array(64 * 64);
      k.matmul(out, new Float32Array(64 * 256).fill(1), new Uint8Array(64 * 256 * 4), 0, 64, 256, 64, 'w');
      console.log('done');
    `;
    const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.signal, null, 'the process had to be killed');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'done');
  });
});

describe('install script (scripts/build-native.mjs)', () => {
  const script = 'scripts/build-native.mjs';

  it('warns and exits 0 when no C++ compiler runs, leaving the build alone', () => {
    const before = nativeAddonPath();
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8', env: { ...process.env, CXX: '/nonexistent/c++' } });
    assert.equal(r.status, 0);
    assert.match(r.stderr, /the native kernels were not built \(the C\+\+ compiler CXX=\/nonexistent\/c\+\+ does not run\)/);
    // An addon built earlier is left alone, and the message says it stays in use.
    assert.match(r.stderr, before ? /the earlier build at .* stays in use/ : /the TypeScript kernels will be used instead/);
    assert.equal(nativeAddonPath(), before);
  });

  const runs = (cmd: string) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
  const noBuildTools = !runs('make') || !runs('python3') ? 'make or python3 is missing' : false;

  it('after a failed build, removes the previous addon and says the TypeScript kernels will be used', { skip: noBuildTools }, () => {
    // A scratch copy of the package (the real build/ is never touched), with a compiler that
    // answers --version but fails every compile.
    const dir = mkdtempSync(join(tmpdir(), 'stepwise-build-'));
    try {
      mkdirSync(join(dir, 'scripts'));
      mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
      copyFileSync(script, join(dir, 'scripts', 'build-native.mjs'));
      copyFileSync('binding.gyp', join(dir, 'binding.gyp'));
      cpSync('native', join(dir, 'native'), { recursive: true });
      symlinkSync(resolve('node_modules'), join(dir, 'node_modules'));
      const stale = join(dir, 'build', 'Release', 'stepwise_kernels_generic.node');
      writeFileSync(stale, 'stale');
      const cxx = join(dir, 'failing-c++');
      writeFileSync(cxx, '#!/bin/sh\nif [ "$1" = --version ]; then echo fake 1.0; exit 0; fi\necho "failing-c++: no" >&2\nexit 1\n', { mode: 0o755 });
      const r = spawnSync(process.execPath, [join(dir, 'scripts', 'build-native.mjs')], { encoding: 'utf8', env: { ...process.env, CXX: cxx } });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /the native kernels were not built \(node-gyp build exited with status \d+/);
      assert.match(r.stderr, /the TypeScript kernels will be used instead/);
      assert.equal(existsSync(stale), false, 'the stale addon is still there');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('warns and exits 0 when neither g++ nor c++ is on PATH', () => {
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: '/nonexistent' };
    delete env.CXX;
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8', env });
    assert.equal(r.status, 0);
    assert.match(r.stderr, /no C\+\+ compiler: neither g\+\+ nor c\+\+ is on PATH/);
  });

  it('can be skipped with STEPWISE_SKIP_NATIVE=1', () => {
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8', env: { ...process.env, STEPWISE_SKIP_NATIVE: '1' } });
    assert.equal(r.status, 0);
    assert.match(r.stderr, /not built \(STEPWISE_SKIP_NATIVE=1\)/);
  });

  it('says which instruction-set variants binding.gyp should build', () => {
    const probe = (level: string, env: NodeJS.ProcessEnv = process.env) =>
      spawnSync(process.execPath, [script, '--probe', level], { encoding: 'utf8', env }).stdout.trim();
    // Whether to build a variant depends on the compiler, not on this CPU (it is chosen at run time).
    const x64 = process.arch === 'x64';
    assert.equal(probe('avx2'), x64 ? '1' : '0');
    assert.equal(probe('avx512', { ...process.env, STEPWISE_NATIVE_PORTABLE: '1' }), '0');
    assert.equal(probe('sse9'), '0');
  });
});

describe('instruction-set variants', { skip }, () => {
  // Each variant this CPU can run, forced with STEPWISE_ISA in a child process: its name, and the
  // bits of a q4_k and a q8_0 product. On the file's forms AVX2 and AVX-512 do the same float
  // operations lane for lane (their integer sums are exact), so they agree bit for bit; the scalar
  // build does not fuse multiply-adds, and AVX-512's interleaved q4_k (qrepack.cc) sums in another
  // order, so those are only close.
  const script = `
    import { createNativeKernels } from './src/model/kernels/native.ts';
    import { quantize } from './src/model/kernels/quant.ts';
    const k = createNativeKernels({ threads: 2 });
    const rows = 40, cols = 2560, M = 5;
    const out = [];
    for (const dtype of ['q4_k', 'q8_0']) {
      const v = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.37));
      const w = { name: 'w', dtype, rows, cols, data: quantize(dtype, v, rows, cols) };
      const x = Float32Array.from({ length: M * cols }, (_, i) => Math.cos(i * 0.11));
      const o = new Float32Array(M * rows);
      k.matmul(o, x, w, M);
      out.push(...o);
    }
    // KV rows in each cache dtype: every variant must write the TypeScript reference's bytes.
    const { referenceKernels } = await import('./src/model/kernels/reference.ts');
    const { createKvStorage } = await import('./src/model/kv-storage.ts');
    const kvSame = {};
    for (const dt of ['f16', 'q8_0']) {
      const cfg = { nLayers: 1, nKvHeads: 2, headDim: 64 };
      const a = createKvStorage(cfg, 2, 4, dt), b = createKvStorage(cfg, 2, 4, dt);
      const rows = Float32Array.from({ length: 5 * 128 }, (_, i) => Math.sin(i * 1.7) * (i % 7) * 3);
      const meta = { numRows: 5, slotMapping: Int32Array.from([0, 3, 5, -1, 7]) };
      k.writeKv(a, 0, rows, rows, meta);
      referenceKernels.writeKv(b, 0, rows, rows, meta);
      kvSame[dt] = Buffer.compare(Buffer.from(a.k[0].buffer), Buffer.from(b.k[0].buffer)) === 0;
    }
    console.log(JSON.stringify({ name: k.name, out, kvSame }));
    k.close();
  `;
  const run = (isa: string, env: Record<string, string> = {}) =>
    spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8', env: { ...process.env, STEPWISE_ISA: isa, ...env },
    });

  it('loads the variant STEPWISE_ISA names, or says why it cannot', () => {
    const results = new Map<string, number[]>();
    for (const isa of ['avx512', 'avx2', 'generic', 'avx512-repacked']) {
      const r = isa === 'avx512-repacked' ? run('avx512') : run(isa, { STEPWISE_NO_REPACK: '1' });
      if (r.status !== 0) {
        // Only a CPU without the variant's features (or a compiler without its flags) may refuse.
        assert.match(r.stderr, new RegExp(`STEPWISE_ISA=${isa.split('-')[0]}: (this CPU lacks|.* is not built)`), r.stderr);
        continue;
      }
      const { name, out, kvSame } = JSON.parse(r.stdout) as { name: string; out: number[]; kvSame: Record<string, boolean> };
      assert.match(name, { avx512: /^native-avx512-vnni /, avx2: /^native-avx2 /, generic: /^native-scalar / }[isa.split('-')[0]!]!);
      assert.deepEqual(kvSame, { f16: true, q8_0: true }, `${isa}: KV bytes as the reference writes them`);
      results.set(isa, out);
    }
    assert.ok(results.has('generic'), 'the generic variant always runs');
    const [a512, a2, gen] = [results.get('avx512'), results.get('avx2'), results.get('generic')!];
    if (a512 && a2) assert.deepEqual(a512, a2, 'AVX-512 and AVX2 give the same bits');
    const repacked = results.get('avx512-repacked');
    if (a512) assert.notDeepEqual(repacked, a512, 'the avx512 build interleaves q4_k (another summation order)');
    for (const other of [a512, a2, repacked]) {
      if (!other) continue;
      for (let i = 0; i < gen.length; i++) assert.ok(Math.abs(other[i]! - gen[i]!) <= 1e-4 * Math.max(1, Math.abs(gen[i]!)), `element ${i}`);
    }
    const bad = run('avx9');
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /STEPWISE_ISA must be one of avx512, avx2, generic, got 'avx9'/);
  });
});
