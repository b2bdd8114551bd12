// Timing of whole forward passes, shared by the benchmarks that compare models (not a test).

import { createKvStorage } from '../src/model/kv-storage.js';
import type { TransformerModel } from '../src/model/transformer.js';

/** Decode steps of S sequences whose KV already holds `context` positions: best tokens/s over 4 steps. */
export function decodeTokensPerSecond(model: TransformerModel, S: number, context: number): number {
  const blockSize = 16;
  const blocksPer = Math.ceil((context + 8) / blockSize);
  const kv = createKvStorage(model.config, S * blocksPer, blockSize);
  for (const a of [...kv.k, ...kv.v]) for (let i = 0; i < a.length; i++) a[i] = Math.sin(i) * 0.5;
  const blockTables = Int32Array.from({ length: S * blocksPer }, (_, i) => i);
  let best = Infinity;
  for (let step = 0; step < 5; step++) {
    const pos = context + step;
    const meta = {
      numRows: S, positions: new Int32Array(S).fill(pos), rowSeq: Int32Array.from({ length: S }, (_, i) => i), blockTables,
      maxBlocksPerSeq: blocksPer, slotMapping: Int32Array.from({ length: S }, (_, i) => i * blocksPer * blockSize + pos),
    };
    const t = performance.now();
    model.forward({ tokens: Int32Array.from({ length: S }, (_, i) => (i * 97 + step) % model.config.vocabSize), meta, logitRows: Int32Array.from({ length: S }, (_, i) => i) }, kv);
    if (step > 0) best = Math.min(best, performance.now() - t);
  }
  return (S / best) * 1e3;
}


/**
 * One sequence's forward pass of `rows` consecutive tokens after `context` cached positions (a decode
 * step is 1 row; verifying k proposals is k + 1): best milliseconds over `reps` passes.
 */
export function sequenceRowsMs(model: TransformerModel, rows: number, context: number, reps = 8): number {
  const blockSize = 16;
  const blocks = Math.ceil((context + rows) / blockSize);
  // The engine's default KV element type.
  const kv = createKvStorage(model.config, blocks, blockSize, 'f16');
  const blockTables = Int32Array.from({ length: blocks }, (_, i) => i);
  const positions = Int32Array.from({ length: rows }, (_, i) => context + i);
  const meta = { numRows: rows, positions, rowSeq: new Int32Array(rows), blockTables, maxBlocksPerSeq: blocks, slotMapping: Int32Array.from(positions) };
  const batch = { tokens: Int32Array.from({ length: rows }, (_, i) => (i * 97 + 5) % model.config.vocabSize), meta, logitRows: Int32Array.from({ length: rows }, (_, i) => i) };
  let best = Infinity;
  for (let r = 0; r <= reps; r++) {
    const t = performance.now();
    model.forward(batch, kv);
    if (r > 0) best = Math.min(best, performance.now() - t);
  }
  return best;
}
