// Calibration's first measurement: the forward pass (and sampling) over a grid of batch shapes —
// decode batches of 1..64 sequences at several context lengths, prefill chunks of 16..1024 tokens and
// batches of prompts up to the 2048-token budget, mixed batches — run through the real
// LocalModelRunner, timed as the runner times itself. Shapes are measured round-robin, several times
// each, and a trimmed mean kept (the fastest and slowest dropped): on a shared machine load comes and
// goes, round-robin spreads it over every shape alike, and a mean — not a median — is what
// throughput depends on.
import type { LocalModelRunner } from '../../engine/model-runner.js';
import { DEFAULT_SAMPLING, type NewSequenceData, type ScheduledSequence, type SchedulerOutput } from '../../engine/types.js';
import type { ModelConfig } from '../../model/config.js';
import { SeededRng } from '../../runs/rng.js';
import type { ShapeKind, ShapeMeasurement } from '../../sim/calibration-fit.js';
import { stepFeatures, type ModelProfile, type SeqShape } from '../../sim/cost-model.js';
import { trimmedMean } from '../../sim/fit.js';

export interface GridShape {
  label: string;
  kind: ShapeKind;
  seqs: SeqShape[];
}

export interface GridOptions {
  /** Largest decode batch (default 64). */
  maxBatch?: number;
  /** Tokens the KV cache holds: shapes needing more are left out (the engine could never run them). */
  capacityTokens: number;
  /** Fewer shapes (for tests and a first look). */
  quick?: boolean;
  /** Most rows in one step (the engine's max_num_batched_tokens; default 2048). */
  maxRows?: number;
}

/**
 * The batch shapes calibration measures. Only shapes the engine could run are kept: every context
 * within the model's, all of them together within the KV cache, the rows within the token budget and
 * the sequences within the batch size.
 */
export function calibrationGrid(config: Pick<ModelConfig, 'contextLength'>, opts: GridOptions): GridShape[] {
  const maxCtx = config.contextLength;
  const maxBatch = opts.maxBatch ?? 64;
  const budget = opts.maxRows ?? 2048;
  const fits = (seqs: SeqShape[]) =>
    seqs.length <= maxBatch &&
    seqs.every((s) => s.contextLen <= maxCtx) &&
    seqs.reduce((n, s) => n + s.contextLen, 0) <= opts.capacityTokens &&
    seqs.reduce((n, s) => n + s.numTokens, 0) <= budget;
  const out: GridShape[] = [];
  const add = (g: GridShape) => {
    if (fits(g.seqs)) out.push(g);
  };
  const decode = (B: number, L: number) => Array.from({ length: B }, () => ({ numTokens: 1, contextLen: L, sample: true }));
  const batches = (opts.quick ? [1, 4, 16, 64] : [1, 2, 4, 8, 16, 32, 48, 64]).filter((b) => b <= maxBatch);
  if (!batches.includes(maxBatch) && maxBatch > 1) batches.push(maxBatch);
  const contexts = [64, Math.round(maxCtx / 4), Math.round(maxCtx / 2), maxCtx - 8].filter((c, i, a) => c >= 16 && a.indexOf(c) === i);
  for (const L of opts.quick ? [contexts[0], contexts[contexts.length - 1]] : contexts) {
    for (const B of batches) add({ label: `decode ${B}x @${L}`, kind: 'decode', seqs: decode(B, L) });
  }
  const many = (B: number, C: number): GridShape => ({ label: B === 1 ? `prefill ${C}` : `prefill ${B}x${C}`, kind: 'prefill', seqs: Array.from({ length: B }, () => ({ numTokens: C, contextLen: C, sample: true })) });
  for (const C of opts.quick ? [16, 128, 512] : [16, 32, 64, 128, 256, 512, 1024]) add(many(1, C));
  // A chunk continuing a long prompt, and several prompts at once (static batching's prefill, and
  // continuous batching's first steps, which fill the whole token budget: per-row costs grow once
  // activations outgrow the caches).
  add({ label: 'prefill 128 @512', kind: 'prefill', seqs: [{ numTokens: 128, contextLen: 512, sample: true }] });
  for (const [B, C] of opts.quick ? [[4, 128], [8, 256]] : [[4, 128], [16, 32], [8, 128], [16, 128], [8, 256], [4, 512]]) add(many(B, C));
  // Continuous batching's typical step: decodes with one prefill chunk riding along.
  const L = Math.max(16, Math.round(maxCtx / 4));
  for (const [C, B] of opts.quick ? [[128, 15]] : [[64, 8], [256, 8], [64, 31], [256, 31], [1024, 31]]) {
    add({ label: `mixed ${C}+${B}x @${L}`, kind: 'mixed', seqs: [{ numTokens: C, contextLen: C, sample: true }, ...decode(B, L)] });
  }
  return out;
}

