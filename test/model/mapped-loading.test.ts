// Memory-mapped model loading: files over 4 GiB load (mapped, and read by the TypeScript
// fallback), weights are views of one mapping shared by every thread of the process, and loading
// keeps no file descriptor. The large files are sparse (their padding is a hole), so they take no
// disk space and no time to write.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readlinkSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { modelSpec, PRESETS } from '../../src/model/make-model.js';
import { syntheticVocab } from '../../src/model/synthetic-vocab.js';
import { writeGgufFile, type GgufTensorSpec } from '../../src/model/loaders/gguf-writer.js';
import { loadModel } from '../../src/model/loaders/index.js';
import { mapFileNative, selectedNativeAddonPath } from '../../src/model/kernels/native.js';
import { referenceKernels } from '../../src/model/kernels/reference.js';
import { ourRun } from './llamacpp-oracle.js';
import { firstBitDifference } from './ragged-batch.js';

const GiB = 2 ** 30;
const addon = selectedNativeAddonPath();

describe('memory-mapped loading', () => {
  let dir: string;
  let small: string;
  let huge: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'stepwise-mmap-'));
    const { spec } = modelSpec({ shape: PRESETS.tiny, dtype: 'f32', seed: 9, vocab: syntheticVocab(512), name: 'mmap' });
    small = join(dir, 'small.gguf');
    writeGgufFile(small, spec);
    // Two unused 2.25 GiB tensors first (each under the 4 GiB a typed array may span here), so every
    // tensor of the model lies past 4.5 GiB.
    const padding: GgufTensorSpec[] = [0, 1].map((i) => ({ name: `stepwise.test.padding.${i}`, type: 'f32', dims: [2 ** 20, 576], data: 'zeros' }));
    huge = join(dir, 'huge.gguf');
    writeGgufFile(huge, { ...spec, tensors: [...padding, ...spec.tensors] });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const prompt = [1, 40, 41, 300, 7, 8, 9, 200];

  for (const mode of ['mapped', 'read'] as const) {
    it(`a GGUF over 4 GiB loads ${mode === 'mapped' ? 'through the mapping' : 'by the TypeScript fallback (reads)'} and computes what the small file computes`, { skip: mode === 'mapped' && !addon ? 'native addon not built' : false }, async () => {
      assert.ok(statSync(huge).size > 4.5 * GiB, 'the file is over 4 GiB');
      const before = process.env.STEPWISE_NO_MMAP;
      if (mode === 'read') process.env.STEPWISE_NO_MMAP = '1';
      try {
        const rss0 = process.memoryUsage().rss;
        const big = await loadModel(huge);
        const want = ourRun(await loadModel(small), referenceKernels, prompt, 4);
        const got = ourRun(big, referenceKernels, prompt, 4);
        assert.equal(firstBitDifference(got.logits, want.logits), -1, 'same logits bit for bit');
        assert.deepEqual(got.greedy, want.greedy);
        // Only the tensors the model uses were touched: nothing near the file's size is resident.
        const grew = process.memoryUsage().rss - rss0;
        assert.ok(grew < 256 * 2 ** 20, `resident memory grew by ${(grew / 2 ** 20).toFixed(0)} MiB`);
      } finally {
        if (before === undefined) delete process.env.STEPWISE_NO_MMAP;
        else process.env.STEPWISE_NO_MMAP = before;
      }
    });
  }

  it('shares one mapping between the main thread and a worker thread (no copy)', { skip: addon ? false : 'native addon not built' }, async () => {
    const here = mapFileNative(huge)!;
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const addon = require(workerData.addon);
      const m = new addon.MappedFile(workerData.path);
      const head = Buffer.from(new Uint8Array(m.view(0, 4))).toString('latin1');
      parentPort.postMessage({ address: m.address, head });
    `;
    const theirs = await new Promise<{ address: bigint; head: string }>((resolve, reject) => {
      const w = new Worker(code, { eval: true, workerData: { addon, path: huge } });
      w.once('message', (m) => {
        resolve(m);
        void w.terminate();
      });
      w.once('error', reject);
    });
    assert.equal(theirs.head, 'GGUF');
    assert.equal(theirs.address, here.address, 'the worker got the same mapped address range');
    here.close();
  });

  it('keeps no file descriptor open and names missing files and folders', { skip: process.platform === 'linux' ? false : 'counts /proc/self/fd' }, async () => {
    // Descriptors of the model file, whatever else the process has open.
    const modelFds = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === realpathSync(small);
        } catch {
          return false; // closed meanwhile
        }
      }).length;
    const models = [];
    for (let i = 0; i < 3; i++) models.push(await loadModel(small));
    assert.equal(modelFds(), 0, 'the file is mapped or read, and closed');
    assert.equal(models.length, 3);
    await assert.rejects(loadModel(join(dir, 'missing.gguf')), /missing\.gguf: no such file/);
    await assert.rejects(loadModel(dir), /is a directory/);
  });
});
