// Prompt lookup ("n-gram") proposals for speculative decoding, as vLLM's ngram method and llama.cpp's
// lookup decoding make them: no second model. The last n tokens of the sequence (n from max down to
// min) are looked for earlier in the prompt and output; where the most recent earlier occurrence
// is found, the tokens that followed it are proposed. Text that repeats — summaries quoting their
// document, edits of a given file, code that echoes names — continues the way it went before.

import type { Proposal, ProposalRequest, Proposer } from './proposer.js';

export interface NgramOptions {
  /** Tokens to propose at most. */
  numTokens: number;
  /** Shortest and longest suffix looked up (vLLM's prompt_lookup_min / prompt_lookup_max). */
  min: number;
  max: number;
}

export const DEFAULT_NGRAM = { min: 1, max: 4 } as const;

/**
 * Up to opts.numTokens tokens to follow the sequence `head` then `tail` (prompt, then output: read in
 * place, not joined), or none when no suffix occurred before.
 */
export function proposeNgram(head: readonly number[], tail: readonly number[], opts: NgramOptions): number[] {
  const h = head.length;
  const len = h + tail.length;
  const at = (i: number): number => (i < h ? head[i]! : tail[i - h]!);
  for (let n = Math.min(opts.max, len - 1); n >= opts.min; n--) {
    const start = len - n; // the suffix is [start, len)
    // The most recent earlier occurrence is the likeliest to continue the same way; but in a loop
    // it is the one just before the suffix, with one token after it, so the most recent occurrence
    // followed by a full proposal wins, else the most recent one.
    let found = -1;
    for (let i = start - 1; i >= 0; i--) {
      let j = 0;
      while (j < n && at(i + j) === at(start + j)) j++;
      if (j < n) continue;
      if (found < 0) found = i + n;
      if (len - (i + n) >= opts.numTokens) {
        found = i + n;
        break;
      }
    }
    if (found >= 0) {
      const out: number[] = [];
      for (let i = found; i < Math.min(len, found + opts.numTokens); i++) out.push(at(i));
      return out;
    }
  }
  return [];
}

/** Prompt lookup as the runner's proposer: nothing kept between steps. */
export class NgramProposer implements Proposer {
  private readonly min: number;
  private readonly max: number;

  constructor(opts: { min?: number; max?: number } = {}) {
    this.min = opts.min ?? DEFAULT_NGRAM.min;
    this.max = opts.max ?? DEFAULT_NGRAM.max;
  }

  propose(requests: readonly ProposalRequest[]): Proposal[] {
    const out: Proposal[] = [];
    for (const r of requests) {
      const tokenIds = proposeNgram(r.promptTokenIds, r.outputTokenIds, { numTokens: r.numTokens, min: this.min, max: this.max });
      if (tokenIds.length > 0) out.push({ seqId: r.seqId, tokenIds });
    }
    return out;
  }

  drop(): void {}
}