/**
 * The order in which shapes take KV blocks: a fixed shuffle of the whole cache. A running engine's
 * sequences hold blocks scattered over the cache (freed blocks are reused as they come back), and
 * reading scattered blocks costs more than reading consecutive ones (~20% for a 32-sequence decode
 * on this project's machine), so the grid reads them the way the engine does.
 */
export function scatteredBlockOrder(numBlocks: number, seed = 1): Int32Array {
  const order = Int32Array.from({ length: numBlocks }, (_, i) => i);
  const rng = new SeededRng(seed);
  for (let i = numBlocks - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** Builds the SchedulerOutput a scheduler would send for this shape (fresh sequences, distinct blocks in `order`). */
function shapeStep(shape: GridShape, step: number, firstSeqId: number, blockSize: number, order: Int32Array, finished: number[]): SchedulerOutput {
  let nextBlock = 0;
  const scheduled: ScheduledSequence[] = [];
  const newSequences: NewSequenceData[] = [];
  shape.seqs.forEach((s, i) => {
    const seqId = firstSeqId + i;
    const start = s.contextLen - s.numTokens;
    const blocks = Math.ceil(s.contextLen / blockSize);
    const blockTable = Array.from({ length: blocks }, () => order[nextBlock++ % order.length]);
    const prompt = Array.from({ length: s.contextLen }, (_, j) => 3 + ((j * 7919 + i * 104729) % 200));
    newSequences.push({ seqId, promptTokenIds: prompt, outputTokenIds: [], sampling: { ...DEFAULT_SAMPLING, temperature: 0, ignoreEos: true, maxTokens: 1 << 20 }, seed: seqId });
    scheduled.push({ seqId, tokenIds: prompt.slice(start), startPosition: start, blockTable, sample: s.sample });
  });
  const numBatchedTokens = shape.seqs.reduce((n, s) => n + s.numTokens, 0);
  return { step, scheduled, newSequences, finishedSeqIds: finished, blockCopies: [], numBatchedTokens };
}

export interface ForwardMeasureOptions {
  reps: number;
  blockSize: number;
  numBlocks: number;
  /**
   * Timed samples per shape per round, from an earlier pass. Without it a warm-up round runs first
   * and decides: shapes under 10 ms get three, so the small decode steps that dominate TPOT are
   * measured as well as the big ones that dominate time.
   */
  perRound?: number[];
  /**
   * The shape the round-robin starts at (default 0). Calibrator passes start at a different shape
   * each time: whatever comes first after a pause runs slow for a moment, and no shape should
   * always be the one that pays for it.
   */
  startAt?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Times the runner's forward pass and sampling over every shape, round-robin, `reps` rounds (after a warm-up round). */
export function measureForward(runner: LocalModelRunner, model: ModelProfile, grid: readonly GridShape[], opts: ForwardMeasureOptions): ShapeMeasurement[] {
  const samples = grid.map(() => [] as number[]);
  const order = scatteredBlockOrder(opts.numBlocks);
  const perRound = opts.perRound ? [...opts.perRound] : grid.map(() => 1);
  let step = 0;
  let seqId = 0;
  let finished: number[] = [];
  const first = opts.perRound ? 0 : -1;
  const total = grid.length * (opts.reps - first);
  let done = 0;
  const run = (shape: GridShape): number => {
    const out = shapeStep(shape, step++, seqId, opts.blockSize, order, finished);
    finished = out.newSequences.map((s) => s.seqId);
    seqId += shape.seqs.length;
    const r = runner.executeSync(out);
    return r.forwardMs + r.sampleMs;
  };
  const n = grid.length;
  const start = n > 0 ? (((opts.startAt ?? 0) % n) + n) % n : 0;
  const visit = grid.map((_, j) => (j + start) % n);
  for (let rep = first; rep < opts.reps; rep++) {
    visit.forEach((i) => {
      const shape = grid[i];
      // Timed runs follow untimed ones of the same shape: in an engine a step follows steps much like
      // it, with the weights warm in the caches, while here the shape before may have been a big
      // prefill. One untimed run is not enough for a small step: a one-sequence decode ran 20-30%
      // slow for its first two or three runs after a big shape, ~12% over the timed ones; so untimed
      // runs go on until WARM_GRID_MS have passed.
      let warm = run(shape);
      for (let spent = warm; spent < WARM_GRID_MS; spent += warm) warm = run(shape);
      // The last untimed run decides (the very first run of a shape also pays for JIT warm-up).
      if (rep < 0) perRound[i] = warm < 10 ? 3 : 1;
      else for (let k = 0; k < perRound[i]; k++) samples[i].push(run(shape));
      opts.onProgress?.(++done, total);
    });
  }
  return grid.map((g, i) => ({ label: g.label, kind: g.kind, seqs: g.seqs, features: stepFeatures(model, g.seqs), ms: trimmedMean(samples[i]), samples: samples[i] }));
}

/** Untimed runs of a grid shape before its timed ones add up to at least this (ms). */
const WARM_GRID_MS = 10;
