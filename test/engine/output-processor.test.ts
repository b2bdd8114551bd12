import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { OutputProcessor, SequenceOutputState, SequenceFinishedError, type AppendResult } from '../../src/engine/output-processor.js';
import { resolveSamplingParams } from '../../src/engine/sampling-params.js';
import { checkTokenStop } from '../../src/engine/stop-check.js';
import type { SamplingParams, SequenceUpdate } from '../../src/engine/types.js';
import type { StreamDecoder, Tokenizer } from '../../src/model/tokenizer-types.js';

const BOS = 1;
const EOS = 2;

/**
 * A tiny Tokenizer: every token is a byte string (so a character can be split across tokens);
 * ids 0..2 are special (<unk>, <s>, </s>) and decode to nothing when special tokens are skipped.
 */
class FakeTokenizer implements Tokenizer {
  readonly bosId = BOS;
  readonly eosId = EOS;
  readonly eogIds: ReadonlySet<number> = new Set([EOS]);
  readonly addBos = true;
  private readonly pieces: Uint8Array[] = [];
  private readonly ids = new Map<string, number>();

  constructor() {
    for (const special of ['<unk>', '<s>', '</s>']) this.add(special);
  }

  get vocabSize(): number {
    return this.pieces.length;
  }

  /** Id of a text piece, adding it to the vocabulary on first use. */
  id(piece: string): number {
    return this.ids.get(piece) ?? this.add(piece);
  }

  /** A token holding raw bytes (possibly part of a UTF-8 character). */
  bytes(...bs: number[]): number {
    this.pieces.push(Uint8Array.from(bs));
    return this.pieces.length - 1;
  }

  private add(piece: string): number {
    this.pieces.push(new TextEncoder().encode(piece));
    this.ids.set(piece, this.pieces.length - 1);
    return this.pieces.length - 1;
  }

  encode(): number[] {
    throw new Error('not needed by these tests');
  }

  decode(ids: readonly number[], opts: { skipSpecial?: boolean } = {}): string {
    const d = this.streamDecoder(opts);
    return ids.map((id) => d.push(id)).join('') + d.flush();
  }

  tokenText(id: number): string {
    return new TextDecoder().decode(this.pieces[id]);
  }

  streamDecoder(opts: { skipSpecial?: boolean } = {}): StreamDecoder {
    const skip = opts.skipSpecial ?? true;
    const utf8 = new TextDecoder('utf-8');
    return {
      push: (id) => (skip && id <= EOS ? '' : utf8.decode(this.pieces[id], { stream: true })),
      flush: () => utf8.decode(),
    };
  }
}

/**
 * One sequence's output side, fed the way the engine feeds it: the scheduler's token-level stop
 * decision (EOS, stop ids, max tokens) comes with each token, then text and stop strings are handled.
 */
function setup(params: Partial<SamplingParams>, tokenizer: FakeTokenizer | null = new FakeTokenizer()) {
  const t = tokenizer ?? new FakeTokenizer();
  const resolved = resolveSamplingParams({ maxTokens: 100, ...params });
  const eogIds = new Set([EOS]);
  const state = new SequenceOutputState({ tokenizer, params: resolved, numPromptTokens: 3 });
  let n = 0;
  const push = (...pieces: Array<string | number>): AppendResult[] =>
    pieces.map((p) => {
      const tokenId = typeof p === 'number' ? p : t.id(p);
      return state.append({ seqId: 7, tokenId }, checkTokenStop(resolved, eogIds, ++n, tokenId));
    });
  return { state, t, push };
}

const texts = (rs: AppendResult[]): string[] => rs.map((r) => r.text);

