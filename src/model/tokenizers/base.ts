// What every vocabulary type shares: the encode driver (BOS, special tokens, EOS around the
// type-specific merge algorithm), whole-sequence decoding and the incremental stream decoder.
// Subclasses say how a text fragment becomes ids and which bytes each token stands for.

import type { StreamDecoder, Tokenizer } from '../tokenizer-types.js';
import { TokenizerError } from './errors.js';
import { splitOnSpecials } from './special-split.js';
import type { Vocab } from './vocab.js';

export interface BaseOptions {
  addBos: boolean;
  addEos: boolean;
  /**
   * SentencePiece vocabularies put a "dummy prefix" space before the text when encoding; decoding
   * removes it again from the token that starts a text (see decode()).
   */
  dummyPrefix: boolean;
}

const SPACE = 0x20;

export abstract class BaseTokenizer implements Tokenizer {
  readonly addBos: boolean;
  /** GGUF tokenizer.ggml.add_eos_token: encode() appends EOS unless called with addBos: false. */
  readonly addEos: boolean;
  protected readonly dummyPrefix: boolean;
  private readonly bytesCache: Array<Uint8Array | undefined>;

  protected constructor(
    readonly vocab: Vocab,
    opts: BaseOptions,
  ) {
    // A vocabulary without a BOS token cannot add one, whatever its metadata says.
    this.addBos = opts.addBos && vocab.bosId !== undefined;
    this.addEos = opts.addEos;
    this.dummyPrefix = opts.dummyPrefix;
    this.bytesCache = new Array<Uint8Array | undefined>(vocab.size);
  }

  get vocabSize(): number {
    return this.vocab.size;
  }
  get bosId(): number | undefined {
    return this.vocab.bosId;
  }
  get eosId(): number | undefined {
    return this.vocab.eosId;
  }
  get eogIds(): ReadonlySet<number> {
    return this.vocab.eogIds;
  }

  /** Appends the ids of one text fragment (no special tokens in it). */
  protected abstract encodeFragment(text: string, afterSpecial: boolean, out: number[]): void;

  /** The bytes token `id` decodes to, special tokens spelled out (computed once per id). */
  protected abstract pieceBytes(id: number): Uint8Array;

  encode(text: string, opts: { addBos?: boolean; parseSpecial?: boolean } = {}): number[] {
    if (typeof text !== 'string') throw new TokenizerError(`encode() needs a string, got ${text === null ? 'null' : typeof text}`);
    // Lone UTF-16 surrogates cannot be encoded as UTF-8; they become U+FFFD, as they do on their way
    // into llama.cpp.
    text = text.replace(/[\uD800-\uDFFF]/gu, '\uFFFD');
    const out: number[] = [];
    if (opts.addBos ?? this.addBos) {
      if (this.bosId === undefined) throw new TokenizerError('cannot add BOS: this vocabulary has no BOS token');
      out.push(this.bosId);
    }
    // A fragment that starts the text or follows a special token gets the dummy prefix (llama.cpp).
    let afterSpecial = true;
    for (const f of splitOnSpecials(text, this.vocab.specials, opts.parseSpecial ?? false)) {
      if (typeof f === 'number') {
        out.push(f);
        afterSpecial = true;
      } else {
        this.encodeFragment(f, afterSpecial, out);
        afterSpecial = false;
      }
    }
    if (this.addEos && opts.addBos !== false) {
      if (this.eosId === undefined) throw new TokenizerError('cannot add EOS: this vocabulary has no EOS token');
      out.push(this.eosId);
    }
    return out;
  }

  /**
   * Decodes a whole sequence. The dummy-prefix space is removed from the token that starts a text:
   * the first token, or a token right after BOS. So decode(encode(s)) == s with or without BOS, and
   * decode([▁Hello, ▁world]) == "Hello world" as in llama.cpp.
   */
  decode(ids: readonly number[], opts: { skipSpecial?: boolean } = {}): string {
    const skipSpecial = opts.skipSpecial ?? true;
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const bytes = this.tokenBytes(id, skipSpecial, i === 0 || ids[i - 1] === this.bosId);
      if (bytes.length > 0) chunks.push(bytes);
    }
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(Buffer.concat(chunks));
  }

  tokenText(id: number): string {
    this.vocab.checkTokenId(id);
    return this.vocab.pieces[id]!;
  }

  /**
   * A decoder for a sequence that continues text already begun (a prompt): the dummy-prefix space is
   * removed only right after a BOS pushed into this decoder, so the first generated token keeps its
   * space (" time" after "Once upon a"). Fed [BOS, ...] it gives exactly what decode() gives.
   */
  streamDecoder(opts: { skipSpecial?: boolean } = {}): StreamDecoder {
    return new TokenStreamDecoder(this, opts.skipSpecial ?? true);
  }

  /** The bytes one token contributes at a position; `startsText` removes a dummy-prefix space. */
  tokenBytes(id: number, skipSpecial: boolean, startsText: boolean): Uint8Array {
    this.vocab.checkTokenId(id);
    if (skipSpecial && this.vocab.isHiddenSpecial(id)) return EMPTY;
    let bytes = this.bytesCache[id];
    if (bytes === undefined) bytes = this.bytesCache[id] = this.pieceBytes(id);
    if (startsText && this.dummyPrefix && bytes[0] === SPACE) return bytes.subarray(1);
    return bytes;
  }
}

const EMPTY = new Uint8Array(0);

/**
 * UTF-8 assembly is left to TextDecoder's streaming mode, which holds back an incomplete sequence
 * (a multi-byte character split over byte tokens) and replaces invalid bytes exactly as a one-shot
 * decode of the same bytes would, so pushes + flush always equal decode of the concatenation.
 */
class TokenStreamDecoder implements StreamDecoder {
  private readonly utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
  private prev: number | undefined;

  constructor(
    private readonly tokenizer: BaseTokenizer,
    private readonly skipSpecial: boolean,
  ) {}

  push(id: number): string {
    const startsText = this.prev !== undefined && this.prev === this.tokenizer.bosId;
    const bytes = this.tokenizer.tokenBytes(id, this.skipSpecial, startsText);
    this.prev = id;
    return this.utf8.decode(bytes, { stream: true });
  }

  flush(): string {
    return this.utf8.decode();
  }
}
