// Every supported architecture against llama.cpp (node-llama-cpp) on random-weight GGUF files in
// that family's exact layout (make-model --arch): log-probabilities at all 64 prompt positions and
// the greedy continuation, on F32, F16, Q8_0 and Q4_K files; and bit-exact batch invariance of each
// family on the native kernels.
//
// What the tolerances allow for, measured on AMD EPYC and Intel Xeon machines with llama.cpp 3.21.1's
// CPU backend:
// - F32: summation order only (measured <= 5e-5 for llama with rope_freqs, qwen2, qwen3).
// - Gemma 3 also differs by design: ggml evaluates GELU through an f16 lookup table (GGML_GELU_FP16:
//   the input rounded to f16, the result an f16), we compute it in f32 as the trained model does.
//   That alone gives ~1.2e-2; emulating the table on our side brings it to ~4e-3 over six layers
//   (6e-4 for one layer; not explained: input-only, output-only, erf and attention-softcap variants
//   all fit worse). It is far below what a wrong norm, window or RoPE base gives: O(1), e.g. 19.7
//   without the sliding window.
// - F16: llama.cpp's AVX2 backends round activations to f16 before F16 matmuls (see
//   llama-vs-llamacpp.test.ts): measured 0.9-3.4e-2, tolerance 5e-2.
// - Q8_0 and Q4_K: llama.cpp multiplies quantized weights with activations quantized to 8 bits
//   (Q8_0 / Q8_K blocks); we keep activations in f32. These random models are very sensitive (logits
//   spread over +-10 amplify a 0.5% activation error ~40x), so log p of likely tokens moves by up to
//   ~1.1 nats (measured 0.26-1.09; Llama on q4_0..iq4_xs 0.41-0.71). The quantized cases therefore check what that noise cannot
//   hide: where llama.cpp's top two tokens are clearly apart (> 2 nats), our top token is its top
//   token at every prompt position, and likely-token log-probs agree within 1.5 nats, while a wrong
//   dequantizer moves them by several nats. Our arithmetic on quantized weights is pinned exactly
//   elsewhere (quantized == float on dequantized weights; llama.cpp decodes our blocks to our values).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, type Llama } from 'node-llama-cpp';
import { modelSpec, type PresetShape, type WeightFormat } from '../../src/model/make-model.js';
import { syntheticVocab } from '../../src/model/synthetic-vocab.js';
import { writeGgufFile } from '../../src/model/loaders/gguf-writer.js';
import { loadModel, type LoadedModel } from '../../src/model/loaders/index.js';
import { referenceKernels, geluTanh } from '../../src/model/kernels/reference.js';
import { createNativeKernels, nativeAddonPath } from '../../src/model/kernels/native.js';
import type { Kernels } from '../../src/model/kernels/types.js';
import type { Architecture } from '../../src/model/families.js';
import type { DType } from '../../src/model/weights.js';
import { f16ToF32, f32ToF16 } from '../../src/model/kernels/quant.js';
import { TransformerModel } from '../../src/model/transformer.js';
import { likelyTokenAgreement, llamaCppRun, logSoftmaxRow, ourRun, worstLogProbDiff } from './llamacpp-oracle.js';
import { firstBitDifference, randomTokens, runPlan, type Chunk } from './ragged-batch.js';

const PROMPT_LEN = 64;
const CONTINUATION = 16;
const VOCAB = 512;

/** dim 256 so every matrix is whole Q4_K blocks; Qwen3's heads are wider than dim/heads, as in the real models. */
function shapeOf(arch: Architecture): PresetShape {
  return {
    dim: 256,
    hiddenDim: 512,
    nLayers: arch === 'gemma3' ? 6 : 2, // Gemma 3: five sliding-window layers, then a global one
    nHeads: 4,
    nKvHeads: 2,
    vocabSize: VOCAB,
    contextLength: 256,
    tied: arch !== 'llama',
    ...(arch === 'qwen3' ? { headDim: 128 } : {}),
  };
}

