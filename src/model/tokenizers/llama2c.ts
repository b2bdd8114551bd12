// llama2.c's tokenizer.bin: the Llama 2 SentencePiece vocabulary in Karpathy's flat format
// (int32 max_token_length; per token: float32 score, int32 length, bytes). Spaces are stored as ' '
// rather than '▁', ids 0/1/2 are <unk>/<s>/</s>, and <0xNN> byte pieces sit at 3..258. Encoding is
// run.c's (dummy-prefix space, highest-score merge first), which is SentencePiece's algorithm, so
// with the Llama 2 vocabulary the ids equal llama.cpp's for the same vocabulary in GGUF form.

import { readLlama2cVocab } from '../loaders/llama2c-vocab.js';
import { SpmTokenizer } from './spm.js';
import { TokenType, Vocab } from './vocab.js';
import type { Tokenizer } from '../tokenizer-types.js';

const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;

export function tokenizerFromLlama2cFile(path: string): Tokenizer {
  const { pieces, scores } = readLlama2cVocab(path);
  return tokenizerFromLlama2cVocab(pieces, scores);
}

export function tokenizerFromLlama2cVocab(rawPieces: readonly string[], scores: ArrayLike<number>): Tokenizer {
  // llama2.c's export decorates <s> and </s> with newlines so run.c prints them on their own line;
  // the vocabulary's own names are the trimmed ones (and chat templates look for "<s>").
  const pieces = rawPieces.map((p, i) => (i >= 1 && i <= 2 ? p.trim() : p));
  const types = pieces.map((p, i) =>
    i === 0 ? TokenType.UNKNOWN : i <= 2 ? TokenType.CONTROL : BYTE_PIECE.test(p) ? TokenType.BYTE : TokenType.NORMAL,
  );
  const n = pieces.length;
  const vocab = new Vocab({ pieces, scores, types, unkId: 0, bosId: n > 1 ? 1 : undefined, eosId: n > 2 ? 2 : undefined });
  return new SpmTokenizer(vocab, { spaceSymbol: ' ', addSpacePrefix: true, addBos: true, addEos: false });
}
