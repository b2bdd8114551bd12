// Locates the small real model files the tests use. They live beside the checkout in
// ../shared/models (CI has them too); STEPWISE_MODELS_DIR points elsewhere.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

export function sharedModelsDir(): string {
  return resolve(process.env.STEPWISE_MODELS_DIR ?? resolve(process.cwd(), '..', 'shared', 'models'));
}

/** Absolute path of a file under the shared models folder, or a clear reason why it is missing. */
export function sharedModelFile(rel: string): { path: string; missing?: string } {
  const path = resolve(sharedModelsDir(), rel);
  if (existsSync(path)) return { path };
  return { path, missing: `shared model file ${path} is missing: put ../shared/models beside the checkout or set STEPWISE_MODELS_DIR` };
}

export const STORIES260K = 'stories260K/stories260K.bin';
export const LLAMA2_TOKENIZER_BIN = 'llama2-tokenizer/tokenizer.bin';
export const LLAMA2_TOKENIZER_MODEL = 'llama2-tokenizer/tokenizer.model';
