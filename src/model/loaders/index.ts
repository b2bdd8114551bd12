// Loads a model file of either supported format into a ModelConfig and LlamaWeights. GGUF weights
// are views of the file's memory mapping in their stored dtype (one mapping per process, whichever
// thread loads it); llama2.c checkpoints are read into memory once.

import type { ModelConfig } from '../config.js';
import type { LlamaWeights } from '../weights.js';
import { ModelFileError } from './errors.js';
import { readGguf, readModelBytes, type GgufValue } from './gguf.js';
import { modelConfigFromGguf, modelWeightsFromGguf } from './gguf-model.js';
import { detectFormat, readFilePrefix, type ModelFormat } from './header.js';
import { parseLlama2c } from './llama2c.js';

export { ModelFileError } from './errors.js';
export type { GgufValue } from './gguf.js';
export { readModelHeader, type ModelHeader, type ModelFormat } from './header.js';

export interface LoadedModel {
  format: ModelFormat;
  config: ModelConfig;
  weights: LlamaWeights;
  /** GGUF metadata (tokenizer and all); {} for llama2.c checkpoints. */
  metadata: Record<string, GgufValue>;
}

export async function loadModel(path: string): Promise<LoadedModel> {
  const { bytes: prefix, fileSize } = readFilePrefix(path, 8);
  if (fileSize === 0) throw new ModelFileError(path, 'file is empty');
  if (detectFormat(prefix) === 'gguf') {
    // Tensors are views of the file's mapping (see readGguf): nothing is copied.
    const file = readGguf(path);
    const config = modelConfigFromGguf(file);
    return { format: 'gguf', config, weights: modelWeightsFromGguf(file, config), metadata: file.metadata };
  }
  // llama2.c checkpoints are small float32 files, read whole.
  const bytes = readModelBytes(path);
  const { config, weights } = parseLlama2c(bytes, path);
  return { format: 'llama2c', config, weights, metadata: {} };
}
