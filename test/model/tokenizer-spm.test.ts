// The SentencePiece-style tokenizer: the real Llama 2 vocabulary (llama2.c tokenizer.bin and the same
// vocabulary as GGUF metadata), hand-made vocabularies that pin down the merge order, and the
// metadata errors of tokenizerFromGguf.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { readLlama2cVocab } from '../../src/model/loaders/llama2c-vocab.js';
import type { GgufValue } from '../../src/model/loaders/gguf.js';
import { spmVocabFromLlama2c } from '../../src/model/synthetic-vocab.js';
import { TokenizerError, tokenizerFromGguf, tokenizerFromLlama2cFile, tokenizerFromLlama2cVocab, type Tokenizer } from '../../src/model/tokenizer.js';
import { LLAMA2_TOKENIZER_BIN, sharedModelFile } from '../helpers/models.js';

const vocabFile = sharedModelFile(LLAMA2_TOKENIZER_BIN);

export const ROUND_TRIP = [
  'Hello world',
  '',
  ' ',
  '  leading spaces',
  'trailing spaces   ',
  'multiple   inner    spaces',
  'line one\nline two\n\n\nthree',
  '\ttabs\tand\r\nCRLF',
  'héllo wörld, café, naïve, Zürich',
  'cafe\u0301 (combining accent)',
  '日本語のテキストと中文和한국어',
  'emoji 😀👍🏽🇫🇷🧑‍💻 done',
  'digits 0123456789 3.14159 -42 1e-9',
  'mixed: fn(x) => x * 2; // ok?! <s> [INST] </s>',
  '\u{10FFFF}\u{1F9A9} rare code points',
];

function ggufMetadataFromBin(path: string): Record<string, GgufValue> {
  const bin = readLlama2cVocab(path);
  const v = spmVocabFromLlama2c(bin.pieces, bin.scores);
  return {
    'tokenizer.ggml.model': 'llama',
    'tokenizer.ggml.tokens': v.pieces,
    'tokenizer.ggml.scores': v.scores,
    'tokenizer.ggml.token_type': v.tokenTypes,
    'tokenizer.ggml.bos_token_id': 1,
    'tokenizer.ggml.eos_token_id': 2,
    'tokenizer.ggml.unknown_token_id': 0,
  };
}

describe('Llama 2 vocabulary', { skip: vocabFile.missing }, () => {
  let bin: Tokenizer;
  let gguf: Tokenizer;
  before(() => {
    bin = tokenizerFromLlama2cFile(vocabFile.path);
    gguf = tokenizerFromGguf(ggufMetadataFromBin(vocabFile.path));
  });

  it('encodes "Hello world" as [BOS, ▁Hello, ▁world]', () => {
    for (const t of [bin, gguf]) {
      assert.deepEqual(t.encode('Hello world'), [1, 15043, 3186]);
      assert.deepEqual(t.encode('Hello world', { addBos: false }), [15043, 3186]);
    }
  });

  it('has the Llama 2 specials: 32000 tokens, BOS 1, EOS 2, BOS added, EOS ends generation', () => {
    for (const t of [bin, gguf]) {
      assert.equal(t.vocabSize, 32000);
      assert.equal(t.bosId, 1);
      assert.equal(t.eosId, 2);
      assert.equal(t.addBos, true);
      assert.deepEqual([...t.eogIds], [2]);
      assert.equal(t.tokenText(1), '<s>');
      assert.equal(t.tokenText(2), '</s>');
    }
    assert.equal(bin.tokenText(15043), ' Hello');
    assert.equal(gguf.tokenText(15043), '\u2581Hello');
  });

  it('round-trips tricky strings, with and without BOS', () => {
    for (const t of [bin, gguf]) {
      for (const s of ROUND_TRIP) {
        assert.equal(t.decode(t.encode(s)), s, JSON.stringify(s));
        assert.equal(t.decode(t.encode(s, { addBos: false })), s, JSON.stringify(s));
      }
    }
  });

  it('round-trips arbitrary text (property test)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        assert.equal(bin.decode(bin.encode(s)), s);
        // In GGUF form a literal '▁' is indistinguishable from a space (as in SentencePiece).
        assert.equal(gguf.decode(gguf.encode(s)), s.replaceAll('\u2581', ' '));
      }),
      { seed: 1, numRuns: 300 },
    );
  });

  it('gives both forms of the vocabulary the same ids', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 30 }), (s) => {
        if (s.includes('\u2581')) return;
        assert.deepEqual(bin.encode(s), gguf.encode(s));
      }),
      { seed: 2, numRuns: 300 },
    );
  });

  it('falls back to <0xNN> byte pieces for characters not in the vocabulary', () => {
    // U+1F9A9 (flamingo) is F0 9F A6 A9; byte pieces sit at 3 + byte.
    const ids = bin.encode('\u{1F9A9}', { addBos: false });
    assert.deepEqual(ids, [29871, 3 + 0xf0, 3 + 0x9f, 3 + 0xa6, 3 + 0xa9]);
    assert.equal(bin.decode(ids), '\u{1F9A9}');
  });

  it('parses <s> and </s> as specials only when asked, with the dummy prefix after them', () => {
    assert.deepEqual(bin.encode('<s>Hi</s>', { addBos: false, parseSpecial: true }), [1, 6324, 2]);
    const plain = bin.encode('<s>Hi</s>', { addBos: false });
    assert.ok(!plain.includes(1) && !plain.includes(2), String(plain));
    assert.equal(bin.decode(plain), '<s>Hi</s>');
  });

  it('drops the dummy-prefix space at the start and after BOS, and shows specials only when asked', () => {
    assert.equal(bin.decode([15043, 3186]), 'Hello world');
    assert.equal(bin.decode([1, 15043, 3186]), 'Hello world');
    assert.equal(bin.decode([1, 15043, 3186], { skipSpecial: false }), '<s>Hello world');
    assert.equal(bin.decode([3186, 2, 1, 15043]), 'worldHello');
    assert.equal(bin.decode([3186, 2, 1, 15043], { skipSpecial: false }), 'world</s><s>Hello');
    assert.equal(bin.decode([0]), '');
    assert.equal(bin.decode([0], { skipSpecial: false }), '<unk>');
    assert.equal(bin.decode([]), '');
  });

  it('rejects out-of-range and non-integer token ids with a TokenizerError naming the id', () => {
    assert.throws(() => bin.decode([15043, 32000]), (e: unknown) => e instanceof TokenizerError && /token id 32000 is out of range/.test(e.message));
    assert.throws(() => bin.tokenText(-1), TokenizerError);
    assert.throws(() => bin.decode([1.5]), /token id 1\.5/);
    assert.throws(() => bin.streamDecoder().push(40000), /token id 40000/);
  });
});

