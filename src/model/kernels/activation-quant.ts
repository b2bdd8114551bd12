// Activation quantization for quantized weights, as the native kernels (native/qunpack.cc) and
// llama.cpp do it: before a matmul with q8_0/q4_k/... weights, each activation row is rounded to
// int8 per group of 32 elements (the 32-element block types, like llama.cpp's Q8_0) or 256 (the
// k-quants and iq4_xs, like Q8_K): d = amax / 127, q = round-half-even(x * (127 / amax)). The
// reference kernels multiply the weights with these rounded values d * q, so they compute what the
// native integer dot products compute (to float rounding), and llama.cpp's arithmetic more closely.
//
// Every step is a float32 operation (Math.fround after each), matching the C++ float for float.

import type { DType } from './tensor.js';

/** Elements per activation scale for each weight type; absent: float weights, x is used as is. */
export const ACTIVATION_GROUP: Partial<Record<DType, 32 | 256>> = {
  q8_0: 32, q4_0: 32, q4_1: 32, q5_0: 32, q5_1: 32, iq4_nl: 32,
  q2_k: 256, q3_k: 256, q4_k: 256, q5_k: 256, q6_k: 256, iq4_xs: 256,
};

const ROUNDER = 12582912; // 1.5 * 2^23: adding it leaves no fraction bits (round half to even)

/**
 * The values the kernels multiply instead of x: M rows of `cols`, each group of `group` elements
 * replaced by d * q. A group holding inf or NaN becomes NaN (as its float products would).
 */
export function quantizeActivations(x: Float32Array, M: number, cols: number, group: number): Float32Array {
  const out = new Float32Array(M * cols);
  for (let m = 0; m < M; m++) {
    const row = m * cols;
    for (let g0 = 0; g0 < cols; g0 += group) {
      const g1 = Math.min(cols, g0 + group);
      let amax = 0;
      let finite = true;
      for (let i = g0; i < g1; i++) {
        const a = Math.abs(x[row + i]!);
        if (!(a <= 3.4028234663852886e38)) finite = false;
        else if (a > amax) amax = a;
      }
      if (!finite) {
        out.fill(NaN, row + g0, row + g1);
        continue;
      }
      const id = amax > 0 ? Math.fround(127 / amax) : 0;
      const d = Math.fround(amax / 127);
      for (let i = g0; i < g1; i++) {
        const v = Math.fround(x[row + i]! * id);
        const q = Math.fround(Math.fround(v + ROUNDER) - ROUNDER);
        out[row + i] = Math.fround(d * q);
      }
    }
  }
  return out;
}
