// Turns one row of logits into one token, the way vLLM does:
//
//   raw logits ── log-softmax ──────────────────────────────────────────────> logprobs (reported)
//        │
//        └─ repetition penalty (prompt + output) → frequency / presence penalties (output)
//           → mask EOG + stop ids until minTokens → mask EOG when ignoreEos
//           → temperature 0: argmax (lowest id wins ties)
//             otherwise: ÷ temperature → top-k → top-p → min-p → draw with u = uniformAt(seed, step)
//
// The draw's randomness comes from a counter-based RNG keyed by (seed, number of tokens generated
// so far), so a token depends only on (logits, params, seed, step): never on which other sequences
// share the batch, and a preempted sequence that is recomputed samples the same tokens again.
//
// Speed matters at a 32000-token vocabulary: nothing here sorts the whole vocabulary. Top-k uses a
// k-sized heap, top-p a quickselect that tracks probability mass, plain sampling walks the ids
// in order, and all scratch memory is allocated once and reused (sampling is synchronous, so one
// set of buffers per thread is enough).
import type { SamplingParams, TokenLogprob } from './types.js';
import { selectTopK } from './top-k.js';
import { nucleus } from './top-p.js';
import { mixSeed, uniformAt } from './counter-rng.js';

/** Everything sampleToken needs to know about one sequence. */
export interface SamplingContext {
  params: SamplingParams;
  /** Seed of this sequence's random stream (see counter-rng.ts deriveSeed). */
  seed: number;
  promptTokenIds: readonly number[];
  /** Tokens generated so far; its length is the step index of the draw. */
  outputTokenIds: readonly number[];
  /** The model's end-of-generation ids (masked until minTokens, and always with ignoreEos). */
  eogIds: ReadonlySet<number>;
  /** Structured outputs: the ids the grammar allows now (bit id % 32 of word id / 32); others are never sampled. */
  allowedTokens?: Int32Array;
}

export interface SampleResult {
  tokenId: number;
  /** Log-softmax of the raw logits at tokenId; present when params.logprobs is not null. */
  logprob?: number;
  /** The params.logprobs most likely tokens of the raw logits, most likely first (ties: lower id first). */
  topLogprobs?: TokenLogprob[];
}

/** Sampling could not pick any token (every logit was NaN or -Infinity after penalties and masks). */
export class SamplingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SamplingError';
  }
}

// ---------------------------------------------------------------------------------------------
// Scratch memory, sized to the vocabulary of the last call (a process normally serves one model).

let vocab = 0;
/** Logits after penalties and masks. */
let work = new Float32Array(0);
/** Unnormalised probabilities exp((work - max) / T), indexed by token id; only candidates are valid. */
let weight = new Float64Array(0);
/** Candidate token ids: the top-k heap, then the candidates; also the top-logprobs selection. */
let order = new Int32Array(0);
/** Stamps that mark ids seen in the current call, so dedup needs no clearing. */
let seenStamp = new Uint32Array(0);
let countStamp = new Uint32Array(0);
let counts = new Int32Array(0);
let stamp = 0;
/** Distinct output ids of the current call (for frequency/presence penalties). */
let distinct = new Int32Array(0);

function ensureScratch(v: number): void {
  if (v === vocab) return;
  vocab = v;
  work = new Float32Array(v);
  weight = new Float64Array(v);
  order = new Int32Array(v);
  seenStamp = new Uint32Array(v);
  countStamp = new Uint32Array(v);
  counts = new Int32Array(v);
  distinct = new Int32Array(v);
  stamp = 0;
}

function nextStamp(): number {
  if (stamp === 0xffffffff) {
    seenStamp.fill(0);
    countStamp.fill(0);
    stamp = 0;
  }
  return ++stamp;
}

// ---------------------------------------------------------------------------------------------
// Sampling

