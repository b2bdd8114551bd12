// Byte-level BPE: the byte <-> character mapping, the GPT-2 and Llama 3 pre-tokenizers against the
// regexes they implement, merges by rank, Llama 3's whole-word rule, specials and round trips, on a
// vocabulary learned from a paragraph (tokenizer-fixtures.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { tokenizerFromGguf, type Tokenizer } from '../../src/model/tokenizer.js';
import { BYTE_TO_CHAR, fromByteLevel, toByteLevel } from '../../src/model/tokenizers/byte-level.js';
import { gpt2PreTokenize, llama3PreTokenize } from '../../src/model/tokenizers/pre-tokenizers.js';
import type { GgufValue } from '../../src/model/loaders/gguf.js';
import { bpeMetadata, ENDOFTEXT, learnByteLevelBpe } from './tokenizer-fixtures.js';

const GPT2_REGEX = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const LLAMA3_REGEX = /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

/** Text from characters where JavaScript's \s agrees with llama.cpp's whitespace (not U+0085, U+FEFF). */
const regexSafeText = fc
  .array(fc.constantFrom(' ', '  ', '\n', '\r', '\t', '\u00a0', '\u3000', 'a', 'B', 'é', 'ß', '日', '1', '23', '٣', '.', ',', '!', "'", "'s", "'S", "'ll", "'RE", '-', '😀', '\u0301', '$', '_', 'x'), { maxLength: 20 })
  .map((p) => p.join(''));

const bpe = learnByteLevelBpe(512);
const gpt2 = tokenizerFromGguf(bpeMetadata(bpe, 'gpt-2'));
const llama3 = tokenizerFromGguf(bpeMetadata(bpe, 'llama-bpe'));
const pieces = (t: Tokenizer, s: string) => t.encode(s, { addBos: false }).map((id) => t.tokenText(id));

describe('byte-level mapping', () => {
  it('gives every byte its own printable character and reverses it', () => {
    assert.equal(new Set(BYTE_TO_CHAR).size, 256);
    assert.equal(BYTE_TO_CHAR[0x20], 'Ġ');
    assert.equal(BYTE_TO_CHAR[0x0a], 'Ċ');
    assert.equal(BYTE_TO_CHAR[0x41], 'A');
    assert.equal(toByteLevel('é'), 'Ã©');
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    assert.deepEqual(fromByteLevel(BYTE_TO_CHAR.join('')), all);
  });
});

describe('pre-tokenizers', () => {
  it('split as the GPT-2 and Llama 3 regexes do (property test)', () => {
    fc.assert(
      fc.property(regexSafeText, (s) => {
        assert.deepEqual(gpt2PreTokenize(s), [...s.matchAll(GPT2_REGEX)].map((m) => m[0]), JSON.stringify(s));
        assert.deepEqual(llama3PreTokenize(s), [...s.matchAll(LLAMA3_REGEX)].map((m) => m[0]), JSON.stringify(s));
      }),
      { seed: 3, numRuns: 500 },
    );
  });

  it('split known examples', () => {
    assert.deepEqual(gpt2PreTokenize("I'll pay $1234 now!!  OK"), ['I', "'ll", ' pay', ' $', '1234', ' now', '!!', ' ', ' OK']);
    assert.deepEqual(llama3PreTokenize("I'LL pay $1234 now!!\n\n  OK"), ['I', "'LL", ' pay', ' $', '123', '4', ' now', '!!\n\n', ' ', ' OK']);
    assert.deepEqual(llama3PreTokenize('a \n\n b'), ['a', ' \n\n', ' b']);
  });

  it("use llama.cpp's whitespace set: U+0085 is whitespace, U+FEFF is not", () => {
    // (JavaScript's \s would give ['a', '\u0085\u0085', 'b'] and ['x', ' ', '\ufeff', 'y'].)
    assert.deepEqual(gpt2PreTokenize('a\u0085\u0085b'), ['a', '\u0085', '\u0085', 'b']);
    assert.deepEqual(gpt2PreTokenize('x \ufeffy'), ['x', ' \ufeff', 'y']);
  });
});

