// The paged KV cache's memory: per layer, one K and one V array of numBlocks*blockSize slots, and how
// many blocks a memory budget holds for a model. The engine's KV cache manager
// (engine/kv-cache-manager.ts) decides which blocks a sequence owns; this file only holds the K/V rows
// (kv-dtype.ts) and copies blocks for copy-on-write.

import type { ModelConfig } from './config.js';
import type { KvStorage } from './kernels/types.js';
import { kvDtypeProblem, kvElementBytes, kvRowBytes, type KvArray, type KvCacheDtype } from './kernels/kv-dtype.js';
import { allocateKvBufferNative } from './kernels/native.js';
import { blocksInBytes, kvBytesPerToken } from '../util/kv-bytes.js';

/** KV blocks of `blockSize` tokens that fit in `bytes` of KV memory (K and V of `dtype`, all layers). */
export function blocksForMemory(bytes: number, config: ModelConfig, blockSize: number, dtype: KvCacheDtype = 'f32'): number {
  return blocksInBytes(bytes, kvBytesPerToken(config, kvElementBytes(dtype)), blockSize);
}

export class KvStorageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KvStorageError';
  }
}

/**
 * Zero-filled storage for `slots` rows of `width` elements. With the native addon its pages are
 * populated up front (native/kv-buffer.cc: faulting them in one by one inside decode steps cost a
 * quarter of a short run's time); otherwise an ordinary typed array.
 */
function allocateKv(dtype: KvCacheDtype, slots: number, width: number): KvArray {
  const bytes = slots * kvRowBytes(dtype, width);
  const buf = allocateKvBufferNative(bytes) ?? new ArrayBuffer(bytes);
  if (dtype === 'f32') return new Float32Array(buf);
  if (dtype === 'f16') return new Uint16Array(buf);
  return new Uint8Array(buf);
}

function positiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) throw new KvStorageError(`${name} must be a positive integer, got ${v}`);
}

export function createKvStorage(config: ModelConfig, numBlocks: number, blockSize: number, dtype: KvCacheDtype = 'f32'): KvStorage {
  positiveInt('numBlocks', numBlocks);
  positiveInt('blockSize', blockSize);
  positiveInt('nLayers', config.nLayers);
  positiveInt('nKvHeads', config.nKvHeads);
  positiveInt('headDim', config.headDim);
  const problem = kvDtypeProblem(dtype, config.headDim);
  if (problem) throw new KvStorageError(problem);
  const width = config.nKvHeads * config.headDim;
  const slots = numBlocks * blockSize;
  // One typed array per layer and per K/V must stay within what V8 can allocate in one piece.
  const maxBytes = 2 ** 32;
  const layerBytes = slots * kvRowBytes(dtype, width);
  if (layerBytes > maxBytes) {
    throw new KvStorageError(
      `KV cache of ${numBlocks} blocks x ${blockSize} tokens needs ${layerBytes} bytes per layer, more than ${maxBytes}; use fewer blocks`,
    );
  }
  const k: KvArray[] = [];
  const v: KvArray[] = [];
  try {
    for (let l = 0; l < config.nLayers; l++) {
      k.push(allocateKv(dtype, slots, width));
      v.push(allocateKv(dtype, slots, width));
    }
  } catch (e) {
    const mib = (2 * config.nLayers * layerBytes) / 2 ** 20;
    throw new KvStorageError(`could not allocate the KV cache (${mib.toFixed(0)} MiB for ${numBlocks} blocks of ${blockSize} tokens): ${(e as Error).message}`);
  }
  return { numBlocks, blockSize, nLayers: config.nLayers, nKvHeads: config.nKvHeads, headDim: config.headDim, dtype, k, v };
}

/** Copies block src to block dst in every layer, K and V (copy-on-write of a shared prefix block). */
export function copyBlock(kv: KvStorage, src: number, dst: number): void {
  for (const [name, b] of [['src', src], ['dst', dst]] as const) {
    if (!Number.isInteger(b) || b < 0 || b >= kv.numBlocks) throw new KvStorageError(`copyBlock: ${name} block ${b} outside 0..${kv.numBlocks - 1}`);
  }
  if (src === dst) return;
  // In elements of each array (floats, f16 halves or q8_0 bytes).
  const width = kv.nKvHeads * kv.headDim;
  const per = kv.blockSize * (kv.dtype === 'q8_0' ? kvRowBytes('q8_0', width) : width);
  for (let l = 0; l < kv.nLayers; l++) {
    kv.k[l]!.copyWithin(dst * per, src * per, (src + 1) * per);
    kv.v[l]!.copyWithin(dst * per, src * per, (src + 1) * per);
  }
}
