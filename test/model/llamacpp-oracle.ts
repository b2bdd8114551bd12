// Test helpers for comparing our forward pass with llama.cpp (node-llama-cpp 3.21.1) on one GGUF file.
//
// node-llama-cpp exposes no raw logits, only next-token probabilities (controlledEvaluate with
// generateNext.probabilities, computed with greedy sampling = softmax of the raw logits). So we
// compare log-probabilities, log p = logit - logsumexp(logits), at every position of the prompt:
// that is the logits up to a per-row constant, which is everything sampling can see.
import assert from 'node:assert/strict';
import type { Llama } from 'node-llama-cpp';
import { TransformerModel } from '../../src/model/transformer.js';
import { createKvStorage } from '../../src/model/kv-storage.js';
import type { Kernels } from '../../src/model/kernels/types.js';
import type { LoadedModel } from '../../src/model/loaders/index.js';

/** Worst |log p difference| between our logits rows and llama.cpp's probabilities, and where. */
export function worstLogProbDiff(ours: Float32Array, theirs: Array<Map<number, number>>, V: number): { worst: number; where: string } {
  let worst = 0;
  let where = '';
  theirs.forEach((probs, p) => {
    const ourLp = logSoftmaxRow(ours, p * V, V);
    for (const [tok, pr] of probs) {
      if (pr < 1e-30) continue; // float32 underflow on their side: no log to compare
      const d = Math.abs(Math.log(pr) - ourLp[tok]);
      if (d > worst) {
        worst = d;
        where = `position ${p}, token ${tok}: ours ${ourLp[tok]}, llama.cpp ${Math.log(pr)}`;
      }
    }
  });
  return { worst, where };
}

export function logSoftmaxRow(logits: Float32Array, off: number, n: number): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[off + i]);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[off + i] - max);
  const lse = max + Math.log(sum);
  return Float64Array.from({ length: n }, (_, i) => logits[off + i] - lse);
}

export function argmaxRow(logits: Float32Array, off: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (logits[off + i] > logits[off + best]) best = i;
  return best;
}

/** Our logits at every prompt position (one prefill) and our greedy continuation of `continuation` tokens. */
export function ourRun(loaded: LoadedModel, kernels: Kernels, prompt: number[], continuation: number): { logits: Float32Array; greedy: number[] } {
  const cfg = loaded.config;
  const V = cfg.vocabSize;
  const model = new TransformerModel(cfg, loaded.weights, kernels);
  const blockSize = 16;
  const kv = createKvStorage(cfg, Math.ceil((prompt.length + continuation) / blockSize), blockSize);
  // Blocks in reverse order, so a wrong block-table lookup cannot pass by accident.
  const table = Int32Array.from({ length: kv.numBlocks }, (_, i) => kv.numBlocks - 1 - i);
  const slot = (p: number): number => table[Math.floor(p / blockSize)] * blockSize + (p % blockSize);
  const meta = (rows: number[]) => ({
    numRows: rows.length,
    positions: Int32Array.from(rows),
    rowSeq: new Int32Array(rows.length),
    blockTables: table,
    maxBlocksPerSeq: table.length,
    slotMapping: Int32Array.from(rows, slot),
  });
  const all = Array.from({ length: prompt.length }, (_, i) => i);
  const logits = model.forward({ tokens: Int32Array.from(prompt), logitRows: Int32Array.from(all), meta: meta(all) }, kv);
  const greedy: number[] = [argmaxRow(logits, (prompt.length - 1) * V, V)];
  for (let p = prompt.length; greedy.length < continuation; p++) {
    const l = model.forward({ tokens: Int32Array.of(greedy[greedy.length - 1]), logitRows: Int32Array.of(0), meta: meta([p]) }, kv);
    greedy.push(argmaxRow(l, 0, V));
  }
  return { logits, greedy };
}

/**
 * llama.cpp's probabilities after every prompt token and its greedy continuation: f32 KV cache, no
 * flash attention, one thread (with two, ggml spin-waits and crawls on a shared, loaded machine).
 */
export async function llamaCppRun(llama: Llama, path: string, prompt: number[], continuation: number, V: number): Promise<{ probs: Array<Map<number, number>>; greedy: number[] }> {
  const lm = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const ctx = await lm.createContext({
    contextSize: Math.max(128, prompt.length + continuation),
    batchSize: Math.max(128, prompt.length),
    sequences: 1,
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
  });
  try {
    const seq = ctx.getSequence();
    const res = await seq.controlledEvaluate(prompt.map((t) => [t, { generateNext: { probabilities: true } }] as [number, { generateNext: { probabilities: true } }]));
    const probs = Array.from({ length: prompt.length }, (_, p) => {
      const pr = res[p]?.next.probabilities;
      assert.ok(pr && pr.size === V, `llama.cpp gave ${pr?.size} probabilities at position ${p}`);
      return pr;
    });
    const greedy: number[] = [[...res[prompt.length - 1]!.next.probabilities!.keys()][0]];
    while (greedy.length < continuation) {
      const r = await seq.controlledEvaluate([[greedy[greedy.length - 1], { generateNext: { token: true } }]]);
      greedy.push(r[0]!.next.token!);
    }
    return { probs, greedy };
  } finally {
    await ctx.dispose();
    await lm.dispose();
  }
}

/**
 * Agreement where it matters for sampling, for files whose arithmetic differs from ours by design
 * (llama.cpp quantizes activations to 8 bits before multiplying them with quantized weights): the
 * worst |log p difference| over tokens llama.cpp gives at least `minProb`, and the positions whose
 * top token differs although llama.cpp's top two are more than `margin` nats apart.
 */
export function likelyTokenAgreement(ours: Float32Array, theirs: Array<Map<number, number>>, V: number, minProb = 1e-3, margin = 0.1): { worst: number; where: string; topMismatches: number[] } {
  let worst = 0;
  let where = '';
  const topMismatches: number[] = [];
  theirs.forEach((probs, p) => {
    const ourLp = logSoftmaxRow(ours, p * V, V);
    for (const [tok, pr] of probs) {
      if (pr < minProb) continue;
      const d = Math.abs(Math.log(pr) - ourLp[tok]);
      if (d > worst) {
        worst = d;
        where = `position ${p}, token ${tok}: ours ${ourLp[tok]}, llama.cpp ${Math.log(pr)}`;
      }
    }
    const [[top, p1], [, p2]] = [...probs.entries()].sort((a, b) => b[1] - a[1]) as Array<[number, number]>;
    if (Math.log(p1! / p2!) > margin && argmaxRow(ours, p * V, V) !== top) topMismatches.push(p);
  });
  return { worst, where, topMismatches };
}
