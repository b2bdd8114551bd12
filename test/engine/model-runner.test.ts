// The model runners against the naive oracle: a hand-driven schedule (chunked prefill, then decode,
// two sequences sharing steps) must produce the same greedy tokens as decoding each sequence alone,
// and the worker-thread runner must produce exactly what the in-process runner does.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { sharedModelFile, STORIES260K } from '../helpers/models.js';
import { loadModel, type LoadedModel } from '../../src/model/loaders/index.js';
import { referenceKernels } from '../../src/model/kernels/reference.js';
import { LocalModelRunner, RunnerInputError, buildForwardBatch } from '../../src/engine/model-runner.js';
import { WorkerModelRunner } from '../../src/engine/worker-runner.js';
import { DEFAULT_SAMPLING, type ModelRunner, type SamplingParams, type SchedulerOutput, type ScheduledSequence } from '../../src/engine/types.js';
import { NaiveLlama, argmax } from '../model/naive-llama.js';

const file = sharedModelFile(STORIES260K);
const BLOCK = 4;
const GREEDY: SamplingParams = { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: 1000 };

interface SeqPlan {
  seqId: number;
  prompt: number[];
  maxNew: number;
  /** Prefill chunk size (tokens of prompt computed per step). */
  chunk: number;
  sampling?: SamplingParams;
  seed?: number;
}

/**
 * A miniature scheduler: every step schedules each live sequence's next prefill chunk, or its newest
 * token once the prompt is in; blocks are handed out from a scattered pool as positions need them.
 * Returns the generated tokens per seqId.
 */
async function drive(runner: ModelRunner, plans: SeqPlan[]): Promise<Map<number, number[]>> {
  const pool = [13, 2, 8, 30, 5, 21, 0, 17, 26, 11, 3, 29, 9, 24, 6, 19, 1, 27, 14, 4, 22, 10, 31, 7, 16, 25, 12, 28, 18, 23, 15, 20];
  const st = plans.map((p) => ({ p, tokens: [...p.prompt], computed: 0, out: [] as number[], table: [] as number[], announced: false, done: false }));
  let finished: number[] = [];
  for (let step = 0; st.some((s) => !s.done); step++) {
    const out: SchedulerOutput = { step, scheduled: [], newSequences: [], finishedSeqIds: finished, blockCopies: [], numBatchedTokens: 0 };
    finished = [];
    for (const s of st) {
      if (s.done) continue;
      if (!s.announced) {
        out.newSequences.push({ seqId: s.p.seqId, promptTokenIds: s.p.prompt, outputTokenIds: [], sampling: s.p.sampling ?? GREEDY, seed: s.p.seed ?? 0 });
        s.announced = true;
      }
      const n = s.computed < s.p.prompt.length ? Math.min(s.p.chunk, s.p.prompt.length - s.computed) : 1;
      while (s.table.length * BLOCK < s.computed + n) s.table.push(pool.shift()!);
      const sch: ScheduledSequence = { seqId: s.p.seqId, tokenIds: s.tokens.slice(s.computed, s.computed + n), startPosition: s.computed, blockTable: [...s.table], sample: s.computed + n === s.tokens.length };
      out.scheduled.push(sch);
      out.numBatchedTokens += n;
      s.computed += n;
    }
    const res = await runner.execute(out);
    assert.ok(res.forwardMs >= 0 && res.sampleMs >= 0);
    const expectSampled = out.scheduled.filter((x) => x.sample).map((x) => x.seqId);
    assert.deepEqual(res.sampled.map((x) => x.seqId), expectSampled, `step ${step}: sampled sequences`);
    for (const tok of res.sampled) {
      const s = st.find((x) => x.p.seqId === tok.seqId)!;
      s.tokens.push(tok.tokenId);
      s.out.push(tok.tokenId);
      if (s.out.length === s.p.maxNew) {
        s.done = true;
        finished.push(s.p.seqId);
      }
    }
  }
  return new Map(st.map((s) => [s.p.seqId, s.out]));
}

function naiveGreedy(m: LoadedModel, prompt: number[], maxNew: number): number[] {
  const naive = new NaiveLlama(m.config, m.weights, prompt.length + maxNew);
  let logits = new Float32Array(0);
  prompt.forEach((t, pos) => (logits = naive.forward(t, pos)));
  const out: number[] = [];
  for (let i = 0; i < maxNew; i++) {
    const t = argmax(logits);
    out.push(t);
    if (i + 1 < maxNew) logits = naive.forward(t, prompt.length + i);
  }
  return out;
}

