// Tokenizers: text <-> token ids for the vocabularies Stepwise reads. GGUF files carry theirs in
// metadata (SentencePiece 'llama' or byte-level BPE 'gpt2'); llama2.c checkpoints come with a
// separate tokenizer.bin. The algorithms live in ./tokenizers; this is the front door.

export { tokenizerFromGguf } from './tokenizers/gguf.js';
export { tokenizerFromLlama2cFile, tokenizerFromLlama2cVocab } from './tokenizers/llama2c.js';
export { TokenizerError } from './tokenizers/errors.js';
export type { StreamDecoder, Tokenizer } from './tokenizer-types.js';
