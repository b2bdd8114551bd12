// Reader for llama2.c's tokenizer.bin: int32 max_token_length, then for every token
// float32 score | int32 byte length | the piece's bytes (UTF-8, no terminator), until the end of the
// file. The vocabulary size is not stored; it is however many tokens the file holds.

import { ModelFileError } from './errors.js';
import { readModelBytes } from './gguf.js';

export interface Llama2cVocab {
  pieces: string[];
  scores: number[];
  maxTokenLength: number;
}

export function readLlama2cVocab(path: string): Llama2cVocab {
  return parseLlama2cVocab(readModelBytes(path), path);
}

export function parseLlama2cVocab(bytes: Uint8Array, path = '<buffer>'): Llama2cVocab {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 4) throw new ModelFileError(path, `not a llama2.c tokenizer file: only ${bytes.byteLength} bytes`);
  const maxTokenLength = dv.getInt32(0, true);
  if (maxTokenLength <= 0 || maxTokenLength > 1 << 16) {
    throw new ModelFileError(path, `not a llama2.c tokenizer file: max_token_length is ${maxTokenLength}`);
  }
  const pieces: string[] = [];
  const scores: number[] = [];
  let pos = 4;
  while (pos < bytes.byteLength) {
    const i = pieces.length;
    if (pos + 8 > bytes.byteLength) throw new ModelFileError(path, `truncated llama2.c tokenizer file: token ${i} header at byte ${pos} runs past the end`);
    const score = dv.getFloat32(pos, true);
    const len = dv.getInt32(pos + 4, true);
    pos += 8;
    // Some exporters pad max_token_length loosely, so only reject lengths that cannot be right.
    if (len < 0 || len > Math.max(maxTokenLength, 1024)) {
      throw new ModelFileError(path, `corrupt llama2.c tokenizer file: token ${i} has length ${len} (max_token_length ${maxTokenLength})`);
    }
    if (pos + len > bytes.byteLength) throw new ModelFileError(path, `truncated llama2.c tokenizer file: token ${i} bytes run past the end`);
    pieces.push(text.toString('utf8', pos, pos + len));
    scores.push(score);
    pos += len;
  }
  if (pieces.length === 0) throw new ModelFileError(path, 'llama2.c tokenizer file holds no tokens');
  return { pieces, scores, maxTokenLength };
}
