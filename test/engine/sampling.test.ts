import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { sampleToken, samplingDistribution, adjustedLogits, SamplingError, type SamplingContext } from '../../src/engine/sampling.js';
import { resolveSamplingParams, InvalidParamError } from '../../src/engine/sampling-params.js';
import { selectTopK } from '../../src/engine/top-k.js';
import { deriveSeed, philox2x32, uniformAt } from '../../src/engine/counter-rng.js';
import { DEFAULT_SAMPLING, type SamplingParams } from '../../src/engine/types.js';

function ctx(logitsParams: Partial<SamplingParams>, more: Partial<Omit<SamplingContext, 'params'>> = {}): SamplingContext {
  return {
    params: resolveSamplingParams(logitsParams),
    seed: more.seed ?? 1234,
    promptTokenIds: more.promptTokenIds ?? [],
    outputTokenIds: more.outputTokenIds ?? [],
    eogIds: more.eogIds ?? new Set<number>(),
  };
}

const f32 = (xs: number[]): Float32Array => Float32Array.from(xs);

function softmax(xs: number[]): number[] {
  const m = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

/** The distribution as a dense array over the vocabulary (0 for tokens that cannot be drawn). */
function dense(logits: Float32Array, c: SamplingContext): number[] {
  const out = new Array<number>(logits.length).fill(0);
  for (const { tokenId, prob } of samplingDistribution(logits, c)) out[tokenId] = prob;
  return out;
}

function assertClose(actual: number[], expected: number[], tol = 1e-6): void {
  assert.equal(actual.length, expected.length, `length ${actual.length} vs ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    assert.ok(Math.abs(actual[i]! - expected[i]!) <= tol, `index ${i}: ${actual[i]} vs ${expected[i]} (all: ${actual} vs ${expected})`);
  }
}

/** Deterministic pseudo-random logits for larger vocabularies. */
function randomLogits(v: number, seed: number, scale = 4): Float32Array {
  const out = new Float32Array(v);
  for (let i = 0; i < v; i++) out[i] = (uniformAt(seed, i) * 2 - 1) * scale;
  return out;
}

describe('counter RNG', () => {
  test('Philox-2x32-10 matches the Random123 known-answer vectors', () => {
    const out = [0, 0];
    const hex = (): string => out.map((x) => x.toString(16).padStart(8, '0')).join(' ');
    philox2x32(0, 0, 0, out);
    assert.equal(hex(), 'ff1dae59 6cd10df2');
    philox2x32(0xffffffff, 0xffffffff, 0xffffffff, out);
    assert.equal(hex(), '2c3f628b ab4fd7ad');
    philox2x32(0x243f6a88, 0x85a308d3, 0x13198a2e, out);
    assert.equal(hex(), 'dd7ce038 f62a4c12');
  });

  test('uniformAt is a pure function of (seed, step), in [0, 1), roughly uniform', () => {
    assert.equal(uniformAt(7, 3), uniformAt(7, 3));
    assert.notEqual(uniformAt(7, 3), uniformAt(7, 4));
    assert.notEqual(uniformAt(7, 3), uniformAt(8, 3));
    // Seeds that differ only in their high word give different streams.
    assert.notEqual(uniformAt(5, 0), uniformAt(5 + 2 ** 32, 0));
    assert.notEqual(uniformAt(-1, 0), uniformAt(2 ** 32 - 1, 0));
    const bins = new Array<number>(10).fill(0);
    const n = 20000;
    for (let i = 0; i < n; i++) {
      const u = uniformAt(99, i);
      assert.ok(u >= 0 && u < 1);
      bins[Math.floor(u * 10)]!++;
    }
    // Chi-square with 9 degrees of freedom; 27.9 is the 0.001 critical value.
    const chi2 = bins.reduce((s, b) => s + (b - n / 10) ** 2 / (n / 10), 0);
    assert.ok(chi2 < 27.9, `chi-square ${chi2} over ${bins}`);
  });
});

describe('resolveSamplingParams', () => {
  test('fills defaults, treats undefined as unset, and copies arrays', () => {
    assert.deepEqual(resolveSamplingParams({}), DEFAULT_SAMPLING);
    assert.deepEqual(resolveSamplingParams(), DEFAULT_SAMPLING);
    const stop = ['\n\n'];
    const p = resolveSamplingParams({ temperature: 0, maxTokens: 5, topP: undefined, stop, seed: 3 });
    assert.equal(p.temperature, 0);
    assert.equal(p.maxTokens, 5);
    assert.equal(p.topP, 1);
    assert.equal(p.seed, 3);
    stop.push('x');
    assert.deepEqual(p.stop, ['\n\n']);
  });

  test('accepts the edges of every range', () => {
    const p = resolveSamplingParams({
      temperature: 0,
      topK: -1,
      topP: 1,
      minP: 1,
      presencePenalty: -2,
      frequencyPenalty: 2,
      repetitionPenalty: 0.01,
      logprobs: 20,
      minTokens: 7,
      maxTokens: 7,
      seed: -5,
      stop: ['a', 'b', 'c', 'd', 'e'],
      stopTokenIds: [0, 5],
    });
    assert.equal(p.logprobs, 20);
    assert.equal(resolveSamplingParams({ logprobs: 0 }).logprobs, 0);
    assert.equal(resolveSamplingParams({ topP: 1e-9 }).topP, 1e-9);
  });

  const bad: Array<[string, Record<string, unknown>]> = [
    ['temperature', { temperature: -0.1 }],
    ['temperature', { temperature: Number.NaN }],
    ['temperature', { temperature: Infinity }],
    ['temperature', { temperature: '1' }],
    ['topP', { topP: 0 }],
    ['topP', { topP: 1.01 }],
    ['topK', { topK: -2 }],
    ['topK', { topK: 2.5 }],
    ['minP', { minP: -0.1 }],
    ['minP', { minP: 1.5 }],
    ['presencePenalty', { presencePenalty: 2.01 }],
    ['frequencyPenalty', { frequencyPenalty: -2.5 }],
    ['repetitionPenalty', { repetitionPenalty: 0 }],
    ['repetitionPenalty', { repetitionPenalty: -1 }],
    ['maxTokens', { maxTokens: 0 }],
    ['maxTokens', { maxTokens: 1.5 }],
    ['n', { n: 0 }],
    ['logprobs', { logprobs: 21 }],
    ['logprobs', { logprobs: -1 }],
    ['logprobs', { logprobs: 1.5 }],
    ['seed', { seed: 1.5 }],
    ['seed', { seed: '7' }],
    ['stop', { stop: 'x' }],
    ['stop', { stop: ['ok', ''] }],
    ['stop', { stop: [3] }],
    ['stopTokenIds', { stopTokenIds: [1, -1] }],
    ['stopTokenIds', { stopTokenIds: [0.5] }],
    ['ignoreEos', { ignoreEos: 'yes' }],
    ['minTokens', { minTokens: -1 }],
    ['minTokens', { minTokens: 10, maxTokens: 5 }],
    ['max_tokens', { max_tokens: 5 }],
  ];
  for (const [param, partial] of bad) {
    test(`rejects ${JSON.stringify(partial)} naming '${param}'`, () => {
      assert.throws(
        () => resolveSamplingParams(partial as Partial<SamplingParams>),
        (e: unknown) => e instanceof InvalidParamError && e.param === param && e.message.includes(param),
      );
    });
  }
});

describe('deriveSeed', () => {
  test('completion 0 keeps the request seed; the others get distinct, reproducible seeds', () => {
    assert.equal(deriveSeed(42, 0), 42);
    const seeds = new Set<number>();
    for (let i = 0; i < 100; i++) {
      const s = deriveSeed(42, i);
      assert.equal(s, deriveSeed(42, i));
      assert.ok(Number.isSafeInteger(s));
      seeds.add(s);
    }
    assert.equal(seeds.size, 100);
    assert.notEqual(deriveSeed(42, 1), deriveSeed(43, 1));
  });

  test('without a request seed, each call gives a fresh non-negative safe integer', () => {
    const a = deriveSeed(undefined, 0);
    const b = deriveSeed(undefined, 0);
    assert.ok(Number.isSafeInteger(a) && a >= 0);
    assert.notEqual(a, b);
  });

  test('rejects a bad index or seed', () => {
    assert.throws(() => deriveSeed(1, -1), RangeError);
    assert.throws(() => deriveSeed(1.5, 0), RangeError);
  });
});

describe('sampleToken: greedy and logprobs', () => {
  test('temperature 0 takes the argmax whatever the seed; ties go to the lowest id', () => {
    const logits = f32([0.5, 3, -1, 3, 2]);
    for (const seed of [1, 2, 3]) assert.equal(sampleToken(logits, ctx({ temperature: 0 }, { seed })).tokenId, 1);
    assert.equal(sampleToken(f32([1, 1, 1]), ctx({ temperature: 0 })).tokenId, 0);
    // NaN never wins.
    assert.equal(sampleToken(f32([Number.NaN, -5, -7]), ctx({ temperature: 0 })).tokenId, 1);
  });

  test('logprobs are the log-softmax of the raw logits, with the top k alternatives most likely first', () => {
    const raw = [1, 2, 3, 0.5];
    const lse = Math.log(raw.reduce((s, x) => s + Math.exp(x), 0));
    const r = sampleToken(f32(raw), ctx({ temperature: 0, logprobs: 2 }));
    assert.equal(r.tokenId, 2);
    assert.ok(Math.abs(r.logprob! - (3 - lse)) < 1e-6);
    assert.deepEqual(r.topLogprobs!.map((t) => t.tokenId), [2, 1]);
    assert.ok(Math.abs(r.topLogprobs![1]!.logprob - (2 - lse)) < 1e-6);

    assert.deepEqual(sampleToken(f32(raw), ctx({ temperature: 0, logprobs: 0 })).topLogprobs, []);
    const none = sampleToken(f32(raw), ctx({ temperature: 0 }));
    assert.equal(none.logprob, undefined);
    assert.equal(none.topLogprobs, undefined);
    // More alternatives than the vocabulary has: all of them.
    assert.equal(sampleToken(f32(raw), ctx({ logprobs: 20 })).topLogprobs!.length, 4);
  });

  test('logprobs ignore penalties, masks and temperature', () => {
    const raw = [2, 1, 0];
    const lse = Math.log(raw.reduce((s, x) => s + Math.exp(x), 0));
    // Token 0 is penalised and masked as EOG (ignoreEos); token 1 is chosen, yet its logprob is raw.
    const r = sampleToken(
      f32(raw),
      ctx({ temperature: 0, repetitionPenalty: 1.5, ignoreEos: true, logprobs: 1 }, { promptTokenIds: [1], eogIds: new Set([0]) }),
    );
    assert.equal(r.tokenId, 1);
    assert.ok(Math.abs(r.logprob! - (1 - lse)) < 1e-6);
    assert.deepEqual(r.topLogprobs, [{ tokenId: 0, logprob: r.topLogprobs![0]!.logprob }]);
    assert.ok(Math.abs(r.topLogprobs![0]!.logprob - (2 - lse)) < 1e-6);
  });

  test('a row with nothing sampleable fails clearly instead of returning garbage', () => {
    assert.throws(() => sampleToken(new Float32Array(0), ctx({})), SamplingError);
    const allMasked = ctx({ minTokens: 2, maxTokens: 4 }, { eogIds: new Set([0, 1]) });
    assert.throws(() => sampleToken(f32([1, 2]), allMasked), (e: unknown) => e instanceof SamplingError && /masked/.test(e.message));
    assert.throws(() => sampleToken(f32([-Infinity, Number.NaN]), ctx({ temperature: 0 })), SamplingError);
  });
});

describe('sampleToken: penalties and masks', () => {
  test('repetition penalty divides positive and multiplies negative logits of prompt and output ids, once each', () => {
    const c = ctx({ repetitionPenalty: 2 }, { promptTokenIds: [0, 1, 0], outputTokenIds: [1, 3] });
    assertClose(Array.from(adjustedLogits(f32([4, -1, 1, 0.5, 3]), c)), [2, -2, 1, 0.25, 3]);
  });

  test('frequency penalty scales with the count in the output; presence penalty counts once; prompt ids are exempt', () => {
    const c = ctx({ frequencyPenalty: 0.5, presencePenalty: 0.25 }, { promptTokenIds: [2], outputTokenIds: [0, 0, 0, 1] });
    assertClose(Array.from(adjustedLogits(f32([3, 3, 3, 3]), c)), [3 - 1.5 - 0.25, 3 - 0.5 - 0.25, 3, 3]);
  });

  test('penalties apply in vLLM order: repetition first, then frequency and presence', () => {
    const c = ctx({ repetitionPenalty: 2, frequencyPenalty: 1 }, { outputTokenIds: [0] });
    assertClose(Array.from(adjustedLogits(f32([4, 0]), c)), [4 / 2 - 1, 0]);
  });

  test('out-of-range ids in the history are ignored', () => {
    const c = ctx({ repetitionPenalty: 2, presencePenalty: 1 }, { promptTokenIds: [-1, 99], outputTokenIds: [7] });
    assertClose(Array.from(adjustedLogits(f32([1, 2]), c)), [1, 2]);
  });

  test('before minTokens, EOG ids and stop ids cannot be sampled; from then on they can', () => {
    const logits = f32([0, 5, 4, 1]);
    const eogIds = new Set([1]);
    const early = ctx({ temperature: 0, minTokens: 2, stopTokenIds: [2] }, { eogIds, outputTokenIds: [3] });
    assert.equal(sampleToken(logits, early).tokenId, 3);
    const masked = Array.from(adjustedLogits(logits, early));
    assert.deepEqual(masked, [0, -Infinity, -Infinity, 1]);
    const late = ctx({ temperature: 0, minTokens: 2, stopTokenIds: [2] }, { eogIds, outputTokenIds: [3, 3] });
    assert.equal(sampleToken(logits, late).tokenId, 1);
  });

  test('ignoreEos masks EOG ids always, but not stop ids', () => {
    const logits = f32([0, 5, 4, 1]);
    const c = ctx({ temperature: 0, ignoreEos: true, stopTokenIds: [2] }, { eogIds: new Set([1]), outputTokenIds: [0, 0, 0] });
    assert.equal(sampleToken(logits, c).tokenId, 2);
  });
});

describe('sampleToken: temperature and truncation', () => {
  // probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1
  const quarter = f32([Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)]);

  test('temperature divides the logits before the softmax', () => {
    // logits 0 and ln 2 at T = 0.5: weights 1 and 4.
    assertClose(dense(f32([0, Math.log(2)]), ctx({ temperature: 0.5 })), [0.2, 0.8]);
    assertClose(dense(f32([0, Math.log(2)]), ctx({ temperature: 2 })), softmax([0, Math.log(2) / 2]));
    assertClose(dense(quarter, ctx({ temperature: 1 })), [0.5, 0.3, 0.15, 0.05]);
  });

  test('top-k keeps the k most likely and renormalises', () => {
    assertClose(dense(f32([1, 2, 3, 4]), ctx({ topK: 2 })), [0, 0, ...softmax([3, 4])]);
    assertClose(dense(f32([1, 2, 3, 4]), ctx({ topK: 1 })), [0, 0, 0, 1]);
    // Ties at the k-th place go to the lower id.
    assertClose(dense(f32([2, 1, 2, 2]), ctx({ topK: 2 })), [0.5, 0, 0.5, 0]);
    // k of the vocabulary size or more, 0 and -1 are all "off".
    for (const topK of [4, 10, 0, -1]) assertClose(dense(quarter, ctx({ topK })), [0.5, 0.3, 0.15, 0.05]);
  });

  test('top-p keeps the smallest most-likely set whose mass reaches p, and at least one token', () => {
    for (const topK of [0, 3]) {
      // With top-k 3 the mass is renormalised over the first three (0.5, 0.3, 0.15 of 0.95).
      const norm = topK ? 0.95 : 1;
      assertClose(dense(quarter, ctx({ topK, topP: 0.79 / norm })), [0.625, 0.375, 0, 0]);
      assertClose(dense(quarter, ctx({ topK, topP: 0.81 / norm })), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]);
      assertClose(dense(quarter, ctx({ topK, topP: 0.49 / norm })), [1, 0, 0, 0]);
      assertClose(dense(quarter, ctx({ topK, topP: 1e-9 })), [1, 0, 0, 0]);
    }
    assertClose(dense(quarter, ctx({ topP: 0.96 })), [0.5, 0.3, 0.15, 0.05]);
  });

  test('min-p drops tokens below minP times the top probability', () => {
    // threshold 0.2 × 0.5 = 0.1: 0.05 goes.
    assertClose(dense(quarter, ctx({ minP: 0.2 })), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]);
    // threshold 0.4 × 0.5 = 0.2: 0.15 goes too.
    assertClose(dense(quarter, ctx({ minP: 0.4 })), [0.625, 0.375, 0, 0]);
    assertClose(dense(quarter, ctx({ minP: 1 })), [1, 0, 0, 0]);
    // After top-k (and with top-p), the same rule.
    assertClose(dense(quarter, ctx({ topK: 3, topP: 0.99, minP: 0.4 })), [0.625, 0.375, 0, 0]);
  });

  test('truncation runs after temperature: top-p sees the tempered distribution', () => {
    // At T = 0.5 the probabilities are ∝ 0.25, 0.09, 0.0225, 0.0025: the top one alone is 0.688.
    const t = softmax(Array.from(quarter).map((x) => x / 0.5));
    assert.ok(t[0]! > 0.68 && t[0]! < 0.7);
    assertClose(dense(quarter, ctx({ temperature: 0.5, topP: 0.68 })), [1, 0, 0, 0]);
    assertClose(dense(quarter, ctx({ temperature: 0.5, topP: 0.7 })), [t[0]! / (t[0]! + t[1]!), t[1]! / (t[0]! + t[1]!), 0, 0]);
  });

  test('top-p over a large vocabulary selects the same set as a full sort', () => {
    for (const [v, seed, temperature] of [
      [5000, 1, 1],
      [5000, 2, 0.3],
      [777, 3, 2],
    ] as const) {
      const logits = randomLogits(v, seed);
      const probs = softmax(Array.from(logits).map((x) => x / temperature));
      const sorted = probs.map((p, id) => ({ p, id })).sort((a, b) => b.p - a.p || a.id - b.id);
      for (const topP of [0.1, 0.5, 0.9, 0.999]) {
        let cum = 0;
        const expected = new Set<number>();
        for (const { p, id } of sorted) {
          expected.add(id);
          cum += p;
          if (cum >= topP) break;
        }
        const got = samplingDistribution(logits, ctx({ topP, temperature }));
        // Equal up to a token exactly at the float boundary.
        assert.ok(Math.abs(got.length - expected.size) <= 1, `v=${v} p=${topP}: ${got.length} vs ${expected.size}`);
        const gotIds = new Set(got.map((g) => g.tokenId));
        for (const { id } of sorted.slice(0, Math.min(got.length, expected.size))) assert.ok(gotIds.has(id), `token ${id} missing`);
        const mass = got.reduce((s, g) => s + g.prob, 0);
        assert.ok(Math.abs(mass - 1) < 1e-9);
      }
    }
  });
});

describe('sampleToken: randomness', () => {
  const logits = f32([0.2, 1.0, -0.5, 0.7, 0.0, 1.3]);

  test('the sampled distribution matches the softmax (chi-square, fixed seeds)', () => {
    for (const params of [{ temperature: 0.8 }, { temperature: 1.2, topK: 4, topP: 0.9 }, { minP: 0.3 }] as Array<Partial<SamplingParams>>) {
      const expected = dense(logits, ctx(params));
      const counts = new Array<number>(logits.length).fill(0);
      const n = 6000;
      for (let seed = 0; seed < n; seed++) counts[sampleToken(logits, ctx(params, { seed })).tokenId]!++;
      let chi2 = 0;
      let df = -1;
      for (let i = 0; i < counts.length; i++) {
        if (expected[i] === 0) {
          assert.equal(counts[i], 0, `token ${i} is outside the candidates but was drawn (${JSON.stringify(params)})`);
          continue;
        }
        chi2 += (counts[i]! - n * expected[i]!) ** 2 / (n * expected[i]!);
        df++;
      }
      // 0.001 critical values for df 1..5: 10.8, 13.8, 16.3, 18.5, 20.5.
      const critical = [0, 10.8, 13.8, 16.3, 18.5, 20.5][df]!;
      assert.ok(chi2 < critical, `chi-square ${chi2.toFixed(2)} (df ${df}) for ${JSON.stringify(params)}: ${counts} vs ${expected}`);
    }
  });

  test('same (logits, params, seed, step) gives the same token; so does the same step of another history', () => {
    const big = randomLogits(32000, 5, 2);
    for (let step = 0; step < 20; step++) {
      const out = Array.from({ length: step }, (_, i) => i);
      const a = sampleToken(big, ctx({ topP: 0.95 }, { seed: 77, outputTokenIds: out })).tokenId;
      assert.equal(sampleToken(big, ctx({ topP: 0.95 }, { seed: 77, outputTokenIds: out })).tokenId, a);
      // Only the history's length picks the draw (penalties off), not its contents.
      const other = Array.from({ length: step }, () => 9);
      assert.equal(sampleToken(big, ctx({ topP: 0.95 }, { seed: 77, outputTokenIds: other, promptTokenIds: [4, 5] })).tokenId, a);
    }
  });

  test('results do not depend on what else was sampled in between (other rows, other vocab sizes)', () => {
    const row = randomLogits(1000, 8, 1);
    const c = ctx({ temperature: 0.9, topK: 50 }, { seed: 3, outputTokenIds: [1, 2, 3] });
    const alone = sampleToken(row, c);
    // A "batch" in which other sequences (different params, seeds, vocabularies) are sampled first.
    sampleToken(randomLogits(32000, 9), ctx({ topP: 0.5, repetitionPenalty: 1.3 }, { seed: 1, promptTokenIds: [5, 6] }));
    sampleToken(randomLogits(17, 10), ctx({ minP: 0.1 }, { seed: 2 }));
    sampleToken(randomLogits(1000, 11), ctx({ temperature: 0.1, frequencyPenalty: 1 }, { seed: 3, outputTokenIds: [4, 4] }));
    assert.deepEqual(sampleToken(row, c), alone);
  });

  test('a preempted sequence that is recomputed samples the same continuation', () => {
    // A toy "model": the logits are a deterministic function of the whole context.
    const v = 50;
    const model = (context: readonly number[]): Float32Array => {
      let h = 17;
      for (const t of context) h = (Math.imul(h, 31) + t) >>> 0;
      return randomLogits(v, h, 3);
    };
    const prompt = [1, 2, 3];
    const params = { temperature: 1, topP: 0.9, repetitionPenalty: 1.2, presencePenalty: 0.3 };
    const generate = (from: number[], steps: number, seed = 2024): number[] => {
      const out = [...from];
      for (let i = 0; i < steps; i++) {
        out.push(sampleToken(model([...prompt, ...out]), ctx(params, { seed, promptTokenIds: prompt, outputTokenIds: out })).tokenId);
      }
      return out;
    };
    const straight = generate([], 30);
    const resumed = generate(straight.slice(0, 12), 18);
    assert.deepEqual(resumed, straight);
    // And the stream really is random: several distinct tokens, and another seed diverges.
    assert.ok(new Set(straight).size > 5);
    assert.notDeepEqual(generate([], 30, 2025), straight);
  });

  test('different seeds and different steps give different streams', () => {
    const flat = new Float32Array(1000);
    const stream = (seed: number): number[] =>
      Array.from({ length: 200 }, (_, step) => sampleToken(flat, ctx({}, { seed, outputTokenIds: { length: step } as unknown as number[] })).tokenId);
    const a = stream(1);
    const b = stream(2);
    assert.deepEqual(stream(1), a);
    const same = a.filter((t, i) => t === b[i]).length;
    assert.ok(same < 5, `${same} of 200 positions agree across seeds`);
    assert.ok(new Set(a).size > 150, `only ${new Set(a).size} distinct tokens in 200 steps over a flat distribution`);
  });
});

describe('selectTopK', () => {
  test('largest first, lower id first among equals, NaN and -Infinity excluded', () => {
    const out = new Int32Array(8);
    const x = f32([3, Number.NaN, 5, -Infinity, 3, 5, 1]);
    assert.equal(selectTopK(x, 4, out), 4);
    assert.deepEqual(Array.from(out.subarray(0, 4)), [2, 5, 0, 4]);
    assert.equal(selectTopK(x, 8, out), 5);
    assert.deepEqual(Array.from(out.subarray(0, 5)), [2, 5, 0, 4, 6]);
    assert.equal(selectTopK(x, 0, out), 0);
  });

  test('agrees with a full sort on random data', () => {
    const x = randomLogits(3000, 12);
    const out = new Int32Array(3000);
    const sorted = Array.from(x, (value, id) => ({ value, id })).sort((a, b) => b.value - a.value || a.id - b.id);
    for (const k of [1, 7, 40, 2999]) {
      assert.equal(selectTopK(x, k, out), k);
      assert.deepEqual(Array.from(out.subarray(0, k)), sorted.slice(0, k).map((e) => e.id));
    }
  });
});

test('sampling a 32000-token vocabulary stays fast (no full sorts)', () => {
  const logits = randomLogits(32000, 13, 3);
  const out = Array.from({ length: 100 }, (_, i) => i * 7);
  const t0 = performance.now();
  for (let i = 0; i < 10; i++) {
    sampleToken(logits, ctx({ topP: 0.9 }, { seed: i, outputTokenIds: out }));
    sampleToken(logits, ctx({ topK: 40, repetitionPenalty: 1.1, logprobs: 5 }, { seed: i, outputTokenIds: out }));
  }
  const perCall = (performance.now() - t0) / 20;
  // ~1 ms on a laptop; a generous bound that still catches an accidental O(V log V) or O(V^2) path.
  assert.ok(perCall < 40, `${perCall.toFixed(1)} ms per call`);
});
