// What the engine needs from a tokenizer, whatever vocabulary type backs it.

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  /** Token ids that end generation (EOS, EOT, ...). */
  readonly eogIds: ReadonlySet<number>;
  /** Whether encode() prepends BOS by default (GGUF tokenizer.ggml.add_bos_token). */
  readonly addBos: boolean;
  encode(text: string, opts?: { addBos?: boolean; parseSpecial?: boolean }): number[];
  /** Whole-sequence decode (special tokens skipped unless asked). */
  decode(ids: readonly number[], opts?: { skipSpecial?: boolean }): string;
  /** The raw piece of one token, as stored in the vocabulary. */
  tokenText(id: number): string;
  /**
   * The bytes one token contributes to decoded text: empty for a hidden special token when
   * skipSpecial; `startsText` drops a SentencePiece dummy-prefix space.
   */
  tokenBytes?(id: number, skipSpecial: boolean, startsText: boolean): Uint8Array;
  /** A decoder fed one token at a time; returns only complete UTF-8 text, holding partial bytes back. */
  streamDecoder(opts?: { skipSpecial?: boolean }): StreamDecoder;
}

export interface StreamDecoder {
  push(id: number): string;
  /** Whatever is still held back (invalid trailing bytes become U+FFFD). */
  flush(): string;
}
