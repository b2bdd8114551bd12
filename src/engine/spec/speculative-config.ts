// How speculative decoding proposes tokens: the library's `speculative` option (the CLI's
// --speculative-method and its flags), handed to the model runner (and its worker) as plain data.

import { isRequantDtype, REQUANT_DTYPES, type RequantDtype } from '../../model/quantize-weights.js';

export type SpeculativeMethod = 'ngram' | 'draft';

export interface SpeculativeConfig {
  /** ngram: prompt lookup (no second model). draft: a smaller model with the same vocabulary proposes. */
  method: SpeculativeMethod;
  /** Tokens proposed per sequence and step at most. */
  numTokens: number;
  /** ngram: shortest and longest suffix looked for (default 1 and 4). */
  ngramMin?: number;
  ngramMax?: number;
  /** draft: the draft model's file (GGUF or llama2.c), with the target's vocabulary; absent, the target itself (give `dtype`). */
  model?: string;
  /**
   * draft: re-encode the draft's weights in memory at this type. Without `model` this is
   * self-speculation: the target's own Q4_0 (or Q8_0) copy drafts for it.
   */
  dtype?: RequantDtype;
}

const METHODS: readonly SpeculativeMethod[] = ['ngram', 'draft'];

/** Checks a config by field name (RangeError naming the field); returns the most tokens proposed per step. */
export function checkSpeculativeConfig(s: SpeculativeConfig): number {
  if (!METHODS.includes(s.method)) throw new RangeError(`speculative.method must be one of ${METHODS.join(', ')}, got ${JSON.stringify(s.method)}`);
  const int = (name: string, v: unknown, min: number) => {
    if (v !== undefined && (!Number.isSafeInteger(v) || (v as number) < min)) throw new RangeError(`speculative.${name} must be an integer >= ${min}, got ${String(v)}`);
  };
  int('numTokens', s.numTokens, 1);
  const misplaced = (s.method === 'ngram' ? (['model', 'dtype'] as const) : (['ngramMin', 'ngramMax'] as const)).find((k) => s[k] !== undefined);
  if (misplaced) throw new RangeError(`speculative.${misplaced} does not apply to method '${s.method}'`);
  if (s.method === 'ngram') {
    int('ngramMin', s.ngramMin, 1);
    int('ngramMax', s.ngramMax, 1);
    if ((s.ngramMin ?? 1) > (s.ngramMax ?? 4)) throw new RangeError(`speculative.ngramMin (${s.ngramMin ?? 1}) must not exceed ngramMax (${s.ngramMax ?? 4})`);
    return s.numTokens;
  }
  if (s.model !== undefined && (typeof s.model !== 'string' || s.model === '')) throw new RangeError(`speculative.model must be a file path, got ${JSON.stringify(s.model)}`);
  if (s.dtype !== undefined && !isRequantDtype(s.dtype)) throw new RangeError(`speculative.dtype must be one of ${REQUANT_DTYPES.join(', ')}, got ${JSON.stringify(s.dtype)}`);
  if (s.model === undefined && s.dtype === undefined) throw new RangeError(`speculative method 'draft' needs a draft model file (model) or a weight type for the target's own copy (dtype)`);
  return s.numTokens;
}
