// Plain data handed between the engine's parts. The scheduler decides who runs and emits a
// SchedulerOutput; the model runner computes and samples and returns a ModelRunnerOutput; the
// scheduler's update() applies it and reports SequenceUpdates; the output processor turns those into
// per-request outputs. Nothing here holds tensors, so the model runner can live in a worker thread
// and receive these objects by structured clone.

import type { StructuredOutputsParams } from './structured/constraint.js';

/** Sampling settings of one request (library spelling; CLI and HTTP map their names onto these). */
export interface SamplingParams {
  /** Tokens to generate at most (vLLM/OpenAI max_tokens). */
  maxTokens: number;
  /** 0 means greedy. */
  temperature: number;
  /** 0 or -1 disables. */
  topK: number;
  /** 1 disables. */
  topP: number;
  /** 0 disables. */
  minP: number;
  /** OpenAI-style additive penalties over the generated tokens (0 disables). */
  presencePenalty: number;
  frequencyPenalty: number;
  /** CTRL-style multiplicative penalty over prompt and generated tokens (1 disables). */
  repetitionPenalty: number;
  /** Extra token ids that end generation (the model's end-of-generation ids always do unless ignoreEos). */
  stopTokenIds: number[];
  /** Strings that end generation; the matched string is not included in the output text. */
  stop: string[];
  ignoreEos: boolean;
  /** Do not stop before this many tokens (EOS and stop ids are ignored until then). */
  minTokens: number;
  /** null: no logprobs. k >= 0: the chosen token's logprob plus the top k alternatives. */
  logprobs: number | null;
  /** Per-request seed; results depend only on it, never on the rest of the batch. Undefined: random. */
  seed?: number;
  /** Number of completions for the prompt (they share the prompt's KV blocks). */
  n: number;
  /** Constrain the output to a JSON schema, regex, choice or grammar (structured outputs). */
  structuredOutputs?: StructuredOutputsParams;
  /** Speculative decoding may propose tokens for this request when the engine has it on (default true). */
  speculative: boolean;
}

export const DEFAULT_SAMPLING: SamplingParams = {
  maxTokens: 16,
  temperature: 1,
  topK: 0,
  topP: 1,
  minP: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repetitionPenalty: 1,
  stopTokenIds: [],
  stop: [],
  ignoreEos: false,
  minTokens: 0,
  logprobs: null,
  seed: undefined,
  n: 1,
  structuredOutputs: undefined,
  speculative: true,
};

/** One sequence's share of a step. */
export interface ScheduledSequence {
  seqId: number;
  /** Token ids to compute in this step (a prefill chunk, or the one newest token when decoding). */
  tokenIds: number[];
  /** Absolute position of tokenIds[0] (= tokens of this sequence already in the KV cache). */
  startPosition: number;
  /** The sequence's whole block table (physical block ids in position order). */
  blockTable: number[];
  /** True when this chunk reaches the sequence's newest token, so a next token is sampled from its last row. */
  sample: boolean;
  /**
   * Static-batching padding: extra rows computed and thrown away (token 0 at the position of the
   * sequence's newest token, attending its context, writing no KV). Models the wasted work of
   * request-level batching: prompts padded to the longest, finished rows held until the batch ends.
   */
  padRows?: number;
  /**
   * Structured outputs: the tokens the row may sample, one bit per token id (XGrammar's bitmask:
   * bit i % 32 of word i / 32); set by the engine for constrained rows that sample.
   */
  grammarBitmask?: Int32Array;
  /**
   * Speculative decoding: the last tokenIds are these proposals (after the sequence's newest token);
   * the runner verifies them, returning the accepted ones plus one token of its own.
   */
  draftTokenIds?: number[];
  /**
   * Speculative decoding: after sampling, the runner proposes at most this many tokens to follow the
   * sequence's newest token (fewer after a rejection in this step, as the scheduler's adaptive rule
   * will ask for); absent, none. The scheduler's guess of what it verifies next step: 0 while the
   * batch is too big, the sequence is paused, or the request opted out.
   */
  proposeTokens?: number;
}