/** Picks the next token of one sequence from its row of logits (see the file comment for the order of steps). */
export function sampleToken(logits: Float32Array, ctx: SamplingContext): SampleResult {
  const v = prepare(logits, ctx);
  const p = ctx.params;
  let tokenId = -1;
  if (isGreedy(p)) tokenId = argmax(work, v);
  else {
    const c = truncate(p, v);
    if (c) tokenId = draw(c, uniformAt(ctx.seed, ctx.outputTokenIds.length), v);
  }
  if (tokenId < 0) throw nothingToSample(ctx, v);
  return withLogprobs(logits, tokenId, p, v);
}

function withLogprobs(logits: Float32Array, tokenId: number, p: SamplingParams, v: number): SampleResult {
  if (p.logprobs === null) return { tokenId };
  const lse = logSumExp(logits);
  const n = selectTopK(logits, Math.min(p.logprobs, v), order);
  const topLogprobs: TokenLogprob[] = [];
  for (let j = 0; j < n; j++) topLogprobs.push({ tokenId: order[j], logprob: logits[order[j]] - lse });
  return { tokenId, logprob: logits[tokenId] - lse, topLogprobs };
}

/** The stream of acceptance tests, apart from the draws' stream (counter-rng keys them by seed). */
const ACCEPT_STREAM = 0x5bec;

/**
 * Verifies a proposed token at this position (speculative decoding), for proposals made with
 * certainty, as prompt lookup makes them. Greedy: accepted when it is the argmax, which is then
 * the token either way. Sampled (Leviathan et al. 2023, with a one-hot draft distribution q): the
 * proposal d is accepted with probability p(d) of the distribution sampleToken would draw from;
 * rejected, the token is drawn from p without d, renormalised — so the token is distributed exactly
 * as p. The acceptance test and the draw have their own random streams, keyed by (seed, position).
 */
export function verifyToken(logits: Float32Array, ctx: SamplingContext, draft: number): SampleResult & { accepted: boolean } {
  const v = prepare(logits, ctx);
  const p = ctx.params;
  let tokenId = -1;
  let accepted = false;
  if (isGreedy(p)) {
    tokenId = argmax(work, v);
    accepted = tokenId === draft;
  } else {
    const c = truncate(p, v);
    if (c) {
      const pos = ctx.outputTokenIds.length;
      const w = isCandidate(c, draft, v) ? weight[draft] : 0;
      if (w > 0 && uniformAt(mixSeed(ctx.seed, ACCEPT_STREAM), pos) * c.total < w) {
        tokenId = draft;
        accepted = true;
      } else if (c.total - w > 0) {
        // The residual max(0, p - q): p with the proposal taken out.
        weight[draft] = 0;
        tokenId = draw({ ...c, total: c.total - w }, uniformAt(ctx.seed, pos), v);
      }
    }
  }
  if (tokenId < 0) throw nothingToSample(ctx, v);
  return { ...withLogprobs(logits, tokenId, p, v), accepted };
}

/** Whether token id survived truncation (is one of the candidates draw() walks). */
function isCandidate(c: Candidates, id: number, v: number): boolean {
  if (id < 0 || id >= v) return false;
  if (c.n < 0) return weight[id] >= c.floor;
  for (let j = 0; j < c.n; j++) if (order[j] === id) return true;
  return false;
}

/** The logits after penalties and masks (a copy), for inspection and tests. */
export function adjustedLogits(logits: Float32Array, ctx: SamplingContext): Float32Array {
  const v = prepare(logits, ctx);
  return work.slice(0, v);
}

/**
 * The distribution sampleToken draws from for this context (after penalties, masks, temperature,
 * top-k, top-p and min-p), as normalised probabilities in token-id order; greedy gives one token
 * with probability 1. For inspection and tests: it runs the same code as sampleToken.
 */
export function samplingDistribution(logits: Float32Array, ctx: SamplingContext): Array<{ tokenId: number; prob: number }> {
  const v = prepare(logits, ctx);
  const p = ctx.params;
  if (isGreedy(p)) {
    const id = argmax(work, v);
    if (id < 0) throw nothingToSample(ctx, v);
    return [{ tokenId: id, prob: 1 }];
  }
  const c = truncate(p, v);
  if (!c) throw nothingToSample(ctx, v);
  const ids = c.n >= 0 ? Array.from(order.subarray(0, c.n)).sort((a, b) => a - b) : [];
  if (c.n < 0) for (let i = 0; i < v; i++) if (weight[i] >= c.floor) ids.push(i);
  return ids.map((tokenId) => ({ tokenId, prob: weight[tokenId] / c.total }));
}

