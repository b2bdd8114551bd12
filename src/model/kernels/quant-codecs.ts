// Block layouts of the further ggml quantization types found in real GGUF downloads (Q4_K_M and
// Q5_K_M files mix several per tensor; Qwen and Gemma files use Q5_0/Q8_0 where a row is not whole
// 256-blocks), with a reference decoder and a simple encoder for each. Byte for byte as ggml
// (ggml-common.h); multi-byte fields little-endian:
//
//   q4_1   32 values, 20 bytes: f16 d | f16 m | u8 qs[16]                    x = d*q + m
//   q5_0   32 values, 22 bytes: f16 d | u32 qh | u8 qs[16]                   x = d*(q - 16)
//   q5_1   32 values, 24 bytes: f16 d | f16 m | u32 qh | u8 qs[16]           x = d*q + m
//          (q: 4 low bits from qs as in q4_0 — element j low nibble, j+16 high — 5th bit j of qh)
//   q2_k  256 values, 84 bytes: u8 scales[16] | u8 qs[64] | f16 d | f16 dmin
//          16 sub-blocks of 16, 4-bit scale and min each: x = (d*sc)*q - dmin*m, q 2 bits
//   q3_k  256 values, 110 bytes: u8 hmask[32] | u8 qs[64] | u8 scales[12] | f16 d
//          16 sub-blocks of 16, 6-bit signed scales: x = (d*(sc-32))*(q - 4*(high bit clear))
//   q5_k  256 values, 176 bytes: f16 d | f16 dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]
//          as q4_k with a 5th bit per value from qh
//   iq4_nl 32 values, 18 bytes: f16 d | u8 qs[16]                            x = d*K[q]
//   iq4_xs 256 values, 136 bytes: f16 d | u16 scales_h | u8 scales_l[4] | u8 qs[128]
//          8 sub-blocks of 32, 6-bit scales: x = (d*(ls-32))*K[q]
//   where K is the non-linear 4-bit codebook IQ4_NL shares with IQ4_XS.
//
// The 2-bit groups of q2_k/q3_k: within each half of 128 values, byte l of its 32 qs bytes holds
// values l, l+32, l+64, l+96 at bits 0-1, 2-3, 4-5, 6-7. Every decoder's float operations are exact
// but the last, so the native decoders (native/dequant.cc) match these bit for bit.

import { f16ToF32 } from './half.js';

export type BlockDecoder = (b: Uint8Array, src: number, out: Float32Array, dst: number, half: Float32Array) => void;
export type BlockEncoder = (x: Float32Array, xo: number, b: Uint8Array, o: number, toF16: (x: number) => number) => number;

/** ggml's kvalues_iq4nl. */
export const IQ4NL_VALUES = Int8Array.of(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);

const f16 = (b: Uint8Array, o: number, half: Float32Array): number => half[b[o]! | (b[o + 1]! << 8)]!;
const u32 = (b: Uint8Array, o: number): number => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;

/** 4 low bits per value from 16 bytes (value j low nibble, j+16 high) plus an optional 5th bit from qh. */
function nibbles32(b: Uint8Array, qs: number, qh: number | undefined, out: (j: number, q: number) => void): void {
  for (let j = 0; j < 16; j++) {
    const byte = b[qs + j]!;
    const hi0 = qh === undefined ? 0 : ((qh >>> j) & 1) << 4;
    const hi1 = qh === undefined ? 0 : ((qh >>> (j + 16)) & 1) << 4;
    out(j, (byte & 0x0f) | hi0);
    out(j + 16, (byte >> 4) | hi1);
  }
}

/** Scale and min j (0..7) from the 12 packed bytes q4_k and q5_k share. */
export function kScaleMin(b: Uint8Array, s: number, j: number): [scale: number, min: number] {
  if (j < 4) return [b[s + j]! & 63, b[s + j + 4]! & 63];
  return [(b[s + j + 4]! & 0x0f) | ((b[s + j - 4]! >> 6) << 4), (b[s + j + 4]! >> 4) | ((b[s + j]! >> 6) << 4)];
}