describe('SequenceOutputState: stop strings', () => {
  test('a stop string split across tokens ends the text just before it', () => {
    const { state, push } = setup({ stop: ['o w'] });
    const rs = push('He', 'llo', ' wor');
    assert.deepEqual(texts(rs), ['He', 'll', '']);
    assert.deepEqual(rs[2], { text: '', finished: true, finishReason: 'stop', stopReason: 'o w' });
    assert.equal(state.text, 'Hell');
    assert.equal(state.finishReason, 'stop');
    assert.equal(state.stopReason, 'o w');
    assert.equal(state.numOutputTokens, 3);
  });

  test('a possible start of a stop string is held back, then released when it turns out not to be one', () => {
    const { state, push } = setup({ stop: ['STOP'] });
    const rs = push('a S', 'T', 'x', 'ST', 'OP!');
    assert.deepEqual(texts(rs), ['a ', '', 'STx', '', '']);
    assert.equal(rs[4]!.stopReason, 'STOP');
    assert.equal(state.text, 'a STx');
  });

  test('held-back text is released when the sequence ends by length, EOS, stop id or abort', () => {
    const byLength = setup({ stop: ['STOP'], maxTokens: 2 }).push('a S', 'T');
    assert.deepEqual(texts(byLength), ['a ', 'ST']);
    assert.equal(byLength[1]!.finishReason, 'length');

    const byEos = setup({ stop: ['STOP'] }).push('a S', EOS);
    assert.deepEqual(byEos[1], { text: 'S', finished: true, finishReason: 'stop' });

    const t = new FakeTokenizer();
    const byStopId = setup({ stop: ['STOP'], stopTokenIds: [t.id('#')] }, t).push('a ST', '#');
    assert.deepEqual(byStopId[1], { text: 'ST', finished: true, finishReason: 'stop', stopReason: t.id('#') });

    const { state, push } = setup({ stop: ['STOP'] });
    push('a STO');
    assert.deepEqual(state.finish('abort'), { text: 'STO', finished: true, finishReason: 'abort' });
    assert.equal(state.text, 'a STO');
    assert.deepEqual(state.finish('abort'), { text: '', finished: true, finishReason: 'abort', stopReason: undefined });
  });

  test('with several stop strings, the earliest in the text wins; at the same place, the first listed', () => {
    const { push } = setup({ stop: ['world', 'lo'] });
    assert.deepEqual(push('hello world')[0], { text: 'hel', finished: true, finishReason: 'stop', stopReason: 'lo' });

    assert.equal(setup({ stop: ['abc', 'ab'] }).push('xabcd')[0]!.stopReason, 'abc');
    assert.equal(setup({ stop: ['ab', 'abc'] }).push('xabcd')[0]!.stopReason, 'ab');

    // 'bc' is complete one token before 'abcd' would be: it ends the sequence there.
    const rs = setup({ stop: ['abcd', 'bc'] }).push('a', 'b', 'c');
    assert.deepEqual(rs[2], { text: 'a', finished: true, finishReason: 'stop', stopReason: 'bc' });
  });

  test('a stop string inside one token cuts that token\'s text', () => {
    const { state, push } = setup({ stop: ['\n\n'] });
    const rs = push('Once', ' upon.\n\nThe end');
    assert.deepEqual(texts(rs), ['Once', ' upon.']);
    assert.equal(state.text, 'Once upon.');
  });
});

describe('SequenceOutputState: token stops and limits', () => {
  test('EOS finishes with stop, no stopReason, and its text is not emitted', () => {
    const { state, push, t } = setup({});
    const rs = push('Hi', EOS);
    assert.deepEqual(rs[1], { text: '', finished: true, finishReason: 'stop' });
    assert.equal(state.stopReason, undefined);
    assert.equal(state.text, 'Hi');
    assert.deepEqual(state.outputTokenIds, [t.id('Hi'), EOS]);
    assert.equal(state.numOutputTokens, 2);
  });

  test('a stop token id finishes with stopReason = the id, without its text', () => {
    const t = new FakeTokenizer();
    const dot = t.id('.');
    const { state, push } = setup({ stopTokenIds: [dot] }, t);
    const rs = push('Hi', '.');
    assert.deepEqual(rs[1], { text: '', finished: true, finishReason: 'stop', stopReason: dot });
    assert.equal(state.text, 'Hi');
  });

  test('ignoreEos: EOS does not end the sequence; maxTokens does, with length', () => {
    const { state, push } = setup({ ignoreEos: true, maxTokens: 3 });
    const rs = push('a', EOS, 'b');
    assert.deepEqual(rs.map((r) => r.finished), [false, false, true]);
    assert.equal(rs[2]!.finishReason, 'length');
    assert.equal(rs[2]!.stopReason, undefined);
    assert.equal(state.text, 'ab');
  });

  test('the maxTokens-th token finishes with length and its text is included', () => {
    const { state, push } = setup({ maxTokens: 2 });
    const rs = push('a', 'b');
    assert.deepEqual(rs[1], { text: 'b', finished: true, finishReason: 'length' });
    assert.equal(state.finishReason, 'length');
    assert.throws(() => push('c'), SequenceFinishedError);
  });

  test('before minTokens nothing stops the sequence: not EOS, stop ids or stop strings', () => {
    const t = new FakeTokenizer();
    const { state, push } = setup({ minTokens: 4, stop: ['xy'], stopTokenIds: [t.id('#')] }, t);
    const rs = push(EOS, '#', 'xy');
    assert.ok(rs.every((r) => !r.finished));
    assert.equal(state.text, '#xy');
    // The fourth token may stop it.
    assert.deepEqual(push(EOS)[0], { text: '', finished: true, finishReason: 'stop' });
  });

  test('a stop string completed by the minTokens-th token counts even if it began earlier', () => {
    const { state, push } = setup({ minTokens: 2, stop: ['xy'] });
    const rs = push('ax', 'yb');
    assert.deepEqual(texts(rs), ['a', '']);
    assert.equal(rs[1]!.stopReason, 'xy');
    assert.equal(state.text, 'a');
  });
});

