// Why a request is refused before it is queued: a malformed prompt, parameters or id, or a length
// that could never fit the model or the KV cache. Each check throws the error the server maps to a
// 400 and the CLI prints as is.

import { InvalidRequestError, PromptTooLongError } from './request-errors.js';
import type { SchedulerOptions } from './scheduler-options.js';
import type { SamplingParams } from './types.js';

export interface AddRequest {
  requestId?: string;
  promptTokenIds: number[];
  sampling: SamplingParams;
  /** Lower runs first under the priority policy (default 0). */
  priority?: number;
}

/**
 * Throws InvalidRequestError or PromptTooLongError unless the request can run; `blocksNeeded`
 * converts tokens to KV blocks (the KV cache manager's arithmetic).
 */
export function checkRequest(r: AddRequest, o: Readonly<SchedulerOptions>, blocksNeeded: (numTokens: number) => number): void {
  const prompt = r.promptTokenIds;
  if (!Array.isArray(prompt) || prompt.length === 0) throw new InvalidRequestError('prompt must contain at least one token id');
  for (let i = 0; i < prompt.length; i++) {
    const id = prompt[i];
    if (!Number.isSafeInteger(id) || id < 0) throw new InvalidRequestError(`prompt token ${i} must be an integer token id >= 0, got ${String(id)}`);
  }
  const priority = r.priority ?? 0;
  if (typeof priority !== 'number' || !Number.isFinite(priority)) throw new InvalidRequestError(`priority must be a finite number, got ${String(priority)}`);
  const sp = r.sampling;
  if (!sp || !Number.isSafeInteger(sp.maxTokens) || sp.maxTokens < 1) throw new InvalidRequestError(`maxTokens must be an integer >= 1, got ${String(sp?.maxTokens)}`);
  if (!Number.isSafeInteger(sp.n) || sp.n < 1) throw new InvalidRequestError(`n must be an integer >= 1, got ${String(sp.n)}`);
  if (sp.n > o.maxNumSeqs) throw new InvalidRequestError(`n (${sp.n}) exceeds max_num_seqs (${o.maxNumSeqs}): the completions of one request must run together`);
  const P = prompt.length;
  const M = sp.maxTokens;
  if (P > o.maxModelLen) {
    throw new PromptTooLongError(`prompt of ${P} tokens exceeds the maximum model length of ${o.maxModelLen} tokens`, P, M, o.maxModelLen);
  }
  if (P === o.maxModelLen) {
    throw new PromptTooLongError(`prompt of ${P} tokens fills the maximum model length of ${o.maxModelLen} tokens, leaving no room for max_tokens ${M}`, P, M, o.maxModelLen);
  }
  if (P + M > o.maxModelLen) {
    throw new PromptTooLongError(
      `prompt of ${P} tokens plus max_tokens ${M} is ${P + M} tokens, more than the maximum model length of ${o.maxModelLen}; ` +
        `lower max_tokens to ${o.maxModelLen - P} or shorten the prompt`,
      P, M, o.maxModelLen,
    );
  }
  // The last generated token is never fed back, so a sequence computes P + M - 1 positions.
  const blocks = blocksNeeded(P + M - 1);
  if (blocks > o.numBlocks) {
    throw new PromptTooLongError(
      `prompt of ${P} tokens plus max_tokens ${M} needs ${blocks} KV blocks of ${o.blockSize} tokens, ` +
        `but the KV cache has only ${o.numBlocks} blocks (${o.numBlocks * o.blockSize} tokens)`,
      P, M, o.numBlocks * o.blockSize,
    );
  }
  if (r.requestId !== undefined && (typeof r.requestId !== 'string' || r.requestId.length === 0)) throw new InvalidRequestError('requestId must be a non-empty string');
}