function writeFamilyModel(dir: string, arch: Architecture, dtype: WeightFormat, seed: number): string {
  const { spec } = modelSpec({
    shape: shapeOf(arch),
    dtype,
    seed,
    vocab: syntheticVocab(VOCAB),
    name: `${arch}-${dtype}`,
    // Llama as 3.1 (rope_freqs); Gemma 3 with a 16-token window, so the 64-token prompt crosses it.
    arch: { arch, ropeFreqs: arch === 'llama', slidingWindow: 16 },
  });
  const path = join(dir, `${arch}-${dtype}.gguf`);
  writeGgufFile(path, spec);
  return path;
}

/** ggml's GELU: input rounded to f16, result looked up in an f16 table, |x| >= 10 passed through. */
const ggmlGeluKernels: Kernels = {
  ...referenceKernels,
  geluMul(out, gate, up, n) {
    for (let i = 0; i < n; i++) {
      const g = gate[i]!;
      out[i] = g <= -10 ? 0 : g >= 10 ? g * up[i]! : f16ToF32(f32ToF16(geluTanh(f16ToF32(f32ToF16(g))))) * up[i]!;
    }
  },
};

const ARCHS: Architecture[] = ['llama', 'qwen2', 'qwen3', 'gemma3'];
const DTYPES: DType[] = ['f32', 'f16', 'q8_0', 'q4_k'];

describe('every architecture vs llama.cpp on generated GGUF files', () => {
  let dir: string;
  let llama: Llama;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stepwise-families-'));
    llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
  });
  after(async () => {
    await llama?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  // Every family on the four main types; Llama also on every further quantized type.
  const MORE_TYPES: WeightFormat[] = ['q4_0', 'q4_1', 'q5_0', 'q5_1', 'q2_k', 'q3_k', 'q5_k', 'q6_k', 'iq4_nl', 'iq4_xs', 'q4_k_m', 'q5_k_m'];
  for (const arch of ARCHS) {
    for (const dtype of arch === 'llama' ? [...DTYPES, ...MORE_TYPES] : (DTYPES as WeightFormat[])) {
      it(`${arch} ${dtype}: log-probabilities at ${PROMPT_LEN} positions and greedy continuation`, async () => {
        const path = writeFamilyModel(dir, arch, dtype, 3);
        const loaded = await loadModel(path);
        assert.equal(loaded.config.arch, arch);
        const prompt = [1, ...randomTokens(PROMPT_LEN - 1, VOCAB - 3, 77).map((t) => t + 3)];
        const ours = ourRun(loaded, referenceKernels, prompt, CONTINUATION);
        const theirs = await llamaCppRun(llama, path, prompt, CONTINUATION, VOCAB);
        // A vacuous comparison (e.g. a uniform distribution on both sides) would prove nothing.
        const first = logSoftmaxRow(ours.logits, 0, VOCAB);
        assert.ok(Math.max(...first) - Math.min(...first) > 0.5, 'logits too flat to be a meaningful comparison');

        const { worst, where } = worstLogProbDiff(ours.logits, theirs.probs, VOCAB);
        let note = '';
        if (dtype === 'f32' || dtype === 'f16') {
          const tol = dtype === 'f16' || arch === 'gemma3' ? 5e-2 : 1e-3;
          assert.ok(worst <= tol, `max |log p difference| ${worst} > ${tol} at ${where}`);
          if (arch === 'gemma3' && dtype === 'f32') {
            const emulated = worstLogProbDiff(ourRun(loaded, ggmlGeluKernels, prompt, 1).logits, theirs.probs, VOCAB);
            assert.ok(emulated.worst <= 1e-2, `with ggml's f16 GELU emulated: ${emulated.worst} > 1e-2 at ${emulated.where}`);
            note = `; ${emulated.worst.toExponential(2)} with ggml's f16 GELU table emulated`;
          }
          assert.deepEqual(ours.greedy, theirs.greedy, 'greedy continuation');
        } else {
          const a = likelyTokenAgreement(ours.logits, theirs.probs, VOCAB, 1e-3, 2);
          assert.deepEqual(a.topMismatches, [], 'prompt positions whose top token differs although llama.cpp is decided');
          assert.ok(a.worst <= 1.5, `likely tokens' |log p difference| ${a.worst} > 1.5 at ${a.where}`);
          const same = ours.greedy.findIndex((t, i) => t !== theirs.greedy[i]);
          note = `; likely tokens ${a.worst.toExponential(2)}; greedy ${same < 0 ? 'identical' : `identical for ${same} of ${CONTINUATION} tokens`}`;
        }
        console.log(`# ${arch} ${dtype}: max |log p diff| ${worst.toExponential(2)}${note}`);
      });
    }
  }
});

