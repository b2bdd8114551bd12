// SentencePiece-style tokenizer (GGUF tokenizer.ggml.model = 'llama', and llama2.c's tokenizer.bin).
//
// Encoding follows llama.cpp's SPM tokenizer (itself a port of SentencePiece's BPE mode): spaces
// become the space symbol '▁', a dummy-prefix space starts the text, the text is split into
// characters, and adjacent symbols are merged greedily, the pair whose merged text is the
// highest-scoring vocabulary piece first (leftmost on ties), until no adjacent pair forms a piece.
// A character that is not a piece falls back to its UTF-8 bytes as <0xNN> pieces.

import { BaseTokenizer } from './base.js';
import { TokenizerError } from './errors.js';
import { mergeSymbols } from './symbol-merge.js';
import { TokenType, type Vocab } from './vocab.js';

export interface SpmOptions {
  /** '▁' for GGUF vocabularies; ' ' for llama2.c's tokenizer.bin, which stores spaces as spaces. */
  spaceSymbol: string;
  /** Prepend a space to the text (SentencePiece add_dummy_prefix; GGUF tokenizer.ggml.add_space_prefix). */
  addSpacePrefix: boolean;
  addBos: boolean;
  addEos: boolean;
}

const utf8 = new TextEncoder();
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

export class SpmTokenizer extends BaseTokenizer {
  private readonly spaceSymbol: string;
  private readonly addSpacePrefix: boolean;
  private byteIds: Int32Array | undefined;

  constructor(vocab: Vocab, opts: SpmOptions) {
    super(vocab, { addBos: opts.addBos, addEos: opts.addEos, dummyPrefix: opts.addSpacePrefix });
    this.spaceSymbol = opts.spaceSymbol;
    this.addSpacePrefix = opts.addSpacePrefix;
  }

  protected encodeFragment(fragment: string, afterSpecial: boolean, out: number[]): void {
    let text = this.addSpacePrefix && afterSpecial ? ' ' + fragment : fragment;
    if (this.spaceSymbol !== ' ') text = text.replaceAll(' ', this.spaceSymbol);

    // One symbol per Unicode character (a surrogate pair stays one symbol), merged by piece score.
    const start: number[] = [];
    for (let i = 0; i < text.length; ) {
      start.push(i);
      i += isSurrogatePair(text, i) ? 2 : 1;
    }
    const lengths = start.map((at, i) => (i + 1 < start.length ? start[i + 1]! : text.length) - at);
    const scoreOf = (l: string, r: string) => {
      const id = this.vocab.idOf(l + r);
      return id === undefined ? undefined : this.vocab.scores[id]!;
    };
    for (const [at, length] of mergeSymbols(text, start, lengths, scoreOf, true)) {
      const piece = text.substr(at, length);
      const id = this.vocab.idOf(piece);
      if (id !== undefined) out.push(id);
      else for (const byte of utf8.encode(piece)) out.push(this.byteId(byte));
    }
  }

  protected pieceBytes(id: number): Uint8Array {
    const piece = this.vocab.pieces[id]!;
    switch (this.vocab.types[id]) {
      case TokenType.NORMAL:
        return utf8.encode(this.spaceSymbol === ' ' ? piece : piece.replaceAll(this.spaceSymbol, ' '));
      case TokenType.BYTE: {
        const m = BYTE_PIECE.exec(piece);
        return m ? Uint8Array.of(parseInt(m[1]!, 16)) : new Uint8Array(0);
      }
      case TokenType.CONTROL:
      case TokenType.UNKNOWN:
      case TokenType.USER_DEFINED:
        return utf8.encode(piece);
      default:
        // Unused and undefined tokens stand for no text (as in llama.cpp).
        return new Uint8Array(0);
    }
  }

  /** The token for one raw byte: its <0xNN> piece, else the byte as a one-character piece, else unknown. */
  private byteId(byte: number): number {
    if (!this.byteIds) {
      this.byteIds = new Int32Array(256);
      for (let b = 0; b < 256; b++) {
        const hex = b.toString(16).toUpperCase().padStart(2, '0');
        this.byteIds[b] = this.vocab.idOf(`<0x${hex}>`) ?? (b < 0x80 ? this.vocab.idOf(String.fromCharCode(b)) : undefined) ?? this.vocab.unkId ?? -1;
      }
    }
    const id = this.byteIds[byte]!;
    if (id < 0) {
      throw new TokenizerError(`cannot encode byte 0x${byte.toString(16).padStart(2, '0')}: the vocabulary has no <0x${byte.toString(16).toUpperCase().padStart(2, '0')}> piece and no unknown token`);
    }
    return id;
  }
}

function isSurrogatePair(s: string, i: number): boolean {
  const hi = s.charCodeAt(i);
  if (hi < 0xd800 || hi > 0xdbff || i + 1 >= s.length) return false;
  const lo = s.charCodeAt(i + 1);
  return lo >= 0xdc00 && lo <= 0xdfff;
}
