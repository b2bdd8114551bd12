// The kernels' peak arithmetic rate, measured once per run: a large batched f32 matmul through the
// active Kernels (the GEMM is where a forward pass spends its FLOPs, and batching is what lets it
// reach its peak). Compute utilisation divides achieved FLOP/s by this.
import { performance } from 'node:perf_hooks';
import type { Kernels } from '../model/kernels/types.js';
import type { WeightTensor } from '../model/weights.js';
import { SeededRng } from '../runs/rng.js';

export interface PeakMeasurement {
  flops: number;
  /** Shape measured: M rows through a rows x cols weight. */
  M: number;
  rows: number;
  cols: number;
  calls: number;
}

export function measurePeakFlops(kernels: Kernels, opts: { M?: number; rows?: number; cols?: number; minMs?: number } = {}): PeakMeasurement {
  const M = opts.M ?? 64;
  const rows = opts.rows ?? 1024;
  const cols = opts.cols ?? 1024;
  const minMs = opts.minMs ?? 300;
  const rng = new SeededRng(7);
  const w = new Float32Array(rows * cols);
  for (let i = 0; i < w.length; i++) w[i] = rng.next() - 0.5;
  const x = new Float32Array(M * cols);
  for (let i = 0; i < x.length; i++) x[i] = rng.next() - 0.5;
  const out = new Float32Array(M * rows);
  const weight: WeightTensor = { name: 'peak.weight', dtype: 'f32', rows, cols, data: new Uint8Array(w.buffer) };
  kernels.matmul(out, x, weight, M); // warm-up: thread pool start, caches
  const flopsPerCall = 2 * M * rows * cols;
  let best = 0;
  let calls = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < minMs || calls < 2) {
    const s = performance.now();
    kernels.matmul(out, x, weight, M);
    const ms = performance.now() - s;
    calls++;
    if (ms > 0) best = Math.max(best, flopsPerCall / (ms / 1000));
  }
  return { flops: best, M, rows, cols, calls };
}
