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

