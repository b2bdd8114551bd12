// The runner's proposer for a speculative config: prompt lookup, or a draft model loaded here (in
// the runner's thread, beside the target) with a KV storage of its own shape under the same block ids.

import type { Kernels } from '../../model/kernels/types.js';
import type { KvCacheDtype } from '../../model/kernels/kv-dtype.js';
import { createKvStorage } from '../../model/kv-storage.js';
import { loadModel, type LoadedModel } from '../../model/loaders/index.js';
import { requantizeWeights } from '../../model/quantize-weights.js';
import { TransformerModel } from '../../model/transformer.js';
import { DraftRunner } from '../draft-runner.js';
import { checkDraftVocabSize } from './draft-vocabulary.js';
import { NgramProposer } from './ngram-proposer.js';
import type { Proposer } from './proposer.js';
import { checkSpeculativeConfig, type SpeculativeConfig } from './speculative-config.js';

type Weights = Pick<LoadedModel, 'config' | 'weights'>;

export interface ProposerContext {
  /** The target model, already loaded (self-speculation re-encodes its weights). */
  target: Weights;
  kernels: Kernels;
  /** The target's KV cache geometry, which the draft's storage shares. */
  numBlocks: number;
  blockSize: number;
  kvCacheDtype: KvCacheDtype;
}

/** The draft model a config names: its file, or the target itself, re-encoded at config.dtype when given. */
export async function loadDraftModel(spec: SpeculativeConfig, target: Weights): Promise<Weights> {
  const draft = spec.model !== undefined ? await loadModel(spec.model) : target;
  return spec.dtype ? { config: draft.config, weights: requantizeWeights(draft.weights, spec.dtype) } : draft;
}

export async function createProposer(spec: SpeculativeConfig, ctx: ProposerContext): Promise<Proposer> {
  checkSpeculativeConfig(spec);
  if (spec.method === 'ngram') return new NgramProposer({ min: spec.ngramMin, max: spec.ngramMax });
  const draft = await loadDraftModel(spec, ctx.target);
  // LLM.load compares the vocabularies token by token first; a runner made directly gets this much.
  checkDraftVocabSize(spec.model ?? '(the target)', draft.config.vocabSize, ctx.target.config.vocabSize);
  const model = new TransformerModel(draft.config, draft.weights, ctx.kernels);
  return new DraftRunner(model, createKvStorage(draft.config, ctx.numBlocks, ctx.blockSize, ctx.kvCacheDtype));
}
