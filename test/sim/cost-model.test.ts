// The roofline cost model against hand-computed figures: parameter counts of real models, KV sizes,
// a memory-bound decode step and a compute-bound prefill on an A100, and the batch shapes the
// scheduler's decisions turn into.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { blockParams, COLD_AFTER_IDLE_MS, costOfFeatures, profileKvBytesPerToken, kvCapacityTokens, curveMs, stepCost, stepFeatures, totalParams, type HardwareProfile, type SeqShape } from '../../src/sim/cost-model.js';
import { HARDWARE, MODELS } from '../../src/sim/profiles.js';
import { seqShape, stepShape, CostModelTimer } from '../../src/sim/step-time.js';
import type { SchedulerOutput } from '../../src/engine/types.js';

const close = (a: number, b: number, rel = 1e-9) => assert.ok(Math.abs(a - b) <= rel * Math.abs(b), `${a} != ${b}`);

test('parameter counts and KV bytes of the built-in models match the published figures', () => {
  // Llama-2-7B: 6,738,415,616 parameters; MHA, fp16 KV: 2 x 32 layers x 4096 x 2 bytes = 512 KiB per token.
  assert.equal(totalParams(MODELS['llama-2-7b']), 6_738_415_616);
  assert.equal(profileKvBytesPerToken(MODELS['llama-2-7b']), 524_288);
  // Llama-3-8B: 8,030,261,248 parameters; GQA with 8 KV heads of 128: 128 KiB per token.
  assert.equal(totalParams(MODELS['llama-3-8b']), 8_030_261_248);
  assert.equal(profileKvBytesPerToken(MODELS['llama-3-8b']), 131_072);
  // llama2.c's 110M: 12 layers of dim 768.
  close(totalParams(MODELS['110m']) / 1e6, 134.1, 0.01);
});

test('KV capacity: memory minus reserve minus weights, divided by KV bytes per token', () => {
  const hw = HARDWARE['A100-80GB'];
  const m = MODELS['llama-2-7b'];
  const free = (80 - 8) * 1e9 - 6_738_415_616 * 2;
  assert.equal(kvCapacityTokens(hw, m), Math.floor(free / 524_288));
  // A fixed KV budget (calibrated CPU profiles) overrides the memory arithmetic.
  assert.equal(kvCapacityTokens({ ...hw, kvCacheGB: 1 }, m), Math.floor(1e9 / 524_288));
});

const a100: HardwareProfile = HARDWARE['A100-80GB'];
const llama7b = MODELS['llama-2-7b'];

test('a decode step is memory-bound: weights plus every sequence\'s KV over the effective bandwidth, plus overheads', () => {
  const seqs: SeqShape[] = Array.from({ length: 8 }, () => ({ numTokens: 1, contextLen: 512, sample: true }));
  const c = stepCost(a100, llama7b, seqs);
  const weightBytes = (blockParams(llama7b) + 32000 * 4096) * 2;
  const kv = 8 * (512 + 1) * 524_288;
  close(c.bytes, weightBytes + kv);
  close(c.memMs, ((weightBytes + kv) / (2039e9 * 0.8)) * 1e3);
  assert.ok(c.memMs > c.computeMs);
  close(c.ms, 4 + (8 * 10) / 1e3 + c.memMs);
  assert.ok(c.ms > 9 && c.ms < 14, `a 7B decode step on an A100 takes ~10 ms, got ${c.ms}`);
});

test('a long prefill is compute-bound: 2 FLOPs per weight per token plus attention, over the effective peak', () => {
  const c = stepCost(a100, llama7b, [{ numTokens: 2048, contextLen: 2048, sample: true }]);
  const linear = 2 * blockParams(llama7b) * 2048 + 2 * 32000 * 4096;
  const attn = 4 * 32 * 4096 * ((2048 * 2049) / 2);
  close(c.flops, linear + attn);
  assert.ok(c.computeMs > c.memMs);
  close(c.computeMs, ((linear + attn) / (312e12 * 0.6)) * 1e3);
});

test('padding rows cost like rows (static batching\'s waste) and attend the sequence\'s context', () => {
  const base = stepFeatures(llama7b, [{ numTokens: 1, contextLen: 100, sample: true }]);
  const padded = stepFeatures(llama7b, [{ numTokens: 1, contextLen: 100, sample: true, padRows: 3 }]);
  assert.equal(padded.rows, base.rows + 3);
  close(padded.linearFlops - base.linearFlops, 3 * 2 * blockParams(llama7b));
  close(padded.attnFlops - base.attnFlops, 3 * 4 * 32 * 4096 * 100);
  assert.equal(padded.bytes, base.bytes, 'padding reads no extra KV');
});

