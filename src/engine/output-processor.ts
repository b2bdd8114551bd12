// Output processing, after the scheduler's update() (vLLM's OutputProcessor): each sampled token is
// detokenized, stop strings are looked for, logprobs are put in their output shape, and every
// update becomes the RequestOutput its request's stream yields. The scheduler has already applied
// the token-level stops (stop-check.ts); a stop string is found here, and the sequences it ends are
// handed back for the scheduler to finish (Scheduler.finishStopped).
//
// Text rules, as vLLM's:
//   - nothing stops a sequence before minTokens tokens (stop strings wait too);
//   - a stop string finishes with 'stop' and stopReason = the string; the text ends just before it;
//   - the token that ends a sequence by id (EOS or stop id) is counted but its text is not emitted.
//
// Text is decoded incrementally through the tokenizer's stream decoder, which never returns half a
// UTF-8 character. A stop string can arrive split across tokens, so any tail of the text that could
// still grow into a stop string is held back until the next token settles it; when the sequence
// ends for any other reason the held-back text is released.
import type { Tokenizer, StreamDecoder } from '../model/tokenizer-types.js';
import type { TokenStop } from './stop-check.js';
import type { FinishReason, RequestOutput, SampledToken, SamplingParams, SequenceUpdate } from './types.js';

export interface SequenceOutputOptions {
  /** null: no text, only token ids (stop strings then never match). */
  tokenizer: Tokenizer | null;
  params: SamplingParams;
  numPromptTokens: number;
}

/** What one appended token produced. */
export interface AppendResult {
  /** New text ready to emit (may be '' while bytes or a possible stop string are held back). */
  text: string;
  finished: boolean;
  finishReason?: FinishReason;
  /** For 'stop': the stop string or stop token id; undefined when an end-of-generation id ended it. */
  stopReason?: string | number;
}

/** A token that released no text (bytes or a possible stop string held back, or no tokenizer): shared, never changed. */
const NO_TEXT_YET: AppendResult = Object.freeze({ text: '', finished: false });

/** Appending to a sequence that has already finished (a bug in the caller). */
export class SequenceFinishedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SequenceFinishedError';
  }
}

export class SequenceOutputState {
  readonly numPromptTokens: number;
  private readonly params: SamplingParams;
  private readonly stopStrings: readonly string[];
  private readonly decoder: StreamDecoder | null;
  private readonly tokenIds: number[] = [];
  /** Text emitted so far (never contains a stop string that ended the sequence). */
  private emitted = '';
  /** Decoded text not yet emitted: a tail that may be the start of a stop string. */
  private pending = '';
  private done = false;
  private reason: FinishReason | undefined;
  private stopWhy: string | number | undefined;
  private logprobSum = 0;

  constructor(opts: SequenceOutputOptions) {
    this.params = opts.params;
    this.numPromptTokens = opts.numPromptTokens;
    this.decoder = opts.tokenizer ? opts.tokenizer.streamDecoder({ skipSpecial: true }) : null;
    this.stopStrings = this.decoder ? opts.params.stop.filter((s) => s.length > 0) : [];
  }

  /** Generated token ids, including one that ended the sequence. */
  get outputTokenIds(): readonly number[] {
    return this.tokenIds;
  }

  get numOutputTokens(): number {
    return this.tokenIds.length;
  }

  /** All text emitted so far (what the concatenated append() texts add up to). */
  get text(): string {
    return this.emitted;
  }

  get finished(): boolean {
    return this.done;
  }

  get finishReason(): FinishReason | undefined {
    return this.reason;
  }

  get stopReason(): string | number | undefined {
    return this.stopWhy;
  }

  /** Sum of the appended tokens' logprobs (those that carried one). */
  get cumulativeLogprob(): number {
    return this.logprobSum;
  }

  /**
   * Takes the next sampled token, and the token-level stop the scheduler found for it (if any); says
   * what text it released and whether the sequence is done.
   */
  append(tok: SampledToken, stop?: TokenStop): AppendResult {
    if (this.done) {
      throw new SequenceFinishedError(`sequence ${tok.seqId} already finished (${this.reason}); cannot append token ${tok.tokenId}`);
    }
    const id = tok.tokenId;
    this.tokenIds.push(id);
    if (tok.logprob !== undefined) this.logprobSum += tok.logprob;

    // Token-id stops: the ending token's own text is not part of the output.
    if (stop?.finishReason === 'stop') return this.end('stop', stop.stopTokenId);

    if (this.decoder) this.pending += this.decoder.push(id);

    if (this.tokenIds.length >= this.params.minTokens) {
      const match = this.findStop();
      if (match) {
        const text = this.pending.slice(0, match.at);
        this.pending = '';
        this.emitted += text;
        this.markDone('stop', match.stop);
        return { text, finished: true, finishReason: 'stop', stopReason: match.stop };
      }
    }
    if (stop) return this.end(stop.finishReason, undefined);

    const text = this.release(this.pending.length - this.heldBackLength());
    return text === '' ? NO_TEXT_YET : { text, finished: false };
  }

