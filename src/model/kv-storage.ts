// The paged KV cache's memory: per layer, one K and one V array of numBlocks*blockSize slots. The
// scheduler's block manager (engine/kv-cache.ts) decides which blocks a sequence owns; this file only
// holds the floats and copies blocks for copy-on-write.

import type { ModelConfig } from './config.js';
import type { KvStorage } from './kernels/types.js';

export class KvStorageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KvStorageError';
  }
}

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) throw new KvStorageError(`${name} must be a positive integer, got ${v}`);
}

export function createKvStorage(config: ModelConfig, numBlocks: number, blockSize: number): KvStorage {
  positiveInt('numBlocks', numBlocks);
  positiveInt('blockSize', blockSize);
  positiveInt('nLayers', config.nLayers);
  positiveInt('nKvHeads', config.nKvHeads);
  positiveInt('headDim', config.headDim);
  const floatsPerLayer = numBlocks * blockSize * config.nKvHeads * config.headDim;
  // One typed array per layer and per K/V must stay within what V8 can allocate in one piece.
  const maxFloats = 2 ** 30;
  if (floatsPerLayer > maxFloats) {
    throw new KvStorageError(
      `KV cache of ${numBlocks} blocks x ${blockSize} tokens needs ${floatsPerLayer} floats per layer, more than ${maxFloats}; use fewer blocks`,
    );
  }
  const k: Float32Array[] = [];
  const v: Float32Array[] = [];
  try {
    for (let l = 0; l < config.nLayers; l++) {
      k.push(new Float32Array(floatsPerLayer));
      v.push(new Float32Array(floatsPerLayer));
    }
  } catch (e) {
    const mib = (2 * config.nLayers * floatsPerLayer * 4) / 2 ** 20;
    throw new KvStorageError(`could not allocate the KV cache (${mib.toFixed(0)} MiB for ${numBlocks} blocks of ${blockSize} tokens): ${(e as Error).message}`);
  }
  return { numBlocks, blockSize, nLayers: config.nLayers, nKvHeads: config.nKvHeads, headDim: config.headDim, k, v };
}

/** Copies block src to block dst in every layer, K and V (copy-on-write of a shared prefix block). */
export function copyBlock(kv: KvStorage, src: number, dst: number): void {
  for (const [name, b] of [['src', src], ['dst', dst]] as const) {
    if (!Number.isInteger(b) || b < 0 || b >= kv.numBlocks) throw new KvStorageError(`copyBlock: ${name} block ${b} outside 0..${kv.numBlocks - 1}`);
  }
  if (src === dst) return;
  const blockFloats = kv.blockSize * kv.nKvHeads * kv.headDim;
  for (let l = 0; l < kv.nLayers; l++) {
    kv.k[l].copyWithin(dst * blockFloats, src * blockFloats, (src + 1) * blockFloats);
    kv.v[l].copyWithin(dst * blockFloats, src * blockFloats, (src + 1) * blockFloats);
  }
}