test('scheduled sequences become shapes the way the runner lays out the batch', () => {
  // A prefill chunk continuing at position 32.
  assert.deepEqual(seqShape({ seqId: 0, tokenIds: [1, 2, 3, 4], startPosition: 32, blockTable: [], sample: false }), { numTokens: 4, contextLen: 36, sample: false });
  // A decode with static padding.
  assert.deepEqual(seqShape({ seqId: 0, tokenIds: [5], startPosition: 9, blockTable: [], sample: true, padRows: 2 }), { numTokens: 1, contextLen: 10, sample: true, padRows: 2 });
  // A finished row held as padding: no tokens, it attends its 9 cached positions.
  assert.deepEqual(seqShape({ seqId: 0, tokenIds: [], startPosition: 9, blockTable: [], sample: false, padRows: 1 }), { numTokens: 0, contextLen: 9, sample: false, padRows: 1 });
});

test('a CPU-style profile adds attention outside the roofline max and a per-row cost', () => {
  const cpu: HardwareProfile = { ...a100, attentionGflops: 10, perTokenUs: 50, bandwidthEfficiency: 1, computeEfficiency: 1 };
  const f = stepFeatures(llama7b, [{ numTokens: 16, contextLen: 64, sample: true }]);
  const c = costOfFeatures(cpu, f);
  close(c.attentionMs, (f.attnFlops / 10e9) * 1e3);
  close(c.ms, cpu.stepOverheadMs + (cpu.perSeqOverheadUs + 16 * 50) / 1e3 + Math.max(c.memMs, c.computeMs) + c.attentionMs);
  assert.equal(costOfFeatures(cpu, stepFeatures(llama7b, [])).ms, 0, 'an empty step costs nothing');
  // With a KV-read rate, the cache's bytes leave the roofline's memory side and are added on their own.
  const long = stepFeatures(llama7b, Array.from({ length: 8 }, () => ({ numTokens: 1, contextLen: 2000, sample: true })));
  assert.equal(long.kvBytes, 8 * 2001 * profileKvBytesPerToken(llama7b));
  const kv = costOfFeatures({ ...cpu, kvBandwidthGBs: 50 }, long);
  const plain = costOfFeatures(cpu, long);
  close(kv.memMs, ((long.bytes - long.kvBytes) / 2039e9) * 1e3);
  close(kv.attentionMs, plain.attentionMs + (long.kvBytes / 50e9) * 1e3);
  assert.ok(plain.memMs > kv.memMs);
});

test('a measured row curve replaces the roofline max: linear between its points, extended past its ends', () => {
  const curve: Array<[number, number]> = [[1, 2], [4, 3], [16, 9]];
  assert.equal(curveMs(curve, 1), 2);
  assert.equal(curveMs(curve, 2), 2 + 1 / 3);
  assert.equal(curveMs(curve, 10), 6);
  assert.equal(curveMs(curve, 32), 17, 'beyond the last point: along the last segment');
  assert.equal(curveMs(curve, 0), 0);
  const cpu: HardwareProfile = { ...a100, attentionGflops: 10, kvBandwidthGBs: 50, rowCurve: curve };
  const f = stepFeatures(llama7b, Array.from({ length: 10 }, () => ({ numTokens: 1, contextLen: 100, sample: true })));
  const c = costOfFeatures(cpu, f);
  close(c.ms, cpu.stepOverheadMs + (10 * cpu.perSeqOverheadUs) / 1e3 + 6 + c.attentionMs);
  // A step on an idle engine (more than COLD_AFTER_IDLE_MS since the last one) takes coldStepFactor times as long.
  const coldCpu = { ...cpu, coldStepFactor: 1.25 };
  close(costOfFeatures(coldCpu, f, 50).ms, 1.25 * c.ms);
  close(costOfFeatures(coldCpu, f, Infinity).ms, 1.25 * c.ms);
  close(costOfFeatures(coldCpu, f, COLD_AFTER_IDLE_MS / 2).ms, c.ms);
  close(costOfFeatures(cpu, f, 50).ms, c.ms); // no factor, no cold cost
});

