// The draft model of speculative decoding (vLLM's draft-model proposer): a second, smaller model with
// the target's vocabulary — or the target's own Q4_0 copy — that proposes tokens greedily after the
// target has sampled. It keeps its own paged KV cache under the target's block ids (same block size,
// a second storage of the draft's shape), so the scheduler's block tables, look-ahead slots and
// rollback serve both models; its proposals flow back as data.
//
// Each step, for the sequences the scheduler wants proposals for: one ragged pass over what the
// draft has not yet seen of each sequence (its accepted proposals' successor, a prompt, or — after
// a time without speculation — a longer catch-up), whose last row proposes the first token; then
// k - 1 one-row passes, batched across sequences, each feeding the previous proposal. The draft's KV
// of a proposal it made stays valid when the target accepts that token, so a sequence in steady
// decode costs the draft one row per pass. Proposals are greedy (the draft's argmax): the target's
// verification (verifyToken) accepts a point proposal d with probability p(d) and otherwise draws
// from p without d, which is Leviathan et al.'s rule for a proposal distribution q = δ(d) — exact
// for greedy and sampled targets alike, with no random stream of the draft's to keep reproducible.
//
// Nothing here can change an output: a stale draft KV row only makes proposals worse. The draft
// still tracks exactly which of its rows hold what (below), so that acceptance stays as high as the
// draft allows.

import { createHash } from 'node:crypto';
import type { ForwardBatch, TransformerModel } from '../model/transformer.js';
import type { KvStorage } from '../model/kernels/types.js';
import { buildForwardBatch } from './forward-batch.js';
import type { Proposal, ProposalRequest, Proposer } from './spec/proposer.js';
import type { ScheduledSequence } from './types.js';

/**
 * Rows the draft computes per step to catch up with sequences it has not followed (a new prompt,
 * a sequence that ran while the batch was too big to speculate): a bounded cost per step, about a
 * prefill chunk of the draft; a sequence further behind catches up over several steps, proposing
 * nothing until it has.
 */
export const DRAFT_CATCH_UP_ROWS = 512;

/** What the draft's KV cache holds of one sequence. */
interface DraftSeqState {
  /** Positions [0, computed) hold the draft's keys and values of the sequence's own tokens. */
  computed: number;
  /** The tokens the draft wrote at positions computed, computed + 1, ... while proposing (its proposals' inputs). */
  scratch: number[];
  /** The block table they were written under: a block replaced since (copy-on-write) lost them. */
  table: readonly number[];
  /** keys[j]: the key of the sequence's tokens up to the end of block j (blockKey), as far as computed. */
  keys: string[];
  /** Full blocks [0, recorded) are entered in the runner's fullBlocks under this table. */
  recorded: number;
}

/** A sequence proposing in this step. */
interface Active {
  req: ProposalRequest;
  st: DraftSeqState;
  /** Position of the newest token (the first pass's last row). */
  newest: number;
  k: number;
  tokens: number[];
}

export class DraftRunner implements Proposer {
  private readonly seqs = new Map<number, DraftSeqState>();
  private logitsBuf = new Float32Array(0);
  /**
   * Full blocks of the draft's cache, by block id: the key of the tokens up to the block's end that
   * its rows hold. A new sequence whose table starts with such blocks for the same tokens — the
   * target's prefix cache handing it another sequence's blocks — reuses the draft's rows instead of
   * recomputing them (vLLM's draft shares the target's prefix hits the same way).
   */
  private readonly fullBlocks = new Map<number, string>();
  /** Rows the draft has computed (all passes), for tests and benchmarks. */
  rowsComputed = 0;

  constructor(
    readonly model: TransformerModel,
    readonly kv: KvStorage,
    private readonly catchUpRows = DRAFT_CATCH_UP_ROWS,
  ) {}

  drop(seqId: number): void {
    this.seqs.delete(seqId);
  }

  propose(requests: readonly ProposalRequest[]): Proposal[] {
    const bs = this.kv.blockSize;
    const first: ScheduledSequence[] = [];
    const active: Active[] = [];
    let budget = this.catchUpRows;
    for (const req of requests) {
      const st = this.state(req);
      const total = req.promptTokenIds.length + req.outputTokenIds.length;
      const newest = total - 1;
      // Proposal i (1-based) is computed from a row at newest + i - 1, which needs a slot.
      const k = Math.min(req.numTokens, req.blockTable.length * bs - newest);
      const need = total - st.computed;
      // A sequence in steady decode needs a row or two; only catch-ups are held to the budget.
      if (k > 0 && (need <= req.numTokens + 1 || need <= budget)) {
        first.push(rowsOf(req, st.computed, total, true));
        active.push({ req, st, newest, k, tokens: [] });
        budget -= need;
      } else if (budget > 0 && st.computed < newest) {
        // Not proposing this step (too far behind, or no slot past the newest token): catch up on what fits.
        const end = Math.min(newest, st.computed + budget);
        first.push(rowsOf(req, st.computed, end, false));
        budget -= end - st.computed;
        st.computed = end;
      }
    }
    if (first.length === 0) return [];
    this.pass(first, active);
    for (const a of active) {
      a.st.computed = a.newest + 1;
      a.st.scratch = [];
      a.st.table = a.req.blockTable;
    }
    for (const req of requests) this.recordFullBlocks(req);
    // Decode passes: proposal i feeds the pass that makes proposal i + 1, one row per sequence.
    for (let i = 1; ; i++) {
      const more = active.filter((a) => a.k > i);
      if (more.length === 0) break;
      const rows = more.map((a) => {
        const token = a.tokens[i - 1]!;
        a.st.scratch.push(token);
        return { seqId: a.req.seqId, tokenIds: [token], startPosition: a.newest + i, blockTable: a.req.blockTable as number[], sample: true };
      });
      this.pass(rows, more);
    }
    return active.map((a) => ({ seqId: a.req.seqId, tokenIds: a.tokens }));
  }