/** A small hand-made SentencePiece vocabulary: specials, two byte pieces, and scored pieces. */
function handMade(scores: Record<string, number>, extra: Record<string, GgufValue> = {}): Tokenizer {
  const pieces = ['<unk>', '<s>', '</s>', '<0x21>', '<0x0A>', ...Object.keys(scores)];
  return tokenizerFromGguf({
    'tokenizer.ggml.model': 'llama',
    'tokenizer.ggml.tokens': pieces,
    'tokenizer.ggml.scores': [0, 0, 0, 0, 0, ...Object.values(scores)],
    'tokenizer.ggml.token_type': pieces.map((p, i) => (i === 0 ? 2 : i < 3 ? 3 : i < 5 ? 6 : 1)),
    ...extra,
  });
}

describe('SentencePiece merge order', () => {
  const pieceIds = (t: Tokenizer, s: string) => t.encode(s, { addBos: false }).map((id) => t.tokenText(id));

  it('merges the highest-scoring pair first', () => {
    const t = handMade({ '▁': -1, a: -1, '▁a': -2, aa: -3 });
    assert.deepEqual(pieceIds(t, 'aaa'), ['▁a', 'aa']);
    const u = handMade({ '▁': -1, a: -1, '▁a': -3, aa: -2 });
    assert.deepEqual(pieceIds(u, 'aaa'), ['▁', 'aa', 'a']);
  });

  it('takes the leftmost pair on equal scores', () => {
    const t = handMade({ '▁': -1, a: -1, b: -1, ab: -2, ba: -2 });
    assert.deepEqual(pieceIds(t, 'aba'), ['▁', 'ab', 'a']);
    assert.deepEqual(pieceIds(t, 'bab'), ['▁', 'ba', 'b']);
  });

  it('keeps merging through pieces built from earlier merges', () => {
    const t = handMade({ '▁': -1, a: -1, b: -1, ab: -2, '▁ab': -3, '▁abab': -4 });
    assert.deepEqual(pieceIds(t, 'abab'), ['▁abab']);
    assert.deepEqual(pieceIds(t, 'ababab'), ['▁abab', 'ab']);
    // abab (built from two ab merges) outscores ▁ab, so ▁ is left alone.
    const u = handMade({ '▁': -1, a: -1, b: -1, ab: -2, '▁ab': -3, abab: -1.5 });
    assert.deepEqual(pieceIds(u, 'abab'), ['▁', 'abab']);
  });

  it('falls back to bytes, then to <unk> when a byte piece is missing', () => {
    const t = handMade({ '▁': -1, a: -1 });
    assert.deepEqual(t.encode('a!\nc', { addBos: false }), [5, 6, 3, 4, 0]);
    assert.equal(t.decode(t.encode('a!\n')), 'a!\n');
  });

  it('honours add_space_prefix, add_bos_token and add_eos_token', () => {
    const t = handMade({ '▁': -1, a: -1, '▁a': -2 }, { 'tokenizer.ggml.add_space_prefix': false, 'tokenizer.ggml.add_bos_token': false, 'tokenizer.ggml.add_eos_token': true });
    assert.equal(t.addBos, false);
    assert.deepEqual(t.encode('a a'), [6, 7, 2]);
    assert.deepEqual(t.encode('a a', { addBos: false }), [6, 7]);
    assert.deepEqual(t.encode('a a', { addBos: true }), [1, 6, 7, 2]);
    assert.equal(t.decode([7]), ' a', 'no dummy prefix to remove');
  });

  it('treats user-defined tokens as text that is always split out', () => {
    const pieces = ['<unk>', '<s>', '</s>', '▁', 'a', '<tool>', '<|eot_id|>'];
    const t = tokenizerFromGguf({
      'tokenizer.ggml.model': 'llama',
      'tokenizer.ggml.tokens': pieces,
      'tokenizer.ggml.token_type': [2, 3, 3, 1, 1, 4, 1],
    });
    assert.deepEqual(t.encode('a<tool>a', { addBos: false }), [3, 4, 5, 3, 4]);
    assert.equal(t.decode([4, 5, 4]), 'a<tool>a');
    // An end-of-turn token is recognised by its text, made a control token, and ends generation.
    assert.deepEqual([...t.eogIds].sort(), [2, 6]);
    assert.deepEqual(t.encode('<|eot_id|>', { addBos: false, parseSpecial: true }), [6]);
    assert.equal(t.decode([6]), '');
  });
});

