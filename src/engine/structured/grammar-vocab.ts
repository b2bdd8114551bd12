// A tokenizer's vocabulary in the form the grammar compiler takes (grammar-compiler.ts).

import type { Tokenizer } from '../../model/tokenizer-types.js';
import type { GrammarVocab } from './grammar-compiler.js';

/**
 * Each token's bytes as a continuation of generated text (what the stream decoder emits for it),
 * hidden special tokens as null; `vocabSize` is the model's logit count.
 */
export function grammarVocabOf(tokenizer: Tokenizer, vocabSize: number): GrammarVocab {
  const encoder = new TextEncoder();
  return {
    vocabSize,
    numTokens: Math.min(tokenizer.vocabSize, vocabSize),
    tokenBytes(id) {
      const visible = tokenizer.tokenBytes ? tokenizer.tokenBytes(id, true, false) : encoder.encode(tokenizer.decode([id], { skipSpecial: true }));
      return visible.length === 0 ? null : visible;
    },
    stopIds: [...tokenizer.eogIds].filter((id) => id < vocabSize),
  };
}