/** 2-bit value e (0..255) of a q2_k/q3_k block's 64 qs bytes at `qs`. */
function twoBits(b: Uint8Array, qs: number, e: number): number {
  const halfIdx = e >> 7;
  const r = e & 127;
  return (b[qs + halfIdx * 32 + (r & 31)]! >> (2 * (r >> 5))) & 3;
}

/** q3_k's 6-bit scale j (0..15) from its 12 packed bytes at `s`. */
function q3kScale(b: Uint8Array, s: number, j: number): number {
  const low = j < 8 ? b[s + j]! & 0x0f : b[s + j - 8]! >> 4;
  const high = (b[s + 8 + (j & 3)]! >> (2 * (j >> 2))) & 3;
  return low | (high << 4);
}

export const DECODERS = {
  q4_1(b, src, out, dst, half) {
    const d = f16(b, src, half), m = f16(b, src + 2, half);
    nibbles32(b, src + 4, undefined, (j, q) => (out[dst + j] = d * q + m));
  },
  q5_0(b, src, out, dst, half) {
    const d = f16(b, src, half);
    nibbles32(b, src + 6, u32(b, src + 2), (j, q) => (out[dst + j] = d * (q - 16)));
  },
  q5_1(b, src, out, dst, half) {
    const d = f16(b, src, half), m = f16(b, src + 2, half);
    nibbles32(b, src + 8, u32(b, src + 4), (j, q) => (out[dst + j] = d * q + m));
  },
  q2_k(b, src, out, dst, half) {
    const d = f16(b, src + 80, half), dmin = f16(b, src + 82, half);
    for (let e = 0; e < 256; e++) {
      const sc = b[src + (e >> 4)]!;
      out[dst + e] = Math.fround(d * (sc & 0x0f)) * twoBits(b, src + 16, e) - Math.fround(dmin * (sc >> 4));
    }
  },
  q3_k(b, src, out, dst, half) {
    const d = f16(b, src + 108, half);
    for (let e = 0; e < 256; e++) {
      const high = (b[src + (e & 31)]! >> (e >> 5)) & 1;
      out[dst + e] = Math.fround(d * (q3kScale(b, src + 96, e >> 4) - 32)) * (twoBits(b, src + 32, e) - (high ? 0 : 4));
    }
  },
  q5_k(b, src, out, dst, half) {
    const d = f16(b, src, half), dmin = f16(b, src + 2, half);
    for (let g = 0; g < 4; g++) {
      for (let sub = 0; sub < 2; sub++) {
        const [sc, m] = kScaleMin(b, src + 4, 2 * g + sub);
        const dl = d * sc, ml = dmin * m;
        for (let l = 0; l < 32; l++) {
          const lo = sub === 0 ? b[src + 48 + 32 * g + l]! & 0x0f : b[src + 48 + 32 * g + l]! >> 4;
          const hi = (b[src + 16 + l]! >> (2 * g + sub)) & 1;
          out[dst + 64 * g + 32 * sub + l] = dl * (lo | (hi << 4)) - ml;
        }
      }
    }
  },
  iq4_nl(b, src, out, dst, half) {
    const d = f16(b, src, half);
    nibbles32(b, src + 2, undefined, (j, q) => (out[dst + j] = d * IQ4NL_VALUES[q]!));
  },
  iq4_xs(b, src, out, dst, half) {
    const d = f16(b, src, half);
    const scalesH = b[src + 2]! | (b[src + 3]! << 8);
    for (let ib = 0; ib < 8; ib++) {
      const ls = ((b[src + 4 + (ib >> 1)]! >> (4 * (ib & 1))) & 0x0f) | (((scalesH >> (2 * ib)) & 3) << 4);
      const dl = Math.fround(d * (ls - 32));
      nibbles32(b, src + 8 + 16 * ib, undefined, (j, q) => (out[dst + 32 * ib + j] = dl * IQ4NL_VALUES[q]!));
    }
  },
} satisfies Record<string, BlockDecoder>;

