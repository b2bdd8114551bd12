// The element types the paged KV cache can store, as llama.cpp offers them (--cache-type-k/v):
// f16 by default (llama.cpp's default too: half the memory of f32, so twice the tokens fit in a
// given budget), f32, and q8_0 (blocks of 32: an f16 scale and 32 int8 values, 34 bytes). K and V
// rows are encoded when written and decoded when attention reads them; the encoders here and in
// native/kv-cache.cc give the same bytes, and decoding is exact, so the TypeScript and native
// kernels read the same values.

import { f32ToF16 } from './half.js';
import { decodeBlocks, encodeQ8_0 } from './quant.js';

export type KvCacheDtype = 'f32' | 'f16' | 'q8_0';
export const KV_CACHE_DTYPES: readonly KvCacheDtype[] = ['f16', 'f32', 'q8_0'];
export const DEFAULT_KV_CACHE_DTYPE: KvCacheDtype = 'f16';

/** One layer's K or V storage: floats, f16 bits, or q8_0 blocks. */
export type KvArray = Float32Array | Uint16Array | Uint8Array;

export function isKvCacheDtype(s: string): s is KvCacheDtype {
  return (KV_CACHE_DTYPES as readonly string[]).includes(s);
}

/** Bytes of one K (or V) row of `width` elements; q8_0 needs width to be a multiple of 32. */
export function kvRowBytes(dtype: KvCacheDtype, width: number): number {
  return dtype === 'f32' ? 4 * width : dtype === 'f16' ? 2 * width : (width / 32) * 34;
}

/** Bytes per element of a cache of `dtype` (q8_0: 34 bytes per block of 32), for sizing a cache. */
export function kvElementBytes(dtype: KvCacheDtype): number {
  return kvRowBytes(dtype, 32) / 32;
}

/** Why `dtype` cannot hold heads of `headDim`, or null. */
export function kvDtypeProblem(dtype: KvCacheDtype, headDim: number): string | null {
  if (dtype === 'q8_0' && headDim % 32 !== 0) return `a q8_0 KV cache needs a head dimension that is a multiple of 32, this model's is ${headDim}`;
  return null;
}

/** The dtype an array holds (a KvStorage without `dtype` is f32). */
export function kvArrayDtype(a: KvArray): KvCacheDtype {
  return a instanceof Float32Array ? 'f32' : a instanceof Uint16Array ? 'f16' : 'q8_0';
}

/** Writes src[so .. so+width) as row `slot` of arr. */
export function encodeKvRow(arr: KvArray, slot: number, width: number, src: Float32Array, so: number): void {
  if (arr instanceof Float32Array) {
    arr.set(src.subarray(so, so + width), slot * width);
  } else if (arr instanceof Uint16Array) {
    const o = slot * width;
    for (let i = 0; i < width; i++) arr[o + i] = f32ToF16(src[so + i]!);
  } else {
    const o = slot * kvRowBytes('q8_0', width);
    for (let b = 0; b < width / 32; b++) encodeQ8_0(src, so + 32 * b, arr, o + 34 * b);
  }
}

/** The bytes of a KV array (a view made once per array). */
const byteViews = new WeakMap<KvArray, Uint8Array>();
export function kvBytes(a: KvArray): Uint8Array {
  let v = byteViews.get(a);
  if (!v) {
    v = a instanceof Uint8Array ? a : new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    byteViews.set(a, v);
  }
  return v;
}

/**
 * Elements off .. off+n of row `slot` as floats: for f32 the storage itself (returned with the
 * offset to read at), otherwise decoded into tmp (offset 0) by the weights' block decoder, since
 * the rows are laid out as f16 or q8_0 weight rows. off and n are multiples of 32 for q8_0.
 */
export function readKvRow(arr: KvArray, slot: number, width: number, off: number, n: number, tmp: Float32Array): [Float32Array, number] {
  if (arr instanceof Float32Array) return [arr, slot * width + off];
  const dtype = kvArrayDtype(arr);
  const start = slot * kvRowBytes(dtype, width) + kvRowBytes(dtype, off);
  decodeBlocks(dtype, kvBytes(arr), start, dtype === 'f16' ? n : n / 32, tmp, 0);
  return [tmp, 0];
}