test('afterPromptFactors: the k-th step without prompt rows after a prompt step costs factor k; prompt steps and later steps do not', () => {
  const hw: HardwareProfile = { ...a100, afterPromptFactors: [1.4, 1.2] };
  const decode = stepFeatures(llama7b, Array.from({ length: 8 }, () => ({ numTokens: 1, contextLen: 300, sample: true })));
  const mixed = stepFeatures(llama7b, [{ numTokens: 64, contextLen: 64, sample: true }, { numTokens: 1, contextLen: 300, sample: true }]);
  const base = costOfFeatures(a100, decode).ms;
  close(costOfFeatures(hw, decode, 0, 1).ms, 1.4 * base);
  close(costOfFeatures(hw, decode, 0, 2).ms, 1.2 * base);
  close(costOfFeatures(hw, decode, 0, 3).ms, base);
  close(costOfFeatures(hw, decode, 0, 0).ms, base); // no prompt step before it
  close(costOfFeatures(hw, decode, 0, Infinity).ms, base);
  close(costOfFeatures(hw, mixed, 0, 1).ms, costOfFeatures(a100, mixed).ms); // a step with prompt rows is priced as it is
  // With a cold factor too, both apply.
  close(costOfFeatures({ ...hw, coldStepFactor: 1.5 }, decode, 50, 1).ms, 1.5 * 1.4 * base);

  // The step timer counts the steps since the last one with prompt rows.
  const out = (prompt: boolean): SchedulerOutput => ({
    step: 0,
    scheduled: [
      { seqId: 0, tokenIds: [1], startPosition: 299, blockTable: [], sample: true },
      ...(prompt ? [{ seqId: 1, tokenIds: Array.from({ length: 64 }, () => 1), startPosition: 0, blockTable: [], sample: true }] : []),
    ],
    newSequences: [],
    finishedSeqIds: [],
    blockCopies: [],
    numBatchedTokens: prompt ? 65 : 1,
  });
  const timer = new CostModelTimer(hw, llama7b);
  const plain = new CostModelTimer(a100, llama7b);
  const ratios = [false, true, false, false, false, true, true, false].map((p) => timer.stepTimeMs(out(p)) / plain.stepTimeMs(out(p)));
  assert.deepEqual(ratios.map((r) => Number(r.toFixed(9))), [1, 1, 1.4, 1.2, 1, 1, 1, 1.4]);
});

test('more work never makes a step cheaper (more rows, longer contexts, more sequences)', () => {
  const shape = fc.record({ numTokens: fc.integer({ min: 1, max: 512 }), contextLen: fc.integer({ min: 0, max: 4096 }), sample: fc.boolean(), padRows: fc.integer({ min: 0, max: 8 }) });
  fc.assert(
    fc.property(fc.array(shape, { minLength: 1, maxLength: 16 }), shape, fc.constantFrom(...Object.values(HARDWARE)), (seqs, extra, hw) => {
      const fix = (s: SeqShape) => ({ ...s, contextLen: Math.max(s.contextLen, s.numTokens) });
      const a = stepCost(hw, llama7b, seqs.map(fix)).ms;
      const more = stepCost(hw, llama7b, [...seqs.map(fix), fix(extra)]).ms;
      const longer = stepCost(hw, llama7b, seqs.map((s) => fix({ ...s, contextLen: s.contextLen + 100, numTokens: s.numTokens }))).ms;
      return more >= a && longer >= a;
    }),
    { seed: 42, numRuns: 200 },
  );
});

test('the step timer prices SchedulerOutputs and accumulates FLOPs, bytes and utilisation', () => {
  const timer = new CostModelTimer(a100, llama7b);
  const out: SchedulerOutput = {
    step: 0,
    scheduled: [
      { seqId: 0, tokenIds: [1], startPosition: 99, blockTable: [], sample: true },
      { seqId: 1, tokenIds: [1, 2, 3], startPosition: 0, blockTable: [], sample: true },
    ],
    newSequences: [],
    finishedSeqIds: [],
    blockCopies: [],
    numBatchedTokens: 4,
  };
  const ms = timer.stepTimeMs(out);
  const expected = stepCost(a100, llama7b, [{ numTokens: 1, contextLen: 100, sample: true }, { numTokens: 3, contextLen: 3, sample: true }]);
  close(ms, expected.ms);
  timer.stepTimeMs(out);
  assert.equal(timer.totals.steps, 2);
  close(timer.totals.bytes, 2 * expected.bytes);
  const u = timer.utilization(2 * ms);
  close(u.mbu, (2 * expected.bytes) / (2 * ms / 1e3) / 2039e9);
  close(u.mfu, (2 * expected.flops) / (2 * ms / 1e3) / 312e12);
});

