// llama.cpp (node-llama-cpp 3.21.1) as the oracle for the files we write: it must load generated
// models and their vocabularies, and it must decode our quantized blocks to exactly the values our
// dequantizers produce. getLlama() takes about half a second here (prebuilt CPU binary).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, LlamaLogLevel, type ControlledEvaluateInputItem, type Llama, type LlamaModel, type Token } from 'node-llama-cpp';
import { makeModel, modelSpec, type PresetShape } from '../../src/model/make-model.js';
import { syntheticVocab } from '../../src/model/synthetic-vocab.js';
import { writeGgufFile } from '../../src/model/loaders/gguf-writer.js';
import { DTYPE_INFO, dequantize, quantize } from '../../src/model/kernels/quant.js';
import type { DType } from '../../src/model/weights.js';
import { sharedModelFile, LLAMA2_TOKENIZER_BIN } from '../helpers/models.js';

const dir = mkdtempSync(join(tmpdir(), 'stepwise-llamacpp-'));
let llama: Llama;

before(async () => {
  llama = await getLlama({ build: 'never', gpu: false, logLevel: LlamaLogLevel.error });
});
after(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function withModel<T>(path: string, fn: (m: LlamaModel) => Promise<T>): Promise<T> {
  const m = await llama.loadModel({ modelPath: path });
  try {
    return await fn(m);
  } finally {
    await m.dispose();
  }
}

/** llama.cpp's next-token probabilities after each of `tokens`. */
async function probabilitiesAt(m: LlamaModel, tokens: number[]): Promise<Array<Map<number, number>>> {
  const ctx = await m.createContext({ contextSize: 64, batchSize: 64, threads: 1 });
  try {
    const res = await ctx.getSequence().controlledEvaluate(tokens.map((t): ControlledEvaluateInputItem => [t as Token, { generateNext: { probabilities: true } }]));
    return res.map((r, i) => {
      const p = r?.next.probabilities;
      assert.ok(p, `no probabilities at position ${i}`);
      return p;
    });
  } finally {
    await ctx.dispose();
  }
}

test('llama.cpp loads generated tiny models (f32, f16, q8_0) and tokenizes with their vocabulary', async () => {
  for (const dtype of ['f32', 'f16', 'q8_0'] as const) {
    const path = join(dir, `tiny-${dtype}.gguf`);
    await makeModel({ preset: 'tiny', dtype, seed: 11, out: path });
    await withModel(path, async (m) => {
      assert.equal(m.trainContextSize, 512);
      assert.equal(m.tokens.bos, 1);
      assert.equal(m.tokens.eos, 2);
      const text = 'Once upon a time, the little dog said: "hello!"\n';
      const ids = m.tokenize(text);
      assert.ok(ids.length > 5 && ids.length < text.length, `${dtype}: ${ids.length} tokens`);
      assert.ok(ids.every((id) => id >= 3 && id < 512));
      assert.ok(ids.includes((3 + 10) as Token), 'the newline falls back to its byte piece <0x0A>');
      assert.equal(m.detokenize(ids), text);
      // Whole words of the synthetic vocabulary are single pieces (llama.cpp prefixes the space itself).
      assert.equal(m.tokenize('the').length, 1);
    });
  }
});

test('llama.cpp reads the Llama 2 vocabulary written from tokenizer.bin', async (t) => {
  const f = sharedModelFile(LLAMA2_TOKENIZER_BIN);
  if (f.missing) return t.skip(f.missing);
  const path = join(dir, 'tiny-llama2-vocab.gguf');
  await makeModel({ preset: 'tiny', dtype: 'q8_0', seed: 1, out: path, vocab: f.path });
  await withModel(path, async (m) => {
    assert.deepEqual(m.tokenize('Hello world'), [15043, 3186]);
    assert.equal(m.detokenize(m.tokenize('Héllo\tworld 🙂')), 'Héllo\tworld 🙂');
  });
});

test('llama.cpp decodes our quantized blocks to exactly our dequantized values', async () => {
  // Two models per type that differ only in how the token embedding is stored: quantized (A), or
  // as float32 holding dequantize() of those same bytes (B). llama.cpp looks embedding rows up by
  // dequantizing them with ggml's own code, so A and B give identical outputs only if our
  // dequantizers read every field of ggml's layout as ggml does.
  const shape: PresetShape = { dim: 256, hiddenDim: 256, nLayers: 1, nHeads: 4, nKvHeads: 2, vocabSize: 512, contextLength: 64, tied: false };
  const base = modelSpec({ shape, dtype: 'f32', seed: 4, vocab: syntheticVocab(512), name: 'embd-oracle' }).spec;
  const embdIndex = base.tensors.findIndex((x) => x.name === 'token_embd.weight');
  const embd = base.tensors[embdIndex]!;
  const f32 = new Float32Array((typeof embd.data === 'function' ? embd.data() : embd.data).slice().buffer);
  const tokens = [1, 300, 45, 46, 511, 260, 300, 7, 128, 129, 400, 3];
  for (const dtype of (Object.keys(DTYPE_INFO) as DType[]).filter((d) => d !== 'f32')) {
    const bytes = quantize(dtype, f32, 512, 256);
    const decoded = dequantize({ name: 'token_embd.weight', dtype, rows: 512, cols: 256, data: bytes });
    const withEmbd = (type: DType, data: Uint8Array) => ({ ...base, tensors: base.tensors.map((x, i) => (i === embdIndex ? { ...x, type, data } : x)) });
    const pathA = join(dir, `embd-${dtype}.gguf`);
    const pathB = join(dir, `embd-${dtype}-as-f32.gguf`);
    writeGgufFile(pathA, withEmbd(dtype, bytes));
    writeGgufFile(pathB, withEmbd('f32', new Uint8Array(decoded.buffer)));
    const pa = await withModel(pathA, (m) => probabilitiesAt(m, tokens));
    const pb = await withModel(pathB, (m) => probabilitiesAt(m, tokens));
    let maxDiff = 0;
    for (let pos = 0; pos < tokens.length; pos++) {
      for (let id = 0; id < 512; id++) maxDiff = Math.max(maxDiff, Math.abs((pa[pos]!.get(id) ?? 0) - (pb[pos]!.get(id) ?? 0)));
    }
    assert.ok(maxDiff < 1e-6, `${dtype}: llama.cpp probabilities differ by ${maxDiff}`);
    // And the types really differ from float32 (the comparison would be vacuous otherwise).
    let quantErr = 0;
    for (let i = 0; i < f32.length; i++) quantErr = Math.max(quantErr, Math.abs(decoded[i]! - f32[i]!));
    assert.ok(quantErr > 0, `${dtype} changed nothing`);
  }
});

test('generated models have decisive, context-dependent greedy continuations in llama.cpp', async () => {
  const path = join(dir, 'tiny-f32.gguf');
  await withModel(path, async (m) => {
    const prompt = [1, 300, 301, 302, 400, 77];
    const ctx = await m.createContext({ contextSize: 64, batchSize: 64, threads: 1 });
    try {
      const seq = ctx.getSequence();
      const generated: number[] = [];
      const gaps: number[] = [];
      for await (const out of seq.evaluateWithMetadata(prompt as Token[], { probabilities: true }, { temperature: 0 })) {
        const [[, p1], [, p2]] = [...out.probabilities.entries()] as Array<[number, number]>;
        gaps.push(Math.log(p1! / p2!));
        generated.push(out.token);
        if (generated.length === 32) break;
      }
      gaps.sort((a, b) => a - b);
      const median = gaps[gaps.length >> 1]!;
      assert.ok(median > 0.3, `median top-1/top-2 logit gap ${median}`);
      assert.ok(new Set(generated).size >= 8, `degenerate continuation: ${generated.join(' ')}`);
    } finally {
      await ctx.dispose();
    }
  });
});
