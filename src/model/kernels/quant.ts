// Element types and block layouts of ggml/GGUF tensors, with reference (simple, exact-layout)
// dequantizers and quantizers. Layouts match ggml byte for byte so files written here load in
// llama.cpp and files from llama.cpp load here:
//
//   q8_0  32 values, 34 bytes: f16 d | int8 q[32]                       x = d*q
//   q4_0  32 values, 18 bytes: f16 d | u8 qs[16]                        x = d*(nibble-8);
//         byte j holds element j in its low nibble and element j+16 in its high nibble
//   q4_k 256 values, 144 bytes: f16 d | f16 dmin | u8 scales[12] | u8 qs[128]
//         8 sub-blocks of 32 with a 6-bit scale and 6-bit min each:  x = d*sc*nibble - dmin*m
//   q6_k 256 values, 210 bytes: u8 ql[128] | u8 qh[64] | int8 scales[16] | f16 d
//         16 sub-blocks of 16 with an int8 scale each: x = d*sc*(q6-32), q6 = 4 low bits from ql, 2 high from qh
//   q4_1, q5_0, q5_1, q2_k, q3_k, q5_k, iq4_nl, iq4_xs: see quant-codecs.ts
//
// All multi-byte fields are little-endian. Bytes are read one by one rather than through typed-array
// views because a block's f16 may sit at any byte offset of the file buffer.

import type { DType, WeightTensor } from './tensor.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, getHalfTable } from './half.js';
import { affineSubBlocks, DECODERS, ENCODERS, kScaleMin, packKScaleMin } from './quant-codecs.js';

export { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from './half.js';

export interface DTypeInfo {
  /** Values per block (1 for plain float types). */
  blockSize: number;
  /** Bytes per block. */
  blockBytes: number;
  /** The ggml_type id GGUF stores for it. */
  ggmlType: number;
}

export const DTYPE_INFO: Record<DType, DTypeInfo> = {
  f32: { blockSize: 1, blockBytes: 4, ggmlType: 0 },
  f16: { blockSize: 1, blockBytes: 2, ggmlType: 1 },
  q4_0: { blockSize: 32, blockBytes: 18, ggmlType: 2 },
  q8_0: { blockSize: 32, blockBytes: 34, ggmlType: 8 },
  q4_k: { blockSize: 256, blockBytes: 144, ggmlType: 12 },
  q6_k: { blockSize: 256, blockBytes: 210, ggmlType: 14 },
  bf16: { blockSize: 1, blockBytes: 2, ggmlType: 30 },
  q4_1: { blockSize: 32, blockBytes: 20, ggmlType: 3 },
  q5_0: { blockSize: 32, blockBytes: 22, ggmlType: 6 },
  q5_1: { blockSize: 32, blockBytes: 24, ggmlType: 7 },
  q2_k: { blockSize: 256, blockBytes: 84, ggmlType: 10 },
  q3_k: { blockSize: 256, blockBytes: 110, ggmlType: 11 },
  q5_k: { blockSize: 256, blockBytes: 176, ggmlType: 13 },
  iq4_nl: { blockSize: 32, blockBytes: 18, ggmlType: 20 },
  iq4_xs: { blockSize: 256, blockBytes: 136, ggmlType: 23 },
};

export const DTYPES = Object.keys(DTYPE_INFO) as DType[];

export function isDType(s: string): s is DType {
  return Object.prototype.hasOwnProperty.call(DTYPE_INFO, s);
}

/** Bytes one row of `cols` values takes; cols must be a whole number of blocks. */
export function rowBytes(dtype: DType, cols: number): number {
  const { blockSize, blockBytes } = DTYPE_INFO[dtype];
  if (!Number.isInteger(cols) || cols <= 0 || cols % blockSize !== 0) {
    throw new RangeError(`a ${dtype} row needs a positive multiple of ${blockSize} values, got ${cols}`);
  }
  return (cols / blockSize) * blockBytes;
}

// ---------------------------------------------------------------------------------------------
// Dequantization.

function readF16(b: Uint8Array, o: number, table: Float32Array): number {
  return table[b[o]! | (b[o + 1]! << 8)]!;
}

function int8(v: number): number {
  return (v << 24) >> 24;
}

/** Decodes `nBlocks` consecutive blocks of `dtype` starting at byte `src` into out[dst...]. */
export function decodeBlocks(dtype: DType, b: Uint8Array, src: number, nBlocks: number, out: Float32Array, dst: number): void {
  const table = getHalfTable();
  switch (dtype) {
    case 'f32': {
      const n = nBlocks;
      if ((b.byteOffset + src) % 4 === 0) {
        out.set(new Float32Array(b.buffer, b.byteOffset + src, n), dst);
      } else {
        const dv = new DataView(b.buffer, b.byteOffset + src, n * 4);
        for (let i = 0; i < n; i++) out[dst + i] = dv.getFloat32(i * 4, true);
      }
      return;
    }
    case 'f16':
      for (let i = 0; i < nBlocks; i++) out[dst + i] = readF16(b, src + 2 * i, table);
      return;
    case 'bf16':
      for (let i = 0; i < nBlocks; i++) out[dst + i] = bf16ToF32(b[src + 2 * i]! | (b[src + 2 * i + 1]! << 8));
      return;
    case 'q8_0':
      for (let k = 0; k < nBlocks; k++, src += 34, dst += 32) {
        const d = readF16(b, src, table);
        for (let j = 0; j < 32; j++) out[dst + j] = d * int8(b[src + 2 + j]!);
      }
      return;
    case 'q4_0':
      for (let k = 0; k < nBlocks; k++, src += 18, dst += 32) {
        const d = readF16(b, src, table);
        for (let j = 0; j < 16; j++) {
          const q = b[src + 2 + j]!;
          out[dst + j] = d * ((q & 0x0f) - 8);
          out[dst + j + 16] = d * ((q >> 4) - 8);
        }
      }
      return;
    case 'q4_k':
      for (let k = 0; k < nBlocks; k++, src += 144, dst += 256) decodeQ4K(b, src, out, dst, table);
      return;
    case 'q6_k':
      for (let k = 0; k < nBlocks; k++, src += 210, dst += 256) decodeQ6K(b, src, out, dst, table);
      return;
    default: {
      const decode = DECODERS[dtype];
      const { blockSize, blockBytes } = DTYPE_INFO[dtype];
      for (let k = 0; k < nBlocks; k++, src += blockBytes, dst += blockSize) decode(b, src, out, dst, table);
    }
  }
}

function decodeQ4K(b: Uint8Array, src: number, out: Float32Array, dst: number, table: Float32Array): void {
  const d = readF16(b, src, table);
  const dmin = readF16(b, src + 2, table);
  const scales = src + 4;
  // Each 32 bytes of qs hold two sub-blocks: the low nibbles of one, then the high nibbles of the next.
  for (let chunk = 0; chunk < 4; chunk++) {
    const qs = src + 16 + chunk * 32;
    const [sc0, m0] = kScaleMin(b, scales, 2 * chunk);
    const [sc1, m1] = kScaleMin(b, scales, 2 * chunk + 1);
    const d0 = d * sc0, min0 = dmin * m0, d1 = d * sc1, min1 = dmin * m1;
    const o = dst + chunk * 64;
    for (let l = 0; l < 32; l++) {
      const q = b[qs + l]!;
      out[o + l] = d0 * (q & 0x0f) - min0;
      out[o + 32 + l] = d1 * (q >> 4) - min1;
    }
  }
}

function decodeQ6K(b: Uint8Array, src: number, out: Float32Array, dst: number, table: Float32Array): void {
  const d = readF16(b, src + 208, table);
  // Two halves of 128 values, each using 64 bytes of ql, 32 of qh and 8 scales.
  for (let half = 0; half < 2; half++) {
    const ql = src + half * 64;
    const qh = src + 128 + half * 32;
    const sc = src + 192 + half * 8;
    const o = dst + half * 128;
    for (let l = 0; l < 32; l++) {
      const is = l >> 4;
      const h = b[qh + l]!;
      const lo0 = b[ql + l]!;
      const lo1 = b[ql + l + 32]!;
      const q1 = ((lo0 & 0x0f) | ((h & 3) << 4)) - 32;
      const q2 = ((lo1 & 0x0f) | (((h >> 2) & 3) << 4)) - 32;
      const q3 = ((lo0 >> 4) | (((h >> 4) & 3) << 4)) - 32;
      const q4 = ((lo1 >> 4) | (((h >> 6) & 3) << 4)) - 32;
      out[o + l] = d * int8(b[sc + is]!) * q1;
      out[o + l + 32] = d * int8(b[sc + is + 2]!) * q2;
      out[o + l + 64] = d * int8(b[sc + is + 4]!) * q3;
      out[o + l + 96] = d * int8(b[sc + is + 6]!) * q4;
    }
  }
}

function checkTensorBytes(w: WeightTensor): number {
  const rb = rowBytes(w.dtype, w.cols);
  if (w.data.byteLength < rb * w.rows) {
    throw new RangeError(`tensor ${w.name}: ${w.data.byteLength} bytes cannot hold ${w.rows}x${w.cols} ${w.dtype}`);
  }
  return rb;
}

/** Decodes row `row` of w into out[0..cols). */
export function dequantizeRow(w: WeightTensor, row: number, out: Float32Array): void {
  const rb = checkTensorBytes(w);
  if (!Number.isInteger(row) || row < 0 || row >= w.rows) throw new RangeError(`tensor ${w.name}: row ${row} is outside 0..${w.rows - 1}`);
  if (out.length < w.cols) throw new RangeError(`tensor ${w.name}: output of ${out.length} values is shorter than a row (${w.cols})`);
  decodeBlocks(w.dtype, w.data, row * rb, w.cols / DTYPE_INFO[w.dtype].blockSize, out, 0);
}

/** Decodes the whole matrix, row-major (rows*cols values). */
export function dequantize(w: WeightTensor): Float32Array {
  const rb = checkTensorBytes(w);
  const out = new Float32Array(w.rows * w.cols);
  decodeBlocks(w.dtype, w.data, 0, (rb * w.rows) / DTYPE_INFO[w.dtype].blockBytes, out, 0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Quantization: simple round-to-nearest with per-block scales. Not tuned for quality like
// llama.cpp's quantizers, but the bytes are valid ggml blocks.

/** C roundf: halves away from zero (Math.round rounds -2.5 to -2). */
function roundAway(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

function clamp(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}

function writeF16(b: Uint8Array, o: number, x: number): number {
  const h = f32ToF16(x);
  b[o] = h & 0xff;
  b[o + 1] = h >> 8;
  return f16ToF32(h);
}

export function encodeQ8_0(x: Float32Array, xo: number, b: Uint8Array, o: number): void {
  let amax = 0;
  for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[xo + j]!));
  const d = amax / 127;
  const id = d ? 1 / d : 0;
  writeF16(b, o, d);
  for (let j = 0; j < 32; j++) b[o + 2 + j] = clamp(roundAway(x[xo + j]! * id), -127, 127) & 0xff;
}

function encodeQ4_0(x: Float32Array, xo: number, b: Uint8Array, o: number): void {
  // The value of largest magnitude maps to -8 exactly, using the full asymmetric range -8..7.
  let max = 0;
  for (let j = 0; j < 32; j++) if (Math.abs(x[xo + j]!) > Math.abs(max)) max = x[xo + j]!;
  const d = max / -8;
  const id = d ? 1 / d : 0;
  writeF16(b, o, d);
  for (let j = 0; j < 16; j++) {
    const lo = clamp(Math.floor(x[xo + j]! * id + 8.5), 0, 15);
    const hi = clamp(Math.floor(x[xo + j + 16]! * id + 8.5), 0, 15);
    b[o + 2 + j] = lo | (hi << 4);
  }
}

function encodeQ4K(x: Float32Array, xo: number, b: Uint8Array, o: number): void {
  // Per sub-block of 32: an offset m = -min(0, min x) and a scale spanning [min, max] in 15 steps;
  // then both are quantized to 6 bits against the super-block's largest.
  const { sc: scale, mn: mins, maxSc: maxScale, maxMn: maxMin } = affineSubBlocks(x, xo, 8, 32, 15);
  const d = writeF16(b, o, maxScale / 63);
  const dmin = writeF16(b, o + 2, maxMin / 63);
  const ls = new Uint8Array(8);
  const lm = new Uint8Array(8);
  for (let j = 0; j < 8; j++) {
    ls[j] = d ? clamp(roundAway(scale[j]! / d), 0, 63) : 0;
    lm[j] = dmin ? clamp(roundAway(mins[j]! / dmin), 0, 63) : 0;
  }
  packKScaleMin(b, o + 4, ls, lm);
  const q = new Uint8Array(256);
  for (let j = 0; j < 8; j++) {
    const dEff = d * ls[j]!;
    const mEff = dmin * lm[j]!;
    for (let l = 0; l < 32; l++) {
      const i = 32 * j + l;
      q[i] = dEff ? clamp(roundAway((x[xo + i]! + mEff) / dEff), 0, 15) : 0;
    }
  }
  for (let chunk = 0; chunk < 4; chunk++) {
    for (let l = 0; l < 32; l++) b[o + 16 + chunk * 32 + l] = q[chunk * 64 + l]! | (q[chunk * 64 + 32 + l]! << 4);
  }
}

function encodeQ6K(x: Float32Array, xo: number, b: Uint8Array, o: number): void {
  // Per sub-block of 16: the value of largest magnitude maps to -32 (range -32..31); the 16 scales
  // are then int8 multiples of one f16 super-block scale.
  const scale = new Float64Array(16);
  let maxAbsScale = 0;
  for (let j = 0; j < 16; j++) {
    let max = 0;
    for (let l = 0; l < 16; l++) {
      const v = x[xo + 16 * j + l]!;
      if (Math.abs(v) > Math.abs(max)) max = v;
    }
    scale[j] = max / -32;
    maxAbsScale = Math.max(maxAbsScale, Math.abs(scale[j]!));
  }
  const d = writeF16(b, o + 208, maxAbsScale / 127);
  const sc = new Int8Array(16);
  for (let j = 0; j < 16; j++) {
    sc[j] = d ? clamp(roundAway(scale[j]! / d), -127, 127) : 0;
    b[o + 192 + j] = sc[j]! & 0xff;
  }
  const q = new Uint8Array(256);
  for (let i = 0; i < 256; i++) {
    const eff = d * sc[i >> 4]!;
    q[i] = (eff ? clamp(roundAway(x[xo + i]! / eff), -32, 31) : 0) + 32;
  }
  for (let half = 0; half < 2; half++) {
    const ql = o + half * 64;
    const qh = o + 128 + half * 32;
    const base = half * 128;
    for (let l = 0; l < 32; l++) {
      const q1 = q[base + l]!, q2 = q[base + l + 32]!, q3 = q[base + l + 64]!, q4 = q[base + l + 96]!;
      b[ql + l] = (q1 & 0x0f) | ((q3 & 0x0f) << 4);
      b[ql + l + 32] = (q2 & 0x0f) | ((q4 & 0x0f) << 4);
      b[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
    }
  }
}

/** Encodes a rows x cols row-major matrix into ggml's bytes for dtype. */
export function quantize(dtype: DType, values: Float32Array, rows: number, cols: number): Uint8Array {
  if (!Number.isInteger(rows) || rows < 0) throw new RangeError(`quantize: rows must be a non-negative integer, got ${rows}`);
  const rb = rowBytes(dtype, cols);
  if (values.length !== rows * cols) throw new RangeError(`quantize: ${values.length} values given for a ${rows}x${cols} matrix`);
  const n = rows * cols;
  const out = new Uint8Array(rb * rows);
  switch (dtype) {
    case 'f32':
      new Float32Array(out.buffer).set(values);
      return out;
    case 'f16':
      for (let i = 0; i < n; i++) {
        const h = f32ToF16(values[i]!);
        out[2 * i] = h & 0xff;
        out[2 * i + 1] = h >> 8;
      }
      return out;
    case 'bf16':
      for (let i = 0; i < n; i++) {
        const h = f32ToBf16(values[i]!);
        out[2 * i] = h & 0xff;
        out[2 * i + 1] = h >> 8;
      }
      return out;
  }
  const { blockSize, blockBytes } = DTYPE_INFO[dtype];
  const own = { q8_0: encodeQ8_0, q4_0: encodeQ4_0, q4_k: encodeQ4K, q6_k: encodeQ6K } as Partial<Record<DType, (x: Float32Array, xo: number, b: Uint8Array, o: number) => void>>;
  const encode = own[dtype] ?? ((x: Float32Array, xo: number, b: Uint8Array, o: number) => ENCODERS[dtype as keyof typeof ENCODERS](x, xo, b, o, f32ToF16));
  for (let k = 0, nBlocks = n / blockSize; k < nBlocks; k++) encode(values, k * blockSize, out, k * blockBytes);
  return out;
}