describe('bit-exact batch invariance of every architecture on the native kernels', { skip: nativeAddonPath() ? false : 'native addon not built' }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'stepwise-families-inv-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const arch of ARCHS) {
    it(`${arch}: one sequence at a time == all in one ragged batch == chunked prefill mixed with decodes (block sizes 16, 4, 1)`, async () => {
      const loaded: LoadedModel = await loadModel(writeFamilyModel(dir, arch, 'q8_0', 5));
      // Prompts longer than Gemma 3's 16-token window, so windowed rows are batched with others.
      const promptLens = [21, 1, 33, 6];
      const decodeLen = 5;
      const streams = promptLens.map((n, i) => [1, ...randomTokens(n - 1 + decodeLen, VOCAB - 3, 40 + i).map((t) => t + 3)]);
      const decode = (seqs: number[]): Chunk[][] => Array.from({ length: decodeLen }, () => seqs.map((seq) => ({ seq, n: 1 })));
      const alone: Chunk[][] = [];
      promptLens.forEach((n, seq) => alone.push([{ seq, n }], ...decode([seq])));
      const kernels2 = createNativeKernels({ threads: 2 });
      const kernels1 = createNativeKernels({ threads: 1 });
      try {
        const baseline = runPlan(new TransformerModel(loaded.config, loaded.weights, kernels2), streams, alone, 16);
        const together = runPlan(new TransformerModel(loaded.config, loaded.weights, kernels1), streams, [promptLens.map((n, seq) => ({ seq, n })), ...decode([0, 1, 2, 3])], 4, 4);
        const chunked: Chunk[][] = [
          [{ seq: 2, n: 1 }, { seq: 0, n: 9 }],
          [{ seq: 0, n: 7 }, { seq: 2, n: 13 }, { seq: 1, n: 1 }],
          [{ seq: 3, n: 2 }, { seq: 1, n: 1 }, { seq: 0, n: 5 }, { seq: 2, n: 19 }],
        ];
        const fed = [21, 2, 33, 2];
        const left = streams.map((s, i) => s.length - fed[i]!);
        for (let k = 0; k < Math.max(...left); k++) chunked.push(streams.flatMap((_, seq) => (k < left[seq]! ? [{ seq, n: Math.min(k < 1 ? 3 : 1, left[seq]! - k) }] : [])));
        const mixed = runPlan(new TransformerModel(loaded.config, loaded.weights, kernels2), streams, fixPlan(chunked, streams), 1, 99);
        for (const [what, got] of [['ragged batch', together], ['chunked prefill', mixed]] as const) {
          got.forEach((rows, seq) =>
            rows.forEach((row, pos) => {
              const at = firstBitDifference(row, baseline[seq]![pos]!);
              assert.equal(at, -1, `${arch} ${what}: sequence ${seq} position ${pos} differs at logit ${at}`);
            }),
          );
        }
      } finally {
        kernels1.close();
        kernels2.close();
      }
    });
  }
});

/** Trims a plan so no chunk feeds past its sequence's end (the plan above is written loosely). */
function fixPlan(plan: Chunk[][], streams: number[][]): Chunk[][] {
  const done = streams.map(() => 0);
  const out: Chunk[][] = [];
  for (const step of plan) {
    const s: Chunk[] = [];
    for (const c of step) {
      const n = Math.min(c.n, streams[c.seq]!.length - done[c.seq]!);
      if (n > 0) {
        s.push({ seq: c.seq, n });
        done[c.seq]! += n;
      }
    }
    if (s.length > 0) out.push(s);
  }
  // Whatever is left is decoded one token per step.
  for (;;) {
    const s = streams.flatMap((st, seq) => (done[seq]! < st.length ? [{ seq, n: 1 }] : []));
    if (s.length === 0) break;
    s.forEach((c) => done[c.seq]!++);
    out.push(s);
  }
  return out;
}