test('prompt chunks cost what a calibrated profile says a prompt costs the engine beyond the forward pass', () => {
  const seqs: SeqShape[] = [{ numTokens: 100, contextLen: 100, sample: true }, { numTokens: 28, contextLen: 228, sample: false }, ...Array.from({ length: 5 }, () => ({ numTokens: 1, contextLen: 300, sample: true }))];
  const f = stepFeatures(llama7b, seqs);
  assert.equal(f.prefillRows, 128, 'rows of the two chunks; decodes are not prompt rows');
  assert.equal(f.prefillSeqs, 2);
  const plain = costOfFeatures(a100, f).ms;
  close(costOfFeatures({ ...a100, perPrefillRowUs: 10, perPrefillSeqUs: 500 }, f).ms, plain + (128 * 10 + 2 * 500) / 1e3);
  // A step of decodes only pays nothing extra.
  const decodes = stepFeatures(llama7b, seqs.slice(2));
  assert.equal(decodes.prefillRows, 0);
  close(costOfFeatures({ ...a100, perPrefillRowUs: 10, perPrefillSeqUs: 500 }, decodes).ms, costOfFeatures(a100, decodes).ms);
});

test("a calibrated profile's KV-read curve prices a step's KV bytes in place of one bandwidth", () => {
  const MB = 1 << 20;
  const shape = (B: number, L: number) => Array.from({ length: B }, () => ({ numTokens: 1, contextLen: L, sample: true }));
  const f = stepFeatures(llama7b, shape(4, 300));
  const withBandwidth = costOfFeatures({ ...a100, kvBandwidthGBs: 50 }, f);
  const curve: Array<[number, number]> = [[0, 0], [64 * MB, 2], [1024 * MB, 10]];
  const withCurve = costOfFeatures({ ...a100, kvBandwidthGBs: 50, kvReadCurve: curve }, f);
  // Same step, the KV part swapped: bytes / bandwidth out, the curve's value at those bytes in.
  const between = f.kvBytes <= 64 * MB ? (2 * f.kvBytes) / (64 * MB) : 2 + (8 * (f.kvBytes - 64 * MB)) / (960 * MB);
  close(withCurve.attentionMs - withBandwidth.attentionMs, between - (f.kvBytes / 50e9) * 1e3);
  // Alone (no bandwidth given) it still takes the KV bytes out of the roofline's memory traffic.
  close(costOfFeatures({ ...a100, kvReadCurve: curve }, f).memMs, withBandwidth.memMs);
});

test("a calibrated profile's prompt-excess curve prices a step by its prompt rows, linear between points, flat past the last", () => {
  const curve: Array<[number, number]> = [[0, 0], [64, 1], [256, 2.5], [1024, 3]];
  const priced = (seqs: SeqShape[]) => costOfFeatures({ ...a100, prefillExcessCurve: curve }, stepFeatures(llama7b, seqs)).ms - costOfFeatures(a100, stepFeatures(llama7b, seqs)).ms;
  // 100 + 28 prompt rows: 1 + 1.5 * 64 / 192 ms. The decodes riding along add no prompt rows.
  const decodes = Array.from({ length: 5 }, () => ({ numTokens: 1, contextLen: 300, sample: true }));
  close(priced([{ numTokens: 100, contextLen: 100, sample: true }, { numTokens: 28, contextLen: 228, sample: false }, ...decodes]), 1 + (1.5 * 64) / 192);
  close(priced([{ numTokens: 32, contextLen: 32, sample: true }]), 0.5);
  // Past the last point it stays at the last value; decode-only steps pay nothing.
  close(priced([{ numTokens: 1792, contextLen: 1792, sample: true }]), 3);
  close(priced(Array.from({ length: 8 }, () => ({ numTokens: 256, contextLen: 256, sample: true }))), 3);
  close(priced(decodes), 0);
});

test('the timer\'s allocation-free features equal the cost model\'s features of the step\'s shape', () => {
  const timer = new CostModelTimer(a100, MODELS['llama-3-8b']);
  const seq = fc.record({ n: fc.integer({ min: 0, max: 64 }), start: fc.integer({ min: 0, max: 2000 }), sample: fc.boolean(), pad: fc.integer({ min: 0, max: 4 }) });
  fc.assert(
    fc.property(fc.array(seq, { maxLength: 12 }), (seqs) => {
      const out: SchedulerOutput = {
        step: 0,
        scheduled: seqs.map((s, i) => ({ seqId: i, tokenIds: Array.from({ length: s.n }, () => 1), startPosition: s.start, blockTable: [], sample: s.sample && s.n > 0, ...(s.pad ? { padRows: s.pad } : {}) })),
        newSequences: [],
        finishedSeqIds: [],
        blockCopies: [],
        numBatchedTokens: 0,
      };
      const a = timer.features(out);
      const b = stepFeatures(MODELS['llama-3-8b'], stepShape(out));
      for (const k of ['numSeqs', 'rows', 'bytes', 'kvBytes', 'linearFlops', 'attnFlops', 'prefillRows', 'prefillSeqs'] as const) close(a[k] + 1, b[k] + 1, 1e-12);
    }),
    { seed: 7, numRuns: 200 },
  );
});