describe('tokenizerFromGguf errors', () => {
  const base = { 'tokenizer.ggml.model': 'llama', 'tokenizer.ggml.tokens': ['<unk>', '<s>', '</s>', 'a'] } as Record<string, GgufValue>;
  const fails = (md: Record<string, GgufValue>, re: RegExp) => assert.throws(() => tokenizerFromGguf(md), (e: unknown) => e instanceof TokenizerError && re.test(e.message));

  it('names what is wrong with the metadata', () => {
    fails({}, /no tokenizer\.ggml\.model/);
    fails({ ...base, 'tokenizer.ggml.model': 'bert' }, /unsupported tokenizer\.ggml\.model 'bert'/);
    fails({ 'tokenizer.ggml.model': 'llama' }, /no tokenizer\.ggml\.tokens/);
    fails({ ...base, 'tokenizer.ggml.tokens': 'abc' }, /tokenizer\.ggml\.tokens should be an array of strings/);
    fails({ ...base, 'tokenizer.ggml.tokens': ['a', 7] }, /tokenizer\.ggml\.tokens\[1\] should be a string/);
    fails({ ...base, 'tokenizer.ggml.tokens': [] }, /vocabulary is empty/);
    fails({ ...base, 'tokenizer.ggml.scores': [0, 0] }, /4 tokens but 2 scores/);
    fails({ ...base, 'tokenizer.ggml.token_type': [1] }, /4 tokens but 1 token types/);
    fails({ ...base, 'tokenizer.ggml.bos_token_id': 9 }, /BOS token id 9 is out of range/);
    fails({ ...base, 'tokenizer.ggml.add_bos_token': 'yes' }, /add_bos_token should be a boolean/);
    fails({ ...base, 'tokenizer.ggml.model': 'gpt2' }, /no tokenizer\.ggml\.merges/);
    fails({ ...base, 'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.merges': ['ab'] }, /merges\[0\] is 'ab'/);
    fails({ ...base, 'tokenizer.ggml.model': 'gpt2', 'tokenizer.ggml.merges': [], 'tokenizer.ggml.pre': 'deepseek-llm' }, /unsupported tokenizer\.ggml\.pre 'deepseek-llm'/);
  });

  it('accepts u64 ids (bigint) and rejects encode of a non-string', () => {
    const t = tokenizerFromGguf({ ...base, 'tokenizer.ggml.bos_token_id': 3n });
    assert.equal(t.bosId, 3);
    assert.throws(() => t.encode(42 as unknown as string), /encode\(\) needs a string, got number/);
  });

  it('refuses to add a BOS the vocabulary does not have', () => {
    // A one-token vocabulary: only <unk>, which the dummy-prefix space and 'x' both fall back to.
    const t = tokenizerFromLlama2cVocab(['<unk>'], [0]);
    assert.equal(t.bosId, undefined);
    assert.equal(t.addBos, false);
    assert.deepEqual(t.encode('x'), [0, 0]);
    assert.throws(() => t.encode('x', { addBos: true }), /no BOS token/);
  });

  it('names the file when a llama2.c tokenizer file cannot be read', () => {
    assert.throws(() => tokenizerFromLlama2cFile('/nonexistent/tokenizer.bin'), /\/nonexistent\/tokenizer\.bin.*no such file/);
  });
});