describe('SequenceOutputState: text', () => {
  test('a character split across tokens is emitted once complete', () => {
    const t = new FakeTokenizer();
    const [a, b, c] = [t.bytes(0xe2), t.bytes(0x82), t.bytes(0xac)]; // '€'
    const { state, push } = setup({}, t);
    assert.deepEqual(texts(push('5', a, b, c)), ['5', '', '', '€']);
    assert.equal(state.text, '5€');
  });

  test('an unfinished character at the end becomes U+FFFD', () => {
    const t = new FakeTokenizer();
    const lead = t.bytes(0xe2);
    const { state, push } = setup({ maxTokens: 2 }, t);
    assert.deepEqual(texts(push('5', lead)), ['5', '\uFFFD']);
    assert.equal(state.text, '5\uFFFD');
  });

  test('a stop string made of a multi-byte character is found once the character is complete', () => {
    const t = new FakeTokenizer();
    const [a, b, c] = [t.bytes(0xe2), t.bytes(0x82), t.bytes(0xac)];
    const { state, push } = setup({ stop: ['€'] }, t);
    const rs = push('cost ', a, b, c);
    assert.deepEqual(rs[3], { text: '', finished: true, finishReason: 'stop', stopReason: '€' });
    assert.equal(state.text, 'cost ');
  });

  test('special tokens decode to nothing', () => {
    const { state, push } = setup({ ignoreEos: true });
    push('a', BOS, EOS, 'b');
    assert.equal(state.text, 'ab');
  });

  test('without a tokenizer there is no text and stop strings never match; ids still work', () => {
    const t = new FakeTokenizer();
    const { state, push } = setup({ stop: ['a'], stopTokenIds: [9], maxTokens: 5 }, null);
    const rs = push(t.id('a'), 5, 9);
    assert.deepEqual(texts(rs), ['', '', '']);
    assert.deepEqual(rs[2], { text: '', finished: true, finishReason: 'stop', stopReason: 9 });
    assert.equal(state.text, '');
    assert.deepEqual(state.outputTokenIds, [t.id('a'), 5, 9]);

    const eos = setup({}, null).push(5, EOS);
    assert.equal(eos[1]!.finishReason, 'stop');
  });

  test('cumulative logprob sums the tokens that carried one', () => {
    const { state } = setup({});
    state.append({ seqId: 1, tokenId: 5, logprob: -0.5 });
    state.append({ seqId: 1, tokenId: 6 });
    state.append({ seqId: 1, tokenId: 7, logprob: -1.25 });
    assert.equal(state.cumulativeLogprob, -1.75);
  });
});

test('streamed text equals the reference: full text cut at the first stop string to complete (property)', () => {
  const piece = fc.string({ unit: fc.constantFrom('a', 'b', 'c', ' '), minLength: 1, maxLength: 4 });
  const stop = fc.string({ unit: fc.constantFrom('a', 'b', 'c', ' '), minLength: 1, maxLength: 4 });
  fc.assert(
    fc.property(fc.array(piece, { minLength: 1, maxLength: 12 }), fc.array(stop, { maxLength: 3 }), (pieces, stops) => {
      const { state, push } = setup({ stop: stops, maxTokens: pieces.length });
      const outs: string[] = [];
      for (const p of pieces) {
        const r = push(p)[0]!;
        outs.push(r.text);
        if (r.finished) break;
      }
      // Reference: after each token, look for stop strings in all text so far.
      let expected = pieces.join('');
      let expectedStop: string | undefined;
      let expectedTokens = pieces.length;
      let text = '';
      for (let k = 0; k < pieces.length; k++) {
        text += pieces[k];
        let at = -1;
        for (const s of stops) {
          const i = text.indexOf(s);
          if (i >= 0 && (at < 0 || i < at)) {
            at = i;
            expectedStop = s;
          }
        }
        if (at >= 0) {
          expected = text.slice(0, at);
          expectedTokens = k + 1;
          break;
        }
      }
      assert.equal(outs.join(''), expected);
      assert.equal(state.text, expected);
      assert.equal(state.numOutputTokens, expectedTokens);
      assert.equal(state.finished, true);
      assert.equal(state.finishReason, expectedStop === undefined ? 'length' : 'stop');
      assert.equal(state.stopReason, expectedStop);
    }),
    { seed: 20240601, numRuns: 400 },
  );
});