// ---------------------------------------------------------------------------------------------
// Encoders: round-to-nearest with per-block scales, as simple as the format allows. Not tuned like
// llama.cpp's quantizers (no importance weights or scale search), but the bytes are valid blocks.

const clamp = (x: number, lo: number, hi: number) => (x < lo ? lo : x > hi ? hi : x);
/** C roundf (halves away from zero). */
const round = (x: number) => (x < 0 ? -Math.round(-x) : Math.round(x));

function putF16(b: Uint8Array, o: number, x: number, toF16: (x: number) => number): void {
  const h = toF16(x);
  b[o] = h & 0xff;
  b[o + 1] = h >> 8;
}

function range(x: Float32Array, o: number, n: number): { min: number; max: number; absMax: number } {
  let min = Infinity, max = -Infinity, absMax = 0;
  for (let i = 0; i < n; i++) {
    const v = x[o + i]!;
    if (v < min) min = v;
    if (v > max) max = v;
    if (Math.abs(v) > Math.abs(absMax)) absMax = v;
  }
  return { min, max, absMax };
}

/**
 * The k-quants' affine sub-blocks (q2_k, q4_k, q5_k): per sub-block of `size` values, an offset
 * (minus the sub-block's minimum, when that is below 0) and a scale spanning up to its maximum in
 * `steps` steps; and the largest of each, which the super-block's two f16 scales are made from.
 */
export function affineSubBlocks(x: Float32Array, xo: number, count: number, size: number, steps: number): { sc: Float64Array; mn: Float64Array; maxSc: number; maxMn: number } {
  const sc = new Float64Array(count), mn = new Float64Array(count);
  let maxSc = 0, maxMn = 0;
  for (let j = 0; j < count; j++) {
    const r = range(x, xo + size * j, size);
    mn[j] = -Math.min(0, r.min);
    sc[j] = (r.max + mn[j]!) / steps;
    maxSc = Math.max(maxSc, sc[j]!);
    maxMn = Math.max(maxMn, mn[j]!);
  }
  return { sc, mn, maxSc, maxMn };
}

/** Packs eight 6-bit scales and mins into the 12 bytes at `s` that q4_k and q5_k share (kScaleMin reads them). */
export function packKScaleMin(b: Uint8Array, s: number, ls: ArrayLike<number>, lm: ArrayLike<number>): void {
  for (let j = 0; j < 4; j++) {
    b[s + j] = (ls[j]! & 63) | ((ls[j + 4]! >> 4) << 6);
    b[s + j + 4] = (lm[j]! & 63) | ((lm[j + 4]! >> 4) << 6);
    b[s + j + 8] = (ls[j + 4]! & 0x0f) | ((lm[j + 4]! & 0x0f) << 4);
  }
}

function packNibbles32(q: ArrayLike<number>, b: Uint8Array, qs: number): void {
  for (let j = 0; j < 16; j++) b[qs + j] = (q[j]! & 0x0f) | ((q[j + 16]! & 0x0f) << 4);
}

function packHighBits32(q: ArrayLike<number>, b: Uint8Array, o: number): void {
  let qh = 0;
  for (let j = 0; j < 32; j++) qh |= ((q[j]! >> 4) & 1) << j;
  b[o] = qh & 0xff;
  b[o + 1] = (qh >>> 8) & 0xff;
  b[o + 2] = (qh >>> 16) & 0xff;
  b[o + 3] = (qh >>> 24) & 0xff;
}

