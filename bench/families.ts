// Decode speed of one model family against another with the same parameter count and dtype: a
// Qwen3-shaped model (q/k norms, NeoX RoPE, heads wider than dim/heads) against a Llama-shaped one,
// on the native kernels, at 1 and 32 sequences. What it shows is the cost of the family's extra
// work per token (two per-head norms, the wider attention), not of the model size.
//
//   npx tsx bench/families.ts [--dtypes f32,q8_0,q4_k] [--threads N] [--context 128] [--rounds 5]
//
// Both models are written by make-model's generator (random weights, ~110M parameters each) into a
// temporary folder. The two are timed in alternation, `--rounds` times, and the ratio of the
// medians is printed, since the machine's speed drifts. Not a test: nothing here asserts.

import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { modelSpec, type PresetShape } from '../src/model/make-model.js';
import { syntheticVocab } from '../src/model/synthetic-vocab.js';
import { writeGgufFile } from '../src/model/loaders/gguf-writer.js';
import { loadModel } from '../src/model/loaders/index.js';
import { createNativeKernels } from '../src/model/kernels/native.js';
import { TransformerModel } from '../src/model/transformer.js';
import type { Architecture } from '../src/model/families.js';
import type { DType } from '../src/model/weights.js';
import { decodeTokensPerSecond } from './forward-timing.js';

const { values: args } = parseArgs({
  options: {
    dtypes: { type: 'string', default: 'f32,q8_0,q4_k' },
    threads: { type: 'string', default: String(availableParallelism()) },
    context: { type: 'string', default: '128' },
    rounds: { type: 'string', default: '5' },
  },
});

// Qwen3-like: 8 query heads of 128 (q is 1024 wide on a 768-wide model), 4 KV heads, tied output.
// Llama-like: 12 heads of 64 = dim, 4 KV heads, FFN widened so the parameter counts match (~2%).
const VOCAB = 32000;
const SHAPES: Record<'llama' | 'qwen3', PresetShape> = {
  qwen3: { dim: 768, hiddenDim: 2048, nLayers: 12, nHeads: 8, nKvHeads: 4, headDim: 128, vocabSize: VOCAB, contextLength: 1024, tied: true },
  llama: { dim: 768, hiddenDim: 2304, nLayers: 12, nHeads: 12, nKvHeads: 4, vocabSize: VOCAB, contextLength: 1024, tied: true },
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const dir = mkdtempSync(join(tmpdir(), 'stepwise-families-bench-'));
const kernels = createNativeKernels({ threads: Number(args.threads) });
const context = Number(args.context);
const rounds = Number(args.rounds);
try {
  console.log(`# Qwen3-shaped vs Llama-shaped decode (${kernels.name}, ${cpus()[0]?.model ?? 'unknown CPU'}, context ${context}, ${rounds} alternating rounds, medians)\n`);
  console.log('| dtype | params llama / qwen3 | 1 seq llama tok/s | 1 seq qwen3 tok/s | qwen3/llama | 32 seqs llama tok/s | 32 seqs qwen3 tok/s | qwen3/llama |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|');
  for (const dtype of args.dtypes!.split(',') as DType[]) {
    const models: Partial<Record<Architecture, TransformerModel>> = {};
    const params: string[] = [];
    for (const arch of ['llama', 'qwen3'] as const) {
      const { spec, summary } = modelSpec({ shape: SHAPES[arch], dtype, seed: 1, vocab: syntheticVocab(VOCAB), name: `${arch}-bench`, arch: { arch } });
      const path = join(dir, `${arch}-${dtype}.gguf`);
      writeGgufFile(path, spec);
      const loaded = await loadModel(path);
      models[arch] = new TransformerModel(loaded.config, loaded.weights, kernels);
      params.push(`${(summary.params / 1e6).toFixed(1)}M`);
    }
    const cells: string[] = [dtype, params.join(' / ')];
    for (const S of [1, 32]) {
      const t: Record<'llama' | 'qwen3', number[]> = { llama: [], qwen3: [] };
      for (let r = 0; r < rounds; r++) {
        for (const arch of ['llama', 'qwen3'] as const) t[arch].push(decodeTokensPerSecond(models[arch]!, S, context));
      }
      const l = median(t.llama);
      const q = median(t.qwen3);
      cells.push(l.toFixed(1), q.toFixed(1), (q / l).toFixed(3));
    }
    console.log(`| ${cells.join(' | ')} |`);
  }
} finally {
  kernels.close();
  rmSync(dir, { recursive: true, force: true });
}
