// The check that a draft model can draft for a target: token ids mean the same text in both (the
// target verifies the draft's proposals id by id). Read from the files' headers, before any weights.

import { readModelHeader, type ModelHeader } from '../../model/loaders/index.js';
import type { SpeculativeConfig } from './speculative-config.js';

/** A draft model that cannot draft for the target model; the message names the difference. */
export class DraftModelError extends Error {
  override name = 'DraftModelError';

  constructor(
    /** The draft model's file. */
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

const TOKENS = 'tokenizer.ggml.tokens';

/** The vocabulary's pieces when the file carries them (GGUF does, a llama2.c checkpoint does not). */
function pieces(h: ModelHeader): readonly unknown[] | undefined {
  const t = h.metadata[TOKENS];
  return Array.isArray(t) ? t : undefined;
}

/** Throws DraftModelError unless the draft's vocabulary has the target's size. */
export function checkDraftVocabSize(draftPath: string, draftSize: number, targetSize: number): void {
  if (draftSize !== targetSize) {
    throw new DraftModelError(draftPath, `draft model ${draftPath} has a vocabulary of ${draftSize} tokens, the target model's has ${targetSize}: a draft model must share the target's vocabulary`);
  }
}

/** Throws DraftModelError unless the draft's vocabulary is the target's: the same size and, where both files list their tokens, the same token at every id. */
export function checkDraftVocabulary(target: ModelHeader, draft: ModelHeader, draftPath: string): void {
  checkDraftVocabSize(draftPath, draft.config.vocabSize, target.config.vocabSize);
  const a = pieces(target);
  const b = pieces(draft);
  if (!a || !b) return;
  for (let id = 0; id < Math.max(a.length, b.length); id++) {
    if (a[id] !== b[id]) {
      throw new DraftModelError(
        draftPath,
        `draft model ${draftPath} has a different vocabulary: token ${id} is ${JSON.stringify(b[id])} there, ${JSON.stringify(a[id])} in the target model`,
      );
    }
  }
}

/**
 * The header of the model a draft config names — its file's, checked against the target's
 * vocabulary, or the target's own (self-speculation) — or undefined for prompt lookup.
 */
export async function draftModelHeader(spec: SpeculativeConfig, target: ModelHeader): Promise<ModelHeader | undefined> {
  if (spec.method !== 'draft') return undefined;
  if (spec.model === undefined) return target;
  const draft = await readModelHeader(spec.model);
  checkDraftVocabulary(target, draft, spec.model);
  return draft;
}
