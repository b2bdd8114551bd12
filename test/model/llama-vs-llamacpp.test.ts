// Our forward pass against llama.cpp (through node-llama-cpp) as the oracle, on generated GGUF
// models: F32 and F16 weights, grouped-query attention, tied and untied output embeddings.
//
// node-llama-cpp 3.21.1 exposes no raw logits, only next-token probabilities (controlledEvaluate
// with generateNext.probabilities, computed with greedy sampling = softmax of the raw logits). So we
// compare log-probabilities, log p = logit - logsumexp(logits), at every position of the prompt:
// that is the logits up to a per-row constant, which is everything sampling can see.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, type Llama } from 'node-llama-cpp';
import { makeModel } from '../../src/model/make-model.js';
import { loadModel } from '../../src/model/loaders/index.js';
import { referenceKernels } from '../../src/model/kernels/reference.js';
import { randomTokens } from './ragged-batch.js';
import { llamaCppRun, logSoftmaxRow, ourRun, worstLogProbDiff } from './llamacpp-oracle.js';
import { f16ToF32, f32ToF16 } from '../../src/model/kernels/quant.js';
import type { Kernels } from '../../src/model/kernels/types.js';

/**
 * The reference kernels with llama.cpp's CPU f16 matmul rounding emulated: ggml converts the
 * activations to f16 (the vec_dot type of F16 weights) before the dot products.
 */
const f16ActivationKernels: Kernels = {
  ...referenceKernels,
  matmul(out, x, w, M) {
    if (w.dtype !== 'f16') return referenceKernels.matmul(out, x, w, M);
    const xr = Float32Array.from(x.subarray(0, M * w.cols), (v) => f16ToF32(f32ToF16(v)));
    referenceKernels.matmul(out, xr, w, M);
  },
};

const PROMPT_LEN = 64;
const CONTINUATION = 16;

interface Case {
  name: string;
  dtype: 'f32' | 'f16';
  tied: boolean;
  nKvHeads: number;
  preset: 'tiny' | 'small';
  /** Max |log p difference| allowed over all positions and tokens. */
  tol: number;
  /** F16 only: the same with llama.cpp's f16 activation rounding emulated on our side. */
  emulatedTol?: number;
}

// F32: both sides compute in float32 with an f32 KV cache; what is left is summation order
// (measured max ~4e-5).
// F16: what llama.cpp's CPU matmul does with f16 weights depends on the CPU. ggml loads a backend
// variant per CPU family; the AVX2 ones (e.g. "haswell", picked on AMD EPYC Zen 2/3) round the
// activations to f16 first (ggml's vec_dot type for F16 is F16), a relative error of up to 4.9e-4
// per input that we do not make: we keep activations in f32 and only the weights are f16. With
// logits spread over ~+-10 (the generated models' logit scale), that shows up as log p differences
// up to ~3e-2 on unlikely tokens (measured 2.5e-2 and 3.2e-2), so the plain tolerance is 5e-2, and
// emulating that rounding on our side brings it to ~8e-3. The "sapphirerapids" variant (Intel
// Xeon with AVX-512 FP16) keeps the activations in f32: there the plain difference is ~1.4e-5 and
// the emulated one ~3e-2. So F16 must match one of the two arithmetic models tightly: f32
// activations within the F32 tolerance, or f16 activations within 1.5e-2. Any of these bounds
// still catches a real bug: a wrong RoPE, norm or head mapping moves log p by O(1).
const F32_ACTIVATIONS_TOL = 1e-3;
const CASES: Case[] = [
  { name: 'F32, GQA 8/2 heads, tied embeddings', dtype: 'f32', tied: true, nKvHeads: 2, preset: 'tiny', tol: 1e-3 },
  { name: 'F32, multi-head 8/8, untied', dtype: 'f32', tied: false, nKvHeads: 8, preset: 'tiny', tol: 1e-3 },
  { name: 'F32, small preset (dim 256, vocab 4096), GQA 8/4, untied', dtype: 'f32', tied: false, nKvHeads: 4, preset: 'small', tol: 1e-3 },
  { name: 'F16, GQA 8/4, untied', dtype: 'f16', tied: false, nKvHeads: 4, preset: 'tiny', tol: 5e-2, emulatedTol: 1.5e-2 },
  { name: 'F16, multi-head 8/8, tied', dtype: 'f16', tied: true, nKvHeads: 8, preset: 'tiny', tol: 5e-2, emulatedTol: 1.5e-2 },
];

describe('TransformerModel vs llama.cpp on generated GGUF models', () => {
  let dir: string;
  let llama: Llama;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stepwise-llamacpp-'));
    llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
  });
  after(async () => {
    await llama?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  CASES.forEach((c, ci) => {
    it(`${c.name}: log-probabilities at all ${PROMPT_LEN} positions within ${c.tol}, greedy continuation identical`, async () => {
      const path = join(dir, `case${ci}.gguf`);
      await makeModel({ preset: c.preset, dtype: c.dtype, seed: 11 + ci, out: path, tied: c.tied, nKvHeads: c.nKvHeads });
      const loaded = await loadModel(path);
      const cfg = loaded.config;
      assert.equal(cfg.nKvHeads, c.nKvHeads);
      assert.equal(cfg.tiedEmbeddings, c.tied);
      const V = cfg.vocabSize;
      // BOS, then ids past the special tokens.
      const prompt = [1, ...randomTokens(PROMPT_LEN - 1, V - 3, 500 + ci).map((t) => t + 3)];

      // Ours: the whole prompt as one prefill with logits at every row, then greedy decode.
      const ours = ourRun(loaded, referenceKernels, prompt, CONTINUATION);
      // llama.cpp: f32 KV cache, no flash attention, probabilities after every prompt token.
      const theirs = await llamaCppRun(llama, path, prompt, CONTINUATION, V);
      const { worst, where } = worstLogProbDiff(ours.logits, theirs.probs, V);
      assert.ok(worst <= c.tol, `max |log p difference| ${worst} > ${c.tol} at ${where}`);
      let note = '';
      if (c.emulatedTol !== undefined) {
        const e = worstLogProbDiff(ourRun(loaded, f16ActivationKernels, prompt, 1).logits, theirs.probs, V);
        const f32Match = worst <= F32_ACTIVATIONS_TOL;
        assert.ok(
          f32Match || e.worst <= c.emulatedTol,
          `llama.cpp matches neither arithmetic model: f32 activations ${worst} > ${F32_ACTIVATIONS_TOL}, ` +
            `f16 activations emulated ${e.worst} > ${c.emulatedTol} at ${e.where}`,
        );
        note = `; ${e.worst.toExponential(2)} with f16 activations emulated (tolerance ${c.emulatedTol}); ` +
          `llama.cpp here keeps ${f32Match ? 'f32' : 'f16'} activations`;
      }
      // A vacuous comparison (e.g. a uniform distribution on both sides) would prove nothing.
      const spread = Math.max(...logSoftmaxRow(ours.logits, 0, V)) - Math.min(...logSoftmaxRow(ours.logits, 0, V));
      assert.ok(spread > 0.5, `logits too flat to be a meaningful comparison (spread ${spread})`);
      assert.deepEqual(ours.greedy, theirs.greedy, 'greedy continuation');
      console.log(`# ${c.name}: max |log p diff| ${worst.toExponential(2)} (tolerance ${c.tol})${note}`);
    });
  });
});