describe('buildForwardBatch', () => {
  it('flattens sequences into rows with positions, slots, padding rows and logit rows', () => {
    const { batch, sampleSeqIds } = buildForwardBatch(
      [
        { seqId: 7, tokenIds: [5, 6, 7], startPosition: 2, blockTable: [3, 1], sample: false },
        { seqId: 9, tokenIds: [8], startPosition: 4, blockTable: [0, 2], sample: true, padRows: 2 },
      ],
      4,
    );
    assert.deepEqual([...batch.tokens], [5, 6, 7, 8, 0, 0]);
    assert.deepEqual([...batch.meta.positions], [2, 3, 4, 4, 4, 4]);
    assert.deepEqual([...batch.meta.rowSeq], [0, 0, 0, 1, 1, 1]);
    // pos 2,3 -> block 3 (slots 14, 15); pos 4 -> block 1 (slot 4); seq 9 pos 4 -> block 2 (slot 8); padding writes nothing.
    assert.deepEqual([...batch.meta.slotMapping], [14, 15, 4, 8, -1, -1]);
    assert.deepEqual([...batch.meta.blockTables], [3, 1, 0, 2]);
    assert.equal(batch.meta.maxBlocksPerSeq, 2);
    assert.deepEqual([...batch.logitRows], [3]);
    assert.deepEqual(sampleSeqIds, [9]);
  });

  it("computes a finished sequence's padding row through the output head, after the rows that sample", () => {
    const { batch, sampleSeqIds, sampleCounts } = buildForwardBatch(
      [
        { seqId: 3, tokenIds: [], startPosition: 6, blockTable: [0, 1], sample: false, padRows: 1 },
        { seqId: 4, tokenIds: [9], startPosition: 5, blockTable: [2, 3], sample: true },
      ],
      4,
    );
    // Row 0 pads finished seq 3 at its last cached position (5); row 1 is seq 4's decode.
    assert.deepEqual([...batch.meta.positions], [5, 5]);
    assert.deepEqual([...batch.meta.slotMapping], [-1, 13]);
    assert.deepEqual([...batch.logitRows], [1, 0]);
    assert.deepEqual(sampleSeqIds, [4]);
    assert.deepEqual(sampleCounts, [1]);
  });

  it('names the sequence whose block table is too short', () => {
    assert.throws(
      () => buildForwardBatch([{ seqId: 4, tokenIds: [1, 2], startPosition: 3, blockTable: [0], sample: true }], 4),
      (e: Error) => e instanceof RunnerInputError && /sequence 4: position 4 needs block 1, its block table has 1 blocks/.test(e.message),
    );
  });
});

