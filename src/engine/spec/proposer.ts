// What the model runner asks for after sampling, when speculative decoding is on: tokens to follow
// each listed sequence's newest token, verified by the target in the next step. Proposals are plain
// data; a proposer never decides who runs or how many are verified (the scheduler does), and a wrong
// proposal costs only the rows that verify it — verification keeps outputs exact.

export interface ProposalRequest {
  seqId: number;
  /** The sequence so far, read in place: its prompt, then its output (the newest token last). */
  promptTokenIds: readonly number[];
  outputTokenIds: readonly number[];
  /** Its block table in this step: a draft model keeps its own keys and values under the same block ids. */
  blockTable: readonly number[];
  /** Tokens to propose at most. */
  numTokens: number;
}

export interface Proposal {
  seqId: number;
  tokenIds: number[];
}

export interface Proposer {
  /** Proposals for the listed sequences (a sequence may get fewer tokens than asked, or none). */
  propose(requests: readonly ProposalRequest[]): Proposal[];
  /** The runner dropped the sequence (finished, aborted, preempted, or announced anew). */
  drop(seqId: number): void;
}
