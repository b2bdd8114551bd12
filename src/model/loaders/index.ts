// Loads a model file of either supported format into a ModelConfig and LlamaWeights. The file is
// read into memory once; weights are views into that buffer in their stored dtype.

import type { ModelConfig } from '../config.js';
import type { LlamaWeights } from '../weights.js';
import { ModelFileError } from './errors.js';
import { parseGguf, readModelBytes, type GgufValue } from './gguf.js';
import { modelConfigFromGguf, modelWeightsFromGguf } from './gguf-model.js';
import { detectFormat, type ModelFormat } from './header.js';
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
  const bytes = readModelBytes(path);
  if (bytes.byteLength === 0) throw new ModelFileError(path, 'file is empty');
  if (detectFormat(bytes) === 'gguf') {
    const file = parseGguf(bytes, path);
    const config = modelConfigFromGguf(file);
    return { format: 'gguf', config, weights: modelWeightsFromGguf(file, config), metadata: file.metadata };
  }
  const { config, weights } = parseLlama2c(bytes, path);
  return { format: 'llama2c', config, weights, metadata: {} };
}
