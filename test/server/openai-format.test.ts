// Token texts and logprob shapes of the OpenAI responses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenTexts, chatLogprobs, completionLogprobs, usage } from '../../src/server/openai-format.js';
import type { Tokenizer } from '../../src/model/tokenizer-types.js';
import { byteTokenizer } from './fake-tokenizer.js';

const tok = byteTokenizer();
const id = (ch: string) => ch.charCodeAt(0) + 3;

test('token texts: whole characters as text, partial UTF-8 as bytes:\\x.., id-only models by id', () => {
  const texts = new TokenTexts(tok);
  assert.deepEqual(texts.get(id('a')), { text: 'a', bytes: [97] });
  assert.deepEqual(texts.get(0xe2 + 3), { text: 'bytes:\\xe2', bytes: [0xe2] });
  assert.deepEqual(new TokenTexts(null).get(7), { text: 'token_id:7', bytes: [...Buffer.from('token_id:7')] });
  // A SentencePiece byte-fallback piece.
  const spm = { ...tok, tokenText: () => '<0xF0>', streamDecoder: () => ({ push: () => '', flush: () => '\uFFFD' }) } as Tokenizer;
  assert.deepEqual(new TokenTexts(spm).get(5), { text: 'bytes:\\xf0', bytes: [0xf0] });
});

test('completion logprobs list the chosen token among the alternatives; -Infinity becomes -9999', () => {
  const lp = completionLogprobs(
    new TokenTexts(tok),
    [
      { tokenId: id('a'), logprob: -0.5, top: [{ tokenId: id('b'), logprob: -0.1 }] },
      { tokenId: id('c'), logprob: -Infinity, top: [] },
    ],
    [0, 1],
  );
  assert.deepEqual(lp, {
    tokens: ['a', 'c'],
    token_logprobs: [-0.5, -9999],
    top_logprobs: [{ b: -0.1, a: -0.5 }, { c: -9999 }],
    text_offset: [0, 1],
  });
  assert.equal(JSON.parse(JSON.stringify(lp)).token_logprobs[1], -9999);
});

test('chat logprobs carry bytes for the token and each alternative', () => {
  const lp = chatLogprobs(new TokenTexts(tok), [{ tokenId: id('x'), logprob: -1, top: [{ tokenId: id('x'), logprob: -1 }, { tokenId: id('y'), logprob: -2 }] }]);
  assert.deepEqual(lp, {
    content: [{ token: 'x', logprob: -1, bytes: [120], top_logprobs: [{ token: 'x', logprob: -1, bytes: [120] }, { token: 'y', logprob: -2, bytes: [121] }] }],
  });
  assert.deepEqual(usage(3, 4), { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });
});