  /**
   * Ends the sequence from outside (an abort): the decoder's and the stop-string hold-back's text is
   * released. Returns that text.
   */
  finish(reason: FinishReason): AppendResult {
    if (this.done) return { text: '', finished: true, finishReason: this.reason, stopReason: this.stopWhy };
    return this.end(reason, undefined);
  }

  private end(reason: FinishReason, stopReason: string | number | undefined): AppendResult {
    if (this.decoder) this.pending += this.decoder.flush();
    const text = this.release(this.pending.length);
    this.markDone(reason, stopReason);
    const result: AppendResult = { text, finished: true, finishReason: reason };
    if (stopReason !== undefined) result.stopReason = stopReason;
    return result;
  }

  private markDone(reason: FinishReason, stopReason: string | number | undefined): void {
    this.done = true;
    this.reason = reason;
    this.stopWhy = stopReason;
  }

  /** Emits the first `count` UTF-16 units of the pending text. */
  private release(count: number): string {
    if (count <= 0) return '';
    const text = this.pending.slice(0, count);
    this.pending = this.pending.slice(count);
    this.emitted += text;
    return text;
  }

  /**
   * The earliest stop string occurrence in the pending text (among several starting at the same
   * place, the first listed). Pending text is all that can hold one: emitted text was released only
   * after it was known not to start a stop string.
   */
  private findStop(): { at: number; stop: string } | undefined {
    let best: { at: number; stop: string } | undefined;
    for (const stop of this.stopStrings) {
      const at = this.pending.indexOf(stop);
      if (at >= 0 && (best === undefined || at < best.at)) best = { at, stop };
    }
    return best;
  }

  /** Length of the longest tail of the pending text that is a proper prefix of some stop string. */
  private heldBackLength(): number {
    let held = 0;
    const text = this.pending;
    for (const stop of this.stopStrings) {
      for (let len = Math.min(stop.length - 1, text.length); len > held; len--) {
        if (text.endsWith(stop.slice(0, len))) {
          held = len;
          break;
        }
      }
    }
    return held;
  }
}

/** A sequence a stop string ended: the scheduler must finish it too. */
export interface StopStringHit {
  requestId: string;
  index: number;
}

/** The per-request side of output processing: one SequenceOutputState per completion. */
export class OutputProcessor {
  private readonly requests = new Map<string, { states: SequenceOutputState[]; numFinished: number }>();

  constructor(private readonly tokenizer: Tokenizer | null) {}

  addRequest(requestId: string, params: SamplingParams, numPromptTokens: number): void {
    const states: SequenceOutputState[] = [];
    for (let i = 0; i < params.n; i++) states.push(new SequenceOutputState({ tokenizer: this.tokenizer, params, numPromptTokens }));
    this.requests.set(requestId, { states, numFinished: 0 });
  }

  /** Forgets a request the engine gave up on (its step failed). */
  drop(requestId: string): void {
    this.requests.delete(requestId);
  }

  /**
   * One RequestOutput per update (a token, an end, or both), in order; `stopped` lists the sequences
   * a stop string ended, which the scheduler has not finished yet.
   */
  process(updates: readonly SequenceUpdate[]): { outputs: RequestOutput[]; stopped: StopStringHit[] } {
    const outputs: RequestOutput[] = [];
    const stopped: StopStringHit[] = [];
    for (const u of updates) {
      const req = this.requests.get(u.requestId);
      if (!req) continue;
      const state = req.states[u.index];
      const tok = u.token;
      // An update carries its token-level stop in TokenStop's own shape (no object per token).
      const d = tok ? state.append(tok, u.finishReason ? (u as TokenStop) : undefined) : state.finish(u.finishReason ?? 'abort');
      const o: RequestOutput = {
        requestId: u.requestId,
        index: u.index,
        newTokenIds: tok ? [tok.tokenId] : [],
        text: d.text,
        finished: d.finished,
        numPromptTokens: state.numPromptTokens,
        numCachedTokens: u.numCachedTokens,
        numOutputTokens: u.numOutputTokens,
        numPreemptions: u.numPreemptions,
      };
      if (tok?.logprob !== undefined) o.logprobs = [{ tokenId: tok.tokenId, logprob: tok.logprob, top: tok.topLogprobs ?? [] }];
      if (d.finished) o.finishReason = d.finishReason ?? 'stop';
      if (d.stopReason !== undefined) o.stopReason = d.stopReason;
      outputs.push(o);
      if (!d.finished) continue;
      if (u.finishReason === undefined) stopped.push({ requestId: u.requestId, index: u.index });
      if (++req.numFinished === req.states.length) this.requests.delete(u.requestId);
    }
    return { outputs, stopped };
  }
}
