// Byte-level BPE tokenizer (GGUF tokenizer.ggml.model = 'gpt2': GPT-2, Llama 3, ...).
//
// Text is cut into words by the pre-tokenizer, each word is spelled in GPT-2's byte characters, and
// adjacent symbols are merged by rank: the pair earliest in tokenizer.ggml.merges first (leftmost on
// ties), until no adjacent pair is a merge. Decoding maps the byte characters back to bytes.

import { BaseTokenizer } from './base.js';
import { fromByteLevel, toByteLevel } from './byte-level.js';
import type { PreTokenizer } from './pre-tokenizers.js';
import { mergeSymbols } from './symbol-merge.js';
import { TokenType, type Vocab } from './vocab.js';

export interface BpeOptions {
  /** Merge ranks keyed by "left right" (the GGUF merges strings). */
  ranks: ReadonlyMap<string, number>;
  preTokenize: PreTokenizer;
  /** Llama 3: a word that is itself a vocabulary piece is taken whole, without merging. */
  ignoreMerges: boolean;
  addBos: boolean;
  addEos: boolean;
}

const utf8 = new TextEncoder();

export class BpeTokenizer extends BaseTokenizer {
  private readonly ranks: ReadonlyMap<string, number>;
  private readonly preTokenize: PreTokenizer;
  private readonly ignoreMerges: boolean;

  constructor(vocab: Vocab, opts: BpeOptions) {
    super(vocab, { addBos: opts.addBos, addEos: opts.addEos, dummyPrefix: false });
    this.ranks = opts.ranks;
    this.preTokenize = opts.preTokenize;
    this.ignoreMerges = opts.ignoreMerges;
  }

  protected encodeFragment(fragment: string, _afterSpecial: boolean, out: number[]): void {
    for (const word of this.preTokenize(fragment)) this.encodeWord(toByteLevel(word), out);
  }

  private encodeWord(word: string, out: number[]): void {
    if (this.ignoreMerges) {
      const whole = this.vocab.idOf(word);
      if (whole !== undefined) {
        out.push(whole);
        return;
      }
    }
    // Byte characters are all in the Basic Multilingual Plane: one UTF-16 unit per symbol.
    const start = Array.from({ length: word.length }, (_, i) => i);
    const spans = mergeSymbols(word, start, new Int32Array(word.length).fill(1), (l, r) => this.ranks.get(l + ' ' + r), false);
    for (const [at, length] of spans) {
      const piece = word.substr(at, length);
      const id = this.vocab.idOf(piece);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      // A merge whose result is not a piece (a broken vocabulary): fall back to single byte
      // characters, then to the unknown token; llama.cpp drops what it cannot look up.
      for (const ch of piece) {
        const single = this.vocab.idOf(ch) ?? this.vocab.unkId;
        if (single !== undefined) out.push(single);
      }
    }
  }

  protected pieceBytes(id: number): Uint8Array {
    const piece = this.vocab.pieces[id]!;
    switch (this.vocab.types[id]) {
      case TokenType.NORMAL:
        return fromByteLevel(piece);
      case TokenType.CONTROL:
      case TokenType.UNKNOWN:
      case TokenType.USER_DEFINED:
        return utf8.encode(piece);
      default:
        // Byte, unused and undefined tokens stand for no text in byte-level vocabularies (llama.cpp).
        return new Uint8Array(0);
    }
  }
}