/** Copies the logits into the scratch row and applies penalties and masks; returns the vocabulary size. */
function prepare(logits: Float32Array, ctx: SamplingContext): number {
  const v = logits.length;
  if (v === 0) throw new SamplingError('cannot sample from an empty row of logits');
  ensureScratch(v);
  work.set(logits);
  applyPenalties(ctx, v);
  applyMasks(ctx, v);
  return v;
}

/** Temperature 0 is greedy; so is one so small that 1/T overflows (its limit is the argmax anyway). */
function isGreedy(p: SamplingParams): boolean {
  return p.temperature === 0 || !Number.isFinite(1 / p.temperature);
}

function nothingToSample(ctx: SamplingContext, v: number): SamplingError {
  const p = ctx.params;
  const masked = ctx.outputTokenIds.length < p.minTokens || p.ignoreEos ? ' (end-of-generation and stop ids are masked)' : '';
  return new SamplingError(`no token can be sampled: all ${v} logits are NaN or -Infinity after penalties and masks${masked}`);
}

/** log Σ exp(x) over the finite entries, computed stably around the maximum. */
function logSumExp(x: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i] > max) max = x[i];
  if (max === -Infinity || max === Infinity) return max;
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    const xi = x[i];
    if (xi > -Infinity) sum += Math.exp(xi - max);
  }
  return max + Math.log(sum);
}

/**
 * Repetition penalty once per distinct id of prompt + output (CTRL: a positive logit is divided by
 * the penalty, a negative one multiplied, so both move toward "less likely"); then frequency
 * (× occurrences) and presence (once) penalties subtracted for each distinct output id.
 */
function applyPenalties(ctx: SamplingContext, v: number): void {
  const { repetitionPenalty: rep, frequencyPenalty: freq, presencePenalty: pres } = ctx.params;
  if (rep !== 1) {
    const s = nextStamp();
    const penalize = (ids: readonly number[]): void => {
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i];
        if (!(id >= 0 && id < v) || seenStamp[id] === s) continue;
        seenStamp[id] = s;
        const l = work[id];
        work[id] = l > 0 ? l / rep : l * rep;
      }
    };
    penalize(ctx.promptTokenIds);
    penalize(ctx.outputTokenIds);
  }
  if (freq !== 0 || pres !== 0) {
    const s = nextStamp();
    const out = ctx.outputTokenIds;
    let nDistinct = 0;
    for (let i = 0; i < out.length; i++) {
      const id = out[i];
      if (!(id >= 0 && id < v)) continue;
      if (countStamp[id] !== s) {
        countStamp[id] = s;
        counts[id] = 0;
        distinct[nDistinct++] = id;
      }
      counts[id]++;
    }
    for (let j = 0; j < nDistinct; j++) {
      const id = distinct[j];
      work[id] = work[id] - (freq * counts[id] + pres);
    }
  }
}

/**
 * The grammar's mask first (structured outputs: a token it does not allow is never drawn, whatever
 * the temperature); then, before minTokens the sequence may not end, so EOG and stop ids are
 * unsampleable; ignoreEos always hides EOG (both leave EOG to the grammar on constrained rows).
 */
function applyMasks(ctx: SamplingContext, v: number): void {
  const allowed = ctx.allowedTokens;
  if (allowed) {
    for (let w = 0; w * 32 < v; w++) {
      const bits = allowed[w] ?? 0;
      if (bits === -1) continue;
      const end = Math.min(v, w * 32 + 32);
      for (let id = w * 32; id < end; id++) if (((bits >>> (id & 31)) & 1) === 0) work[id] = -Infinity;
    }
  }
  const p = ctx.params;
  const early = ctx.outputTokenIds.length < p.minTokens;
  // Under a grammar, end-of-generation follows the grammar: allowed exactly where it may end, so
  // ignoreEos and minTokens cannot leave a finished grammar with nothing to sample.
  if ((early || p.ignoreEos) && !allowed) {
    for (const id of ctx.eogIds) if (id >= 0 && id < v) work[id] = -Infinity;
  }
  if (early) {
    for (const id of p.stopTokenIds) if (id >= 0 && id < v) work[id] = -Infinity;
  }
}