  /** One ragged forward pass of the draft; each sequence in `active` gets its argmax appended (they are its sampling rows, in order). */
  private pass(rows: ScheduledSequence[], active: Active[]): void {
    // Blocks written to no longer hold what fullBlocks says (recordFullBlocks enters them again
    // once a sequence's computed rows fill them).
    const bs = this.kv.blockSize;
    for (const r of rows) {
      for (let j = Math.floor(r.startPosition / bs); j * bs < r.startPosition + r.tokenIds.length; j++) this.fullBlocks.delete(r.blockTable[j]!);
      this.rowsComputed += r.tokenIds.length;
    }
    const { batch } = buildForwardBatch(rows, this.kv.blockSize);
    const logits = this.forward(batch);
    const vocab = this.model.config.vocabSize;
    active.forEach((a, j) => a.tokens.push(argmax(logits, j * vocab, vocab)));
  }

  private forward(batch: ForwardBatch): Float32Array {
    const need = batch.logitRows.length * this.model.config.vocabSize;
    if (this.logitsBuf.length < need) this.logitsBuf = new Float32Array(Math.max(need, 2 * this.logitsBuf.length));
    return this.model.forward(batch, this.kv, this.logitsBuf);
  }

  /**
   * The draft's state for a sequence, brought up to date: rows under blocks that were replaced since
   * they were written are forgotten, and the proposal inputs the target accepted (the sequence's
   * tokens now) count as computed — those rows were written with exactly this context.
   */
  private state(req: ProposalRequest): DraftSeqState {
    const bs = this.kv.blockSize;
    let st = this.seqs.get(req.seqId);
    if (!st) {
      st = { computed: 0, scratch: [], table: req.blockTable, keys: [], recorded: 0 };
      this.seqs.set(req.seqId, st);
      // Full blocks the draft already holds for these same tokens (never the newest token's row).
      const total = req.promptTokenIds.length + req.outputTokenIds.length;
      for (let j = 0; (j + 1) * bs <= total - 1 && j < req.blockTable.length; j++) {
        const held = this.fullBlocks.get(req.blockTable[j]!);
        // Hashed only where the draft holds the block at all: most new prompts share nothing.
        if (held === undefined || held !== this.blockKey(req, st, j)) break;
        st.computed = (j + 1) * bs;
      }
      st.recorded = st.computed / bs;
      return st;
    }
    if (st.table !== req.blockTable) {
      const bs = this.kv.blockSize;
      const written = st.computed + st.scratch.length;
      let j = 0;
      while (j * bs < written && j < req.blockTable.length && st.table[j] === req.blockTable[j]) j++;
      const validEnd = Math.min(written, j * bs);
      if (validEnd < st.computed) {
        st.computed = validEnd;
        st.scratch = [];
      } else {
        st.scratch.length = validEnd - st.computed;
      }
      st.table = req.blockTable;
      st.recorded = Math.min(st.recorded, j);
    }
    const prompt = req.promptTokenIds;
    const out = req.outputTokenIds;
    const total = prompt.length + out.length;
    // Never the newest token's row: the first pass recomputes it for the logits of the first proposal.
    for (const t of st.scratch) {
      if (st.computed >= total - 1) break;
      const actual = st.computed < prompt.length ? prompt[st.computed] : out[st.computed - prompt.length];
      if (t !== actual) break;
      st.computed++;
    }
    // Past the first mismatch the rows are stale; they are rewritten before they are read again.
    st.scratch = [];
    return st;
  }

  /** Enters the sequence's full computed blocks in fullBlocks. */
  private recordFullBlocks(req: ProposalRequest): void {
    const st = this.seqs.get(req.seqId);
    if (!st) return;
    const bs = this.kv.blockSize;
    for (; (st.recorded + 1) * bs <= st.computed && st.recorded < st.table.length; st.recorded++) {
      this.fullBlocks.set(st.table[st.recorded]!, this.blockKey(req, st, st.recorded));
    }
  }

  /**
   * A key of the sequence's tokens [0, (j + 1) * blockSize): a hash chained block by block, so equal
   * keys mean equal tokens from the start, as the target's prefix cache requires for a shared block.
   */
  private blockKey(req: ProposalRequest, st: DraftSeqState, j: number): string {
    const bs = this.kv.blockSize;
    const p = req.promptTokenIds;
    for (let i = st.keys.length; i <= j; i++) {
      const tokens: number[] = [];
      for (let q = i * bs; q < (i + 1) * bs; q++) tokens.push(q < p.length ? p[q]! : req.outputTokenIds[q - p.length]!);
      st.keys.push(createHash('sha1').update(`${i > 0 ? st.keys[i - 1] : ''}|${tokens.join(',')}`).digest('base64'));
    }
    return st.keys[j]!;
  }
}

/** The sequence's tokens at positions [from, to) as one sequence's rows of a draft pass. */
function rowsOf(req: ProposalRequest, from: number, to: number, sample: boolean): ScheduledSequence {
  const p = req.promptTokenIds;
  const tokenIds: number[] = [];
  for (let i = from; i < to; i++) tokenIds.push(i < p.length ? p[i]! : req.outputTokenIds[i - p.length]!);
  return { seqId: req.seqId, tokenIds, startPosition: from, blockTable: req.blockTable as number[], sample };
}

/** Index of the largest value in logits[off, off + n) (the first, on ties). */
function argmax(logits: Float32Array, off: number, n: number): number {
  let best = 0;
  let bv = logits[off]!;
  for (let i = 1; i < n; i++) {
    const v = logits[off + i]!;
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}