/** Min/max affine blocks of 32 with `levels` steps (q4_1: 16, q5_1: 32). */
function encodeAffine32(levels: number, qsAt: number, qhAt: number | undefined): (x: Float32Array, xo: number, b: Uint8Array, o: number, toF16: (x: number) => number) => void {
  return (x, xo, b, o, toF16) => {
    const { min, max } = range(x, xo, 32);
    const d = (max - min) / (levels - 1);
    const id = d ? 1 / d : 0;
    putF16(b, o, d, toF16);
    putF16(b, o + 2, min, toF16);
    const q = Array.from({ length: 32 }, (_, j) => clamp(Math.trunc((x[xo + j]! - min) * id + 0.5), 0, levels - 1));
    packNibbles32(q, b, o + qsAt);
    if (qhAt !== undefined) packHighBits32(q, b, o + qhAt);
  };
}

/** Nearest entry of the IQ4_NL codebook. */
function nearestIq4(v: number): number {
  let best = 0;
  for (let k = 1; k < 16; k++) if (Math.abs(IQ4NL_VALUES[k]! - v) < Math.abs(IQ4NL_VALUES[best]! - v)) best = k;
  return best;
}

export const ENCODERS: Record<keyof typeof DECODERS, (x: Float32Array, xo: number, b: Uint8Array, o: number, toF16: (x: number) => number) => void> = {
  q4_1: encodeAffine32(16, 4, undefined),
  q5_1: encodeAffine32(32, 8, 4),
  q5_0(x, xo, b, o, toF16) {
    // The value of largest magnitude maps to -16, the full asymmetric range -16..15 (as ggml).
    const d = range(x, xo, 32).absMax / -16;
    const id = d ? 1 / d : 0;
    putF16(b, o, d, toF16);
    const q = Array.from({ length: 32 }, (_, j) => clamp(Math.trunc(x[xo + j]! * id + 16.5), 0, 31));
    packHighBits32(q, b, o + 2);
    packNibbles32(q, b, o + 6);
  },
  q2_k(x, xo, b, o, toF16) {
    const { sc, mn, maxSc, maxMn } = affineSubBlocks(x, xo, 16, 16, 3);
    putF16(b, o + 80, maxSc / 15, toF16);
    putF16(b, o + 82, maxMn / 15, toF16);
    const d = f16Value(b, o + 80), dmin = f16Value(b, o + 82);
    const q = new Uint8Array(256);
    for (let j = 0; j < 16; j++) {
      const ls = d ? clamp(round(sc[j]! / d), 0, 15) : 0;
      const lm = dmin ? clamp(round(mn[j]! / dmin), 0, 15) : 0;
      b[o + j] = ls | (lm << 4);
      for (let l = 0; l < 16; l++) q[16 * j + l] = d * ls ? clamp(round((x[xo + 16 * j + l]! + dmin * lm) / (d * ls)), 0, 3) : 0;
    }
    packTwoBits(q, b, o + 16);
  },
  q3_k(x, xo, b, o, toF16) {
    // Per 16: the value of largest magnitude maps to -4 (range -4..3); 6-bit signed scales.
    const sc = new Float64Array(16);
    let maxSc = 0;
    for (let j = 0; j < 16; j++) {
      sc[j] = range(x, xo + 16 * j, 16).absMax / -4;
      if (Math.abs(sc[j]!) > Math.abs(maxSc)) maxSc = sc[j]!;
    }
    putF16(b, o + 108, maxSc / -32, toF16);
    const d = f16Value(b, o + 108);
    b.fill(0, o, o + 32);
    b.fill(0, o + 96, o + 108);
    const q = new Uint8Array(256);
    for (let j = 0; j < 16; j++) {
      const l = d ? clamp(round(sc[j]! / d), -32, 31) + 32 : 32;
      if (j < 8) b[o + 96 + j]! |= l & 0x0f;
      else b[o + 96 + j - 8]! |= (l & 0x0f) << 4;
      b[o + 96 + 8 + (j & 3)]! |= (l >> 4) << (2 * (j >> 2));
      const eff = d * (l - 32);
      for (let k = 0; k < 16; k++) {
        const e = 16 * j + k;
        q[e] = (eff ? clamp(round(x[xo + e]! / eff), -4, 3) : 0) + 4;
        if (q[e]! > 3) {
          b[o + (e & 31)]! |= 1 << (e >> 5);
          q[e]! -= 4;
        }
      }
    }
    packTwoBits(q, b, o + 32);
  },
  q5_k(x, xo, b, o, toF16) {
    const { sc, mn, maxSc, maxMn } = affineSubBlocks(x, xo, 8, 32, 31);
    putF16(b, o, maxSc / 63, toF16);
    putF16(b, o + 2, maxMn / 63, toF16);
    const d = f16Value(b, o), dmin = f16Value(b, o + 2);
    const ls = Array.from({ length: 8 }, (_, j) => (d ? clamp(round(sc[j]! / d), 0, 63) : 0));
    const lm = Array.from({ length: 8 }, (_, j) => (dmin ? clamp(round(mn[j]! / dmin), 0, 63) : 0));
    packKScaleMin(b, o + 4, ls, lm);
    b.fill(0, o + 16, o + 48);
    for (let g = 0; g < 4; g++) {
      for (let l = 0; l < 32; l++) {
        const qv = [0, 1].map((sub) => {
          const j = 2 * g + sub;
          const eff = d * ls[j]!;
          return eff ? clamp(round((x[xo + 32 * j + l]! + dmin * lm[j]!) / eff), 0, 31) : 0;
        });
        b[o + 48 + 32 * g + l] = (qv[0]! & 0x0f) | ((qv[1]! & 0x0f) << 4);
        b[o + 16 + l]! |= ((qv[0]! >> 4) << (2 * g)) | ((qv[1]! >> 4) << (2 * g + 1));
      }
    }
  },
  iq4_nl(x, xo, b, o, toF16) {
    const d = range(x, xo, 32).absMax / IQ4NL_VALUES[0]!;
    putF16(b, o, d, toF16);
    const dd = f16Value(b, o);
    packNibbles32(Array.from({ length: 32 }, (_, j) => (dd ? nearestIq4(x[xo + j]! / dd) : 8)), b, o + 2);
  },
  iq4_xs(x, xo, b, o, toF16) {
    const sc = new Float64Array(8);
    let maxSc = 0;
    for (let ib = 0; ib < 8; ib++) {
      sc[ib] = range(x, xo + 32 * ib, 32).absMax / IQ4NL_VALUES[0]!;
      if (Math.abs(sc[ib]!) > Math.abs(maxSc)) maxSc = sc[ib]!;
    }
    putF16(b, o, maxSc / -32, toF16);
    const d = f16Value(b, o);
    let scalesH = 0;
    b.fill(0, o + 4, o + 8);
    for (let ib = 0; ib < 8; ib++) {
      const ls = d ? clamp(round(sc[ib]! / d), -32, 31) + 32 : 32;
      b[o + 4 + (ib >> 1)]! |= (ls & 0x0f) << (4 * (ib & 1));
      scalesH |= (ls >> 4) << (2 * ib);
      const dl = d * (ls - 32);
      packNibbles32(Array.from({ length: 32 }, (_, j) => (dl ? nearestIq4(x[xo + 32 * ib + j]! / dl) : 8)), b, o + 8 + 16 * ib);
    }
    b[o + 2] = scalesH & 0xff;
    b[o + 3] = scalesH >> 8;
  },
};

function packTwoBits(q: Uint8Array, b: Uint8Array, qs: number): void {
  for (let h = 0; h < 2; h++) {
    for (let l = 0; l < 32; l++) {
      const e = 128 * h + l;
      b[qs + 32 * h + l] = q[e]! | (q[e + 32]! << 2) | (q[e + 64]! << 4) | (q[e + 96]! << 6);
    }
  }
}

/** The f16 just written at b[o..o+1], as a number (encoders quantize against the stored scale). */
function f16Value(b: Uint8Array, o: number): number {
  return f16ToF32(b[o]! | (b[o + 1]! << 8));
}
