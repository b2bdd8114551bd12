// KV cache sizing arithmetic, shared by the model (a real cache of a given element type), the
// engine's option resolution and the simulator's cost model (a profile's bytes per element). It sits
// below all of them and imports nothing.

/** What sizes one token's KV: a K and a V row of nKvHeads x headDim elements in every layer. */
export interface KvShape {
  nLayers: number;
  nKvHeads: number;
  headDim: number;
}

/** Bytes of KV cache one token occupies across all layers (K and V) at `bytesPerElement`. */
export function kvBytesPerToken(m: KvShape, bytesPerElement: number): number {
  return 2 * m.nLayers * m.nKvHeads * m.headDim * bytesPerElement;
}

/** KV blocks of `blockSize` tokens that fit in `bytes` at `bytesPerToken`. */
export function blocksInBytes(bytes: number, bytesPerToken: number, blockSize: number): number {
  if (!(Number.isFinite(bytes) && bytes >= 0)) throw new RangeError(`KV cache memory must be a non-negative number of bytes, got ${bytes}`);
  if (!Number.isSafeInteger(blockSize) || blockSize < 1) throw new RangeError(`block size must be an integer >= 1, got ${blockSize}`);
  return Math.floor(bytes / (bytesPerToken * blockSize));
}
