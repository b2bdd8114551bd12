// The draft runner against an oracle that keeps no state: at every step, each sequence's proposals
// must be the draft model's greedy continuation of the sequence computed from scratch (a fresh KV
// cache, the whole sequence prefilled, then one token at a time) — bit for bit, as batch invariance
// says. The driver plays the target: it accepts a random run of each sequence's proposals and adds a
// token of its own, leaves sequences out of some steps (they catch up later, a few rows per step),
// and replaces blocks of their tables as copy-on-write does (the draft must not trust those rows).
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeModel } from '../../src/model/make-model.js';
import { loadModel } from '../../src/model/loaders/index.js';
import { getKernels } from '../../src/model/kernels/index.js';
import { TransformerModel } from '../../src/model/transformer.js';
import { createKvStorage } from '../../src/model/kv-storage.js';
import { DraftRunner } from '../../src/engine/draft-runner.js';
import { buildForwardBatch } from '../../src/engine/forward-batch.js';
import type { ProposalRequest } from '../../src/engine/spec/proposer.js';
import { rng } from '../model/ragged-batch.js';

const BLOCK = 4;

describe('draft runner', () => {
  let model: TransformerModel;
  before(async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'stepwise-draft-runner-')), 'draft.gguf');
    await makeModel({ preset: 'tiny', dtype: 'f32', seed: 2, out: path });
    const m = await loadModel(path);
    model = new TransformerModel(m.config, m.weights, await getKernels('auto', { threads: 1 }));
  });

  /** The draft's greedy continuation of `tokens`, from nothing. */
  function oracle(tokens: number[], k: number): number[] {
    const blocks = Math.ceil((tokens.length + k) / BLOCK);
    const kv = createKvStorage(model.config, blocks, BLOCK, 'f16');
    const table = Array.from({ length: blocks }, (_, i) => i);
    const vocab = model.config.vocabSize;
    const out: number[] = [];
    let rows = tokens;
    let start = 0;
    for (let i = 0; i < k; i++) {
      const { batch } = buildForwardBatch([{ seqId: 0, tokenIds: rows, startPosition: start, blockTable: table, sample: true }], BLOCK);
      const logits = model.forward(batch, kv);
      let best = 0;
      for (let v = 1; v < vocab; v++) if (logits[v]! > logits[best]!) best = v;
      out.push(best);
      start += rows.length;
      rows = [best];
    }
    return out;
  }

  it('proposes what a stateless draft would, through acceptances, rejections, skipped steps, catch-ups and replaced blocks', () => {
    const random = rng(7);
    const kv = createKvStorage(model.config, 256, BLOCK, 'f16');
    // A catch-up budget of 6 rows makes the long prompts catch up over several steps.
    const draft = new DraftRunner(model, kv, 6);
    let nextBlock = 0;
    const seqs = [3, 9, 17].map((len, seqId) => ({
      seqId,
      prompt: Array.from({ length: len }, (_, j) => 1 + ((j * 37 + seqId * 11) % 500)),
      output: [] as number[],
      table: [] as number[],
      proposals: [] as number[],
    }));
    let checked = 0;
    let caughtUp = 0;
    for (let step = 0; step < 60; step++) {
      const requests: ProposalRequest[] = [];
      for (const s of seqs) {
        // The target's turn: accept a run of last step's proposals, then one token of its own.
        const accepted = Math.floor(random() * (s.proposals.length + 1));
        s.output.push(...s.proposals.slice(0, accepted));
        let own = Math.floor(random() * 500);
        if (accepted < s.proposals.length && own === s.proposals[accepted]) own = (own + 1) % 500;
        s.output.push(own);
        s.proposals = [];
        const total = s.prompt.length + s.output.length;
        const k = 1 + Math.floor(random() * 4);
        // Slots through the last proposal's input; a new table, as the KV cache manager hands out.
        const table = s.table.slice();
        while (table.length * BLOCK < total + k - 1) table.push(nextBlock++);
        // Copy-on-write now and then: the block the newest token goes into gets a new id (the draft's
        // rows are not copied); rarely an earlier block, which sets a long catch-up going.
        const r = random();
        if (r < 0.15) table[Math.floor((total - 1) / BLOCK)] = nextBlock++;
        else if (r < 0.18) table[Math.floor(random() * table.length)] = nextBlock++;
        s.table = table;
        // Some steps the scheduler asks for nothing (a big batch, a paused sequence).
        if (random() < 0.25) continue;
        requests.push({ seqId: s.seqId, promptTokenIds: s.prompt, outputTokenIds: s.output, blockTable: s.table, numTokens: k });
      }
      const proposals = draft.propose(requests);
      for (const p of proposals) {
        const s = seqs[p.seqId]!;
        const req = requests.find((r) => r.seqId === p.seqId)!;
        assert.deepEqual(p.tokenIds, oracle([...s.prompt, ...s.output], req.numTokens), `step ${step}, sequence ${p.seqId}`);
        s.proposals = p.tokenIds;
        checked++;
      }
      caughtUp += requests.length - proposals.length;
    }
    assert.ok(checked > 80, `${checked} proposals checked`);
    assert.ok(caughtUp > 0, 'some sequences caught up without proposing');
  });

  it("reuses its rows of another sequence's full blocks on a prefix hit, and only for the same tokens", () => {
    const draft = new DraftRunner(model, createKvStorage(model.config, 32, BLOCK, 'f16'));
    const prompt = Array.from({ length: 21 }, (_, j) => 1 + ((j * 53) % 400));
    const k = 3;
    const a = { seqId: 0, promptTokenIds: prompt, outputTokenIds: [7], blockTable: [0, 1, 2, 3, 4, 5, 6], numTokens: k };
    assert.deepEqual(draft.propose([a])[0]!.tokenIds, oracle([...prompt, 7], k));
    assert.equal(draft.rowsComputed, 22 + (k - 1), 'the first sequence computes its whole prompt');
    // Same prompt, the first 5 blocks shared (a prefix hit; 20 of 22 tokens): 2 rows, then k - 1.
    let before = draft.rowsComputed;
    const b = { seqId: 1, promptTokenIds: prompt, outputTokenIds: [9], blockTable: [0, 1, 2, 3, 4, 10, 11], numTokens: k };
    assert.deepEqual(draft.propose([b])[0]!.tokenIds, oracle([...prompt, 9], k));
    assert.equal(draft.rowsComputed - before, 2 + (k - 1));
    // The first 8 tokens shared, then its own: only blocks 0 and 1 are reused.
    before = draft.rowsComputed;
    const other = [...prompt.slice(0, 8), ...prompt.slice(8).map((t) => t + 1)];
    const c = { seqId: 2, promptTokenIds: other, outputTokenIds: [5], blockTable: [0, 1, 12, 13, 14, 15, 16], numTokens: k };
    assert.deepEqual(draft.propose([c])[0]!.tokenIds, oracle([...other, 5], k));
    assert.equal(draft.rowsComputed - before, 22 - 8 + (k - 1));
  });

  it('proposes no more than the block table has slots for', () => {
    const draft = new DraftRunner(model, createKvStorage(model.config, 8, BLOCK, 'f16'));
    // Newest token at position 6 of a 2-block table: slots 6 and 7 are left, so two proposals.
    const req = { seqId: 0, promptTokenIds: [1, 2, 3, 4, 5], outputTokenIds: [6, 7], blockTable: [3, 5], numTokens: 4 };
    const [p] = draft.propose([req]);
    assert.deepEqual(p!.tokenIds, oracle([1, 2, 3, 4, 5, 6, 7], 2));
    // No slot past the newest token: nothing proposed.
    assert.deepEqual(draft.propose([{ ...req, outputTokenIds: [6, 7, 8, 9], blockTable: [3, 5] }]), []);
  });
});
