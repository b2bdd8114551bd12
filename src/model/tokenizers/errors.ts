// The one error type tokenizers throw: bad vocabulary metadata, unsupported tokenizer kinds, token ids
// out of range. The message always names what was wrong.

export class TokenizerError extends Error {
  override readonly name = 'TokenizerError';
}