describe('OutputProcessor', () => {
  const counts = { numCachedTokens: 0, numPreemptions: 0 };
  const update = (requestId: string, index: number, numOutputTokens: number, tokenId: number | undefined, more: Partial<SequenceUpdate> = {}): SequenceUpdate => ({
    requestId,
    index,
    ...(tokenId === undefined ? {} : { token: { seqId: index, tokenId } }),
    ...counts,
    numOutputTokens,
    ...more,
  });

  test('turns updates into RequestOutputs: text, logprobs in their output shape, the scheduler\'s counts', () => {
    const t = new FakeTokenizer();
    const p = new OutputProcessor(t);
    p.addRequest('r', resolveSamplingParams({ maxTokens: 5 }), 3);
    const { outputs, stopped } = p.process([
      { ...update('r', 0, 1, undefined), token: { seqId: 0, tokenId: t.id('Hi'), logprob: -0.25, topLogprobs: [{ tokenId: 4, logprob: -0.25 }] }, numCachedTokens: 2 },
    ]);
    assert.deepEqual(stopped, []);
    assert.deepEqual(outputs, [{
      requestId: 'r', index: 0, newTokenIds: [t.id('Hi')], text: 'Hi', finished: false,
      numPromptTokens: 3, numCachedTokens: 2, numOutputTokens: 1, numPreemptions: 0,
      logprobs: [{ tokenId: t.id('Hi'), logprob: -0.25, top: [{ tokenId: 4, logprob: -0.25 }] }],
    }]);
  });

  test('a stop string ends a sequence the scheduler has not: it is handed back; token-level ends are not', () => {
    const t = new FakeTokenizer();
    const p = new OutputProcessor(t);
    p.addRequest('r', resolveSamplingParams({ n: 3, stop: ['!'], maxTokens: 2 }), 3);
    const { outputs, stopped } = p.process([
      update('r', 0, 1, t.id('a!')),
      update('r', 1, 1, EOS, { finishReason: 'stop' }),
      update('r', 2, 1, t.id('b')),
    ]);
    assert.deepEqual(stopped, [{ requestId: 'r', index: 0 }]);
    assert.deepEqual(outputs.map((o) => [o.text, o.finished, o.finishReason, o.stopReason]), [['a', true, 'stop', '!'], ['', true, 'stop', undefined], ['b', false, undefined, undefined]]);
    // The length limit and a stop string on the same token: the stop string is reported, the scheduler already finished it.
    const last = p.process([update('r', 2, 2, t.id('c!'), { finishReason: 'length' })]);
    assert.deepEqual(last.stopped, []);
    assert.deepEqual([last.outputs[0].text, last.outputs[0].finishReason, last.outputs[0].stopReason], ['c', 'stop', '!']);
    // Every completion finished: the request is forgotten.
    assert.deepEqual(p.process([update('r', 2, 3, t.id('d'))]).outputs, []);
  });

  test('an abort (no token) releases held-back text and ends with abort; a dropped request yields nothing', () => {
    const t = new FakeTokenizer();
    const p = new OutputProcessor(t);
    p.addRequest('a', resolveSamplingParams({ stop: ['STOP'] }), 3);
    assert.equal(p.process([update('a', 0, 1, t.id('x ST'))]).outputs[0].text, 'x ');
    const { outputs } = p.process([update('a', 0, 1, undefined, { finishReason: 'abort' })]);
    assert.deepEqual(outputs.map((o) => [o.newTokenIds, o.text, o.finished, o.finishReason]), [[[], 'ST', true, 'abort']]);
    p.addRequest('b', resolveSamplingParams({}), 3);
    p.drop('b');
    assert.deepEqual(p.process([update('b', 0, 1, t.id('y'))]).outputs, []);
  });
});
