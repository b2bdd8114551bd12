// The token-level stop rules the scheduler applies as each token is appended (vLLM's check_stop).
// Nothing here needs text: stop strings are the output processor's (output-processor.ts), which
// tells the scheduler when one ends a sequence.
//   - nothing stops a sequence before minTokens tokens (EOS and stop ids wait);
//   - an end-of-generation id (unless ignoreEos) finishes with 'stop' and no stop reason;
//   - a stop token id finishes with 'stop' and that id as the stop reason;
//   - the maxTokens-th token finishes with 'length'.
import type { FinishReason, SamplingParams } from './types.js';

/** Why a sequence ended at the token it just appended. */
export interface TokenStop {
  finishReason: FinishReason;
  /** The stop token id that ended it (undefined for an end-of-generation id or length). */
  stopTokenId?: number;
}

const EOS_STOP: TokenStop = { finishReason: 'stop' };
export const LENGTH_STOP: TokenStop = { finishReason: 'length' };

/** Whether `tokenId`, the sequence's `numOutputTokens`-th generated token, ends it; undefined if it goes on. */
export function checkTokenStop(p: SamplingParams, eogIds: ReadonlySet<number>, numOutputTokens: number, tokenId: number): TokenStop | undefined {
  if (numOutputTokens >= p.minTokens) {
    if (!p.ignoreEos && eogIds.has(tokenId)) return EOS_STOP;
    if (p.stopTokenIds.length > 0 && p.stopTokenIds.includes(tokenId)) return { finishReason: 'stop', stopTokenId: tokenId };
  }
  return numOutputTokens >= p.maxTokens ? LENGTH_STOP : undefined;
}