/** Index of the largest value, the lowest index among equals; -1 when none is above -Infinity. */
function argmax(x: Float32Array, v: number): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < v; i++) {
    if (x[i] > bestValue) {
      bestValue = x[i];
      best = i;
    }
  }
  return best;
}

/**
 * What is left to draw from after temperature, top-k, top-p and min-p: the candidate ids in
 * order[0..n) with their unnormalised probabilities in weight[id], or (n = -1) every id whose
 * weight is at least `floor`, walked in id order. `total` is the candidates' summed weight.
 */
interface Candidates {
  n: number;
  total: number;
  floor: number;
}

/** Temperature, top-k, top-p and min-p over `work`; null when no token is sampleable. */
function truncate(p: SamplingParams, v: number): Candidates | null {
  const invT = 1 / p.temperature;
  const useTopK = p.topK > 0 && p.topK < v;
  const useTopP = p.topP < 1;

  // order[0..n) is most likely first after top-k, in a fixed but arbitrary order after top-p alone.
  let n = -1;
  let total = 0;
  if (useTopK) {
    n = selectTopK(work, p.topK, order);
    if (n === 0) return null;
    const max = work[order[0]];
    for (let j = 0; j < n; j++) {
      const id = order[j];
      const w = Math.exp((work[id] - max) * invT);
      weight[id] = w;
      total += w;
    }
    if (useTopP) {
      // Smallest prefix of the sorted candidates whose probability reaches topP (at least one).
      const target = p.topP * total;
      let cum = 0;
      let m = 0;
      while (m < n) {
        cum += weight[order[m]];
        m++;
        if (cum >= target) break;
      }
      n = m;
      total = cum;
    }
  } else {
    const max = maxValue(work, v);
    if (max === -Infinity) return null;
    for (let i = 0; i < v; i++) {
      const w = Math.exp((work[i] - max) * invT); // -Infinity and NaN logits give 0 / NaN: never candidates
      weight[i] = w > 0 ? w : 0;
      total += weight[i];
    }
    if (useTopP) [n, total] = nucleus(weight, order, p.topP, total, v);
  }

  // min-p: drop tokens below minP × (probability of the most likely). The most likely token's
  // weight is exp(0) = 1, and normalisation cancels in the ratio, so the threshold is minP itself.
  const threshold = p.minP;
  if (threshold > 0 && n >= 0) {
    let m = 0;
    total = 0;
    for (let j = 0; j < n; j++) {
      const id = order[j];
      if (weight[id] < threshold) continue;
      order[m++] = id;
      total += weight[id];
    }
    n = m;
  } else if (threshold > 0) {
    total = 0;
    for (let i = 0; i < v; i++) if (weight[i] >= threshold) total += weight[i];
  }

  if (n === 0 || !(total > 0)) return null;
  return { n, total, floor: threshold > 0 ? threshold : Number.MIN_VALUE };
}

/** The draw: walks the candidates subtracting their weights from u × total, u uniform in [0, 1). */
function draw(c: Candidates, u: number, v: number): number {
  const { n, total, floor } = c;
  let rest = u * total;
  // If rounding leaves `rest` just short of going negative, the last candidate that can be drawn wins.
  let last = -1;
  if (n >= 0) {
    for (let j = 0; j < n; j++) {
      const w = weight[order[j]];
      if (!(w > 0)) continue;
      last = order[j];
      rest -= w;
      if (rest < 0) return last;
    }
    return last;
  }
  for (let i = 0; i < v; i++) {
    const w = weight[i];
    if (w < floor) continue;
    last = i;
    rest -= w;
    if (rest < 0) return i;
  }
  return last;
}

function maxValue(x: Float32Array, v: number): number {
  let max = -Infinity;
  for (let i = 0; i < v; i++) if (x[i] > max) max = x[i];
  return max;
}