/** First sight of a sequence by the runner: what it needs to sample for it. */
export interface NewSequenceData {
  seqId: number;
  promptTokenIds: number[];
  /** Tokens already generated (non-empty when a preempted sequence is recomputed). */
  outputTokenIds: number[];
  sampling: SamplingParams;
  /** Seed of this sequence's random stream (request seed mixed with the completion index). */
  seed: number;
}

export interface SchedulerOutput {
  step: number;
  scheduled: ScheduledSequence[];
  /** Sequences the runner has not seen before; always listed before their first scheduled entry. */
  newSequences: NewSequenceData[];
  /** Sequences that finished or were aborted since the last step: the runner drops their state. */
  finishedSeqIds: number[];
  /** Copy-on-write: copy KV block src to dst (all layers) before the forward pass. */
  blockCopies: Array<[src: number, dst: number]>;
  /** Sum of tokenIds lengths plus padRows over scheduled sequences. */
  numBatchedTokens: number;
}

export interface TokenLogprob {
  tokenId: number;
  logprob: number;
}

export interface SampledToken {
  seqId: number;
  tokenId: number;
  /** Present when the sequence asked for logprobs: log-softmax of the raw logits. */
  logprob?: number;
  topLogprobs?: TokenLogprob[];
}

export interface ModelRunnerOutput {
  /**
   * The tokens sampled, in step order; a sequence that verified proposals has several, in order:
   * the accepted proposals, then one token of the runner's own.
   */
  sampled: SampledToken[];
  /** Speculative decoding: tokens proposed to follow each sequence's newest token, for the next step. */
  drafts?: Array<{ seqId: number; tokenIds: number[] }>;
  /** Milliseconds spent in the forward pass and in sampling, measured by the runner. */
  forwardMs: number;
  sampleMs: number;
  /** Milliseconds spent proposing tokens for the next step (a draft model's passes), when any were. */
  proposeMs?: number;
}

export interface ModelRunner {
  /** Runs one forward pass over the step's ragged batch and samples where asked. */
  execute(step: SchedulerOutput): Promise<ModelRunnerOutput>;
  /** Frees the model, KV storage and any worker thread. */
  close(): Promise<void>;
}

export type FinishReason = 'stop' | 'length' | 'abort';

/**
 * What the scheduler did to one sequence in update() or abort(), before any text exists (vLLM's
 * EngineCoreOutput): the token it appended, if any, and the end a token-level rule or an abort gave it.
 */
export interface SequenceUpdate {
  requestId: string;
  /** Completion index (0..n-1). */
  index: number;
  token?: SampledToken;
  /** Set when the sequence ended: 'stop' (end-of-generation or stop token id), 'length' or 'abort'. */
  finishReason?: FinishReason;
  /** The stop token id that ended it. */
  stopTokenId?: number;
  numCachedTokens: number;
  numOutputTokens: number;
  numPreemptions: number;
}

/** What a request's stream yields, once per step in which it produced something. */
export interface RequestOutput {
  requestId: string;
  /** Completion index (0..n-1). */
  index: number;
  /** Tokens generated in this step (usually one). */
  newTokenIds: number[];
  /** Text they decoded to (never a broken UTF-8 sequence; stop strings removed). */
  text: string;
  logprobs?: Array<{ tokenId: number; logprob: number; top: TokenLogprob[] }>;
  finished: boolean;
  finishReason?: FinishReason;
  /** For finishReason 'stop': the stop string or token id that ended it. */
  stopReason?: string | number;
  numPromptTokens: number;
  /** Prompt tokens served from the prefix cache instead of being computed. */
  numCachedTokens: number;
  numOutputTokens: number;
  numPreemptions: number;
}
