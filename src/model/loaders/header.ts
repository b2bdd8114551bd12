// A model file's configuration and metadata without its weights: cheap to read on the main thread
// (the tokenizer needs the metadata) while the worker thread loads the weights.

import { closeSync, readSync, statSync } from 'node:fs';
import type { ModelConfig } from '../config.js';
import { GGUF_MAGIC, readGgufHeader, type GgufValue } from './gguf.js';
import { fileSystemError, openModelFile } from './model-bytes.js';
import { modelConfigFromGguf } from './gguf-model.js';
import { LLAMA2C_HEADER_BYTES, llama2cConfigFromHeader } from './llama2c.js';
import { ModelFileError } from './errors.js';

export type ModelFormat = 'gguf' | 'llama2c';

export interface ModelHeader {
  format: ModelFormat;
  config: ModelConfig;
  /** GGUF metadata; {} for llama2.c checkpoints. */
  metadata: Record<string, GgufValue>;
}

/** The first bytes of a file (fewer if it is shorter) and its size. */
export function readFilePrefix(path: string, n: number): { bytes: Uint8Array; fileSize: number } {
  const fd = openModelFile(path);
  try {
    const fileSize = statSync(path).size;
    const bytes = Buffer.alloc(Math.min(n, fileSize));
    const got = readSync(fd, bytes, 0, bytes.length, 0);
    return { bytes: bytes.subarray(0, got), fileSize };
  } catch (e) {
    throw fileSystemError(path, e);
  } finally {
    closeSync(fd);
  }
}

/** GGUF files start with the magic "GGUF"; anything else is treated as a llama2.c checkpoint. */
export function detectFormat(prefix: Uint8Array): ModelFormat {
  if (prefix.byteLength >= 4 && new DataView(prefix.buffer, prefix.byteOffset, 4).getUint32(0, true) === GGUF_MAGIC) return 'gguf';
  return 'llama2c';
}

export async function readModelHeader(path: string): Promise<ModelHeader> {
  const { bytes, fileSize } = readFilePrefix(path, LLAMA2C_HEADER_BYTES);
  if (fileSize === 0) throw new ModelFileError(path, 'file is empty');
  if (detectFormat(bytes) === 'gguf') {
    const header = readGgufHeader(path);
    return { format: 'gguf', config: modelConfigFromGguf(header), metadata: header.metadata };
  }
  return { format: 'llama2c', config: llama2cConfigFromHeader(bytes, fileSize, path), metadata: {} };
}
