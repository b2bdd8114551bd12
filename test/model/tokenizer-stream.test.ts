// The stream decoder: one token at a time, never a broken UTF-8 sequence, and in total exactly what
// decode() gives for the same ids.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { tokenizerFromGguf, tokenizerFromLlama2cFile, type Tokenizer } from '../../src/model/tokenizer.js';
import { LLAMA2_TOKENIZER_BIN, sharedModelFile } from '../helpers/models.js';
import { bpeMetadata, learnByteLevelBpe } from './tokenizer-fixtures.js';

const vocabFile = sharedModelFile(LLAMA2_TOKENIZER_BIN);

function streamAll(t: Tokenizer, ids: readonly number[], skipSpecial?: boolean): { chunks: string[]; text: string } {
  const d = t.streamDecoder({ skipSpecial });
  const chunks = ids.map((id) => d.push(id));
  chunks.push(d.flush());
  return { chunks, text: chunks.join('') };
}

/** True when s has no unpaired surrogate, i.e. is a whole run of complete characters. */
const wellFormed = (s: string) => !/[\uD800-\uDFFF]/u.test(s);

describe('stream decoder, Llama 2 vocabulary', { skip: vocabFile.missing }, () => {
  let t: Tokenizer;
  before(() => {
    t = tokenizerFromLlama2cFile(vocabFile.path);
  });

  it('holds back an emoji split over byte tokens until it is whole', () => {
    const ids = t.encode('😀', { addBos: false });
    assert.deepEqual(ids, [29871, 3 + 0xf0, 3 + 0x9f, 3 + 0x98, 3 + 0x80]);
    assert.deepEqual(streamAll(t, ids).chunks, [' ', '', '', '', '😀', '']);
  });

  it('emits multi-token emoji sequences whole (skin tone, flags, ZWJ)', () => {
    const s = '👍🏽🇫🇷🧑‍💻';
    const ids = t.encode(s);
    const { chunks, text } = streamAll(t, ids);
    assert.equal(text, s);
    for (const c of chunks) assert.ok(wellFormed(c), JSON.stringify(c));
  });

  it('gives exactly decode() of the same ids for prompts that start with BOS (property test)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 30 }), fc.boolean(), (s, skipSpecial) => {
        const ids = t.encode(s, { parseSpecial: true });
        const { chunks, text } = streamAll(t, ids, skipSpecial);
        assert.equal(text, t.decode(ids, { skipSpecial }));
        for (const c of chunks) assert.ok(wellFormed(c));
      }),
      { seed: 5, numRuns: 300 },
    );
  });

  it('keeps the space of a first token that continues a prompt, drops it after BOS', () => {
    const once = t.encode('Once upon a', { addBos: false });
    const time = t.encode(' time', { addBos: false }).slice(1); // [▁time], without the dummy-prefix piece
    assert.equal(t.tokenText(time[0]!), ' time');
    assert.equal(streamAll(t, time).text, ' time', 'a continuation keeps its space');
    assert.equal(t.decode([...once, ...time]), 'Once upon a time');
    assert.equal(streamAll(t, [1, ...once]).text, 'Once upon a');
    // BOS inside the stream starts a new text (TinyStories models emit BOS between stories).
    assert.equal(streamAll(t, [...time, 2, 1, ...once]).text, ' timeOnce upon a');
    assert.equal(streamAll(t, [...time, 2, 1, ...once], false).text, ' time</s><s>Once upon a');
  });

  it('turns invalid or unfinished byte sequences into U+FFFD, like decode()', () => {
    const b = (byte: number) => 3 + byte;
    const a = b(0x61); // 'a' as a byte piece
    // A lead byte followed by a non-continuation byte is invalid as soon as the second arrives.
    assert.deepEqual(streamAll(t, [b(0xe6), a]).chunks, ['', '\ufffda', '']);
    // A lead byte with nothing after it is resolved by flush().
    assert.deepEqual(streamAll(t, [a, b(0xe6), b(0x97)]).chunks, ['a', '', '', '\ufffd']);
    assert.equal(t.decode([a, b(0xe6), b(0x97)]), 'a\ufffd');
    assert.deepEqual(streamAll(t, [b(0xff)]).chunks, ['\ufffd', '']);
  });
});

describe('stream decoder, byte-level BPE vocabulary', () => {
  const t = tokenizerFromGguf(bpeMetadata(learnByteLevelBpe(512), 'gpt-2'));

  it('assembles characters whose bytes end up in different tokens', () => {
    // ∑ is E2 88 91, not in the training text, so three byte-character tokens.
    const ids = t.encode('∑', { addBos: false });
    assert.equal(ids.length, 3);
    assert.deepEqual(streamAll(t, ids).chunks, ['', '', '∑', '']);
  });

  it('gives exactly decode() of the same ids (property test)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 30 }), (s) => {
        const ids = t.encode(s, { parseSpecial: true });
        const { chunks, text } = streamAll(t, ids);
        assert.equal(text, t.decode(ids));
        assert.equal(text, s.replace(/[\uD800-\uDFFF]/gu, '\ufffd').replaceAll('<|endoftext|>', ''));
        for (const c of chunks) assert.ok(wellFormed(c));
      }),
      { seed: 6, numRuns: 300 },
    );
  });
});