describe('byte-level BPE tokenizer', () => {
  it('applies the learned merges: frequent words become one token', () => {
    assert.deepEqual(pieces(gpt2, 'Once upon a time'), ['Once', 'Ġupon', 'Ġa', 'Ġtime']);
    assert.deepEqual(pieces(gpt2, ' the'), ['Ġthe']);
    assert.deepEqual(pieces(gpt2, 'é'), ['Ã©']);
  });

  it('merges the lowest rank first, leftmost on ties', () => {
    const md = (merges: string[], tokens: string[]): Record<string, GgufValue> => ({
      'tokenizer.ggml.model': 'gpt2',
      'tokenizer.ggml.pre': 'gpt-2',
      'tokenizer.ggml.tokens': [...BYTE_TO_CHAR, ...tokens],
      'tokenizer.ggml.merges': merges,
    });
    const t = tokenizerFromGguf(md(['a a', 'aa a'], ['aa', 'aaa']));
    // Leftmost "a a" first gives aa + a, then "aa a"; rightmost first would leave a + aa.
    assert.deepEqual(pieces(t, 'aaa'), ['aaa']);
    // Every rank-0 "a a" merge happens before the rank-1 "aa a".
    assert.deepEqual(pieces(t, 'aaaa'), ['aa', 'aa']);
    assert.deepEqual(pieces(t, 'aaaaa'), ['aa', 'aaa']);
    // Rank decides, not length: "b c" outranks "a b", so "abc" is a + bc.
    const u = tokenizerFromGguf(md(['b c', 'a b', 'a bc'], ['bc', 'ab', 'abc']));
    assert.deepEqual(pieces(u, 'abc'), ['abc']);
    const v = tokenizerFromGguf(md(['b c', 'a b', 'ab c'], ['bc', 'ab', 'abc']));
    assert.deepEqual(pieces(v, 'abc'), ['a', 'bc']);
  });

  it("takes a word that is a vocabulary piece whole under Llama 3's pre-tokenizer", () => {
    const md = (pre: string): Record<string, GgufValue> => ({
      'tokenizer.ggml.model': 'gpt2',
      'tokenizer.ggml.pre': pre,
      'tokenizer.ggml.tokens': [...BYTE_TO_CHAR, 'xyz'],
      'tokenizer.ggml.merges': [],
    });
    assert.deepEqual(pieces(tokenizerFromGguf(md('gpt-2')), 'xyz'), ['x', 'y', 'z']);
    assert.deepEqual(pieces(tokenizerFromGguf(md('llama-bpe')), 'xyz'), ['xyz']);
  });

  it('knows <|endoftext|> as a control token that ends generation', () => {
    const eot = bpe.tokens.indexOf(ENDOFTEXT);
    for (const t of [gpt2, llama3]) {
      assert.ok(t.eogIds.has(eot));
      assert.deepEqual(t.encode(`a${ENDOFTEXT}`, { addBos: false, parseSpecial: true }), [...t.encode('a', { addBos: false }), eot]);
      assert.ok(!t.encode(ENDOFTEXT, { addBos: false }).includes(eot));
      assert.equal(t.decode([eot]), '');
      assert.equal(t.decode([eot], { skipSpecial: false }), ENDOFTEXT);
    }
    assert.equal(gpt2.addBos, false);
    assert.equal(llama3.addBos, true);
    assert.deepEqual(llama3.encode('a'), [eot, ...llama3.encode('a', { addBos: false })]);
  });

  it('round-trips any text exactly (property test)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        assert.equal(gpt2.decode(gpt2.encode(s)), s);
        assert.equal(llama3.decode(llama3.encode(s, { addBos: false })), s);
      }),
      { seed: 4, numRuns: 300 },
    );
    assert.equal(gpt2.decode(gpt2.encode('  spaces , and ?! kept ')), '  spaces , and ?! kept ');
  });
});