describe('model runners on stories260K', { skip: file.missing }, () => {
  let model: LoadedModel;
  const plans: SeqPlan[] = [
    { seqId: 0, prompt: [1, 400, 300, 200, 100, 50, 25, 12, 6, 3], maxNew: 12, chunk: 4 },
    { seqId: 1, prompt: [1, 7, 77, 177, 277], maxNew: 16, chunk: 2 },
  ];
  let localTokens: Map<number, number[]>;

  before(async () => {
    model = await loadModel(file.path);
  });

  it('LocalModelRunner: chunked prefill then decode of two sequences equals the naive oracle', async () => {
    const runner = await LocalModelRunner.create({ model, kernels: referenceKernels, numBlocks: 32, blockSize: BLOCK, eogIds: [2] });
    localTokens = await drive(runner, plans);
    for (const p of plans) assert.deepEqual(localTokens.get(p.seqId), naiveGreedy(model, p.prompt, p.maxNew), `sequence ${p.seqId}`);
    // Finished sequences were announced in finishedSeqIds... the last ones are still held until the next step.
    await runner.execute({ step: 99, scheduled: [], newSequences: [], finishedSeqIds: [0, 1], blockCopies: [], numBatchedTokens: 0 });
    assert.deepEqual(runner.activeSeqIds, []);
    await runner.close();
  });

  it('LocalModelRunner applies block copies before the forward pass and rejects unknown sequences', async () => {
    const runner = await LocalModelRunner.create({ model, kernels: referenceKernels, numBlocks: 8, blockSize: BLOCK, eogIds: [2] });
    // The default KV cache holds f16 bits (0x3800 is 0.5).
    assert.equal(runner.kv.dtype, 'f16');
    const k0 = runner.kv.k[0]!;
    assert.ok(k0 instanceof Uint16Array);
    const bf = BLOCK * model.config.nKvHeads * model.config.headDim;
    k0.fill(0x3800, 3 * bf, 4 * bf);
    await runner.execute({ step: 0, scheduled: [], newSequences: [], finishedSeqIds: [], blockCopies: [[3, 6]], numBatchedTokens: 0 });
    assert.ok(k0.subarray(6 * bf, 7 * bf).every((v) => v === 0x3800));
    assert.ok(k0.subarray(5 * bf, 6 * bf).every((v) => v === 0), 'only the target block changes');
    await assert.rejects(
      runner.execute({ step: 1, scheduled: [{ seqId: 42, tokenIds: [1], startPosition: 0, blockTable: [0], sample: true }], newSequences: [], finishedSeqIds: [], blockCopies: [], numBatchedTokens: 1 }),
      (e: Error) => e instanceof RunnerInputError && /sequence 42 is scheduled for sampling but was never announced/.test(e.message),
    );
    await runner.close();
  });

  it('padding rows (static batching) change neither the sampled token nor the KV cache', async () => {
    const mk = () => LocalModelRunner.create({ model, kernels: referenceKernels, numBlocks: 4, blockSize: BLOCK, eogIds: [2] });
    const plain = await mk();
    const padded = await mk();
    const announce = [{ seqId: 3, promptTokenIds: [1, 5, 9], outputTokenIds: [], sampling: GREEDY, seed: 0 }];
    const run = (r: LocalModelRunner, padRows: number | undefined, step: number, seq: Partial<ScheduledSequence>) =>
      r.execute({
        step,
        scheduled: [{ seqId: 3, tokenIds: [1, 5, 9], startPosition: 0, blockTable: [2, 0], sample: true, padRows, ...seq }],
        newSequences: step === 0 ? announce : [],
        finishedSeqIds: [],
        blockCopies: [],
        numBatchedTokens: 3 + (padRows ?? 0),
      });
    const a = await run(plain, undefined, 0, {});
    const b = await run(padded, 2, 0, {});
    assert.deepEqual(b.sampled, a.sampled);
    // A finished sequence held in a static batch: no new tokens, only padding at its last position.
    await run(padded, 3, 1, { tokenIds: [], startPosition: 3, sample: false });
    for (let l = 0; l < model.config.nLayers; l++) {
      assert.deepEqual(padded.kv.k[l], plain.kv.k[l], `layer ${l} keys`);
      assert.deepEqual(padded.kv.v[l], plain.kv.v[l], `layer ${l} values`);
    }
    // The next decode step agrees too.
    const tok = a.sampled[0].tokenId;
    const next = { tokenIds: [tok], startPosition: 3 };
    assert.deepEqual((await run(padded, 1, 2, next)).sampled, (await run(plain, undefined, 2, next)).sampled);
    await plain.close();
    await padded.close();
  });

  it('WorkerModelRunner gives the same tokens as LocalModelRunner, survives a bad step, and closes', async () => {
    const sampled: SamplingParams = { ...DEFAULT_SAMPLING, temperature: 0.9, topP: 0.95, maxTokens: 1000 };
    const seeded = plans.map((p, i) => ({ ...p, sampling: sampled, seed: 1234 + i }));
    const local = await LocalModelRunner.create({ model, kernels: referenceKernels, numBlocks: 32, blockSize: BLOCK, eogIds: [2] });
    const localSeeded = await drive(local, seeded);

    const worker = await WorkerModelRunner.create({ modelPath: file.path, backend: 'typescript', numBlocks: 32, blockSize: BLOCK, eogIds: [2] });
    try {
      assert.equal(worker.kernelsName, 'typescript');
      assert.deepEqual(await drive(worker, plans), localTokens);
      // A step the worker cannot run rejects that call with the worker's own message...
      await assert.rejects(
        worker.execute({ step: 5, scheduled: [{ seqId: 0, tokenIds: [1], startPosition: 9, blockTable: [0], sample: false }], newSequences: [], finishedSeqIds: [], blockCopies: [], numBatchedTokens: 1 }),
        (e: Error) => e.name === 'RunnerInputError' && /sequence 0: position 9 needs block 2/.test(e.message),
      );
      // ...and the worker keeps serving. Seeded random sampling is reproduced exactly too.
      assert.deepEqual(await drive(worker, seeded.map((p) => ({ ...p, seqId: p.seqId + 10 }))), new Map([...localSeeded].map(([k, v]) => [k + 10, v])));
    } finally {
      await worker.close();
    }
    await assert.rejects(worker.execute({ step: 0, scheduled: [], newSequences: [], finishedSeqIds: [], blockCopies: [], numBatchedTokens: 0 }), /closed/);
    await local.close();
  });

  it('WorkerModelRunner.create rejects with the loader error for a missing model file', async () => {
    await assert.rejects(
      WorkerModelRunner.create({ modelPath: '/nonexistent/model.gguf', backend: 'typescript', numBlocks: 4, blockSize: 4, eogIds: [] }),
      (e: Error) => /nonexistent\/model\.gguf/.test(e.message),
    );
  });
});
