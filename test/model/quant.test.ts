// ggml block layouts, half-precision conversions and the reference quantizers. The hand-built
// blocks below spell out ggml's layouts element by element, independently of how quant.ts loops;
// test/model/model-files-llamacpp.test.ts then checks the same decoders against llama.cpp itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DTYPE_INFO,
  bf16ToF32,
  dequantize,
  dequantizeRow,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  quantize,
  rowBytes,
} from '../../src/model/kernels/quant.js';
import type { DType, WeightTensor } from '../../src/model/weights.js';
import { Xoshiro128 } from '../../src/model/make-model.js';

function tensor(dtype: DType, rows: number, cols: number, data: Uint8Array): WeightTensor {
  return { name: `t_${dtype}`, dtype, rows, cols, data };
}

function gaussian(n: number, seed: number, std = 1): Float32Array {
  const x = new Float32Array(n);
  new Xoshiro128(seed).fillNormal(x, std);
  return x;
}

test('DTYPE_INFO matches ggml type ids and block sizes', () => {
  assert.deepEqual(DTYPE_INFO.f32, { blockSize: 1, blockBytes: 4, ggmlType: 0 });
  assert.deepEqual(DTYPE_INFO.f16, { blockSize: 1, blockBytes: 2, ggmlType: 1 });
  assert.deepEqual(DTYPE_INFO.q4_0, { blockSize: 32, blockBytes: 18, ggmlType: 2 });
  assert.deepEqual(DTYPE_INFO.q8_0, { blockSize: 32, blockBytes: 34, ggmlType: 8 });
  assert.deepEqual(DTYPE_INFO.q4_k, { blockSize: 256, blockBytes: 144, ggmlType: 12 });
  assert.deepEqual(DTYPE_INFO.q6_k, { blockSize: 256, blockBytes: 210, ggmlType: 14 });
  assert.deepEqual(DTYPE_INFO.bf16, { blockSize: 1, blockBytes: 2, ggmlType: 30 });
  assert.equal(rowBytes('q4_k', 512), 288);
  assert.throws(() => rowBytes('q4_k', 64), /multiple of 256/);
});

test('f16 conversions: known values, rounding to nearest even, subnormals, specials', () => {
  const cases: Array<[number, number]> = [
    [0, 0x0000], [1, 0x3c00], [-2, 0xc000], [0.5, 0x3800], [65504, 0x7bff], [2 ** -14, 0x0400],
    [2 ** -24, 0x0001], [3 * 2 ** -24, 0x0003], [Infinity, 0x7c00], [-Infinity, 0xfc00], [0.333251953125, 0x3555],
  ];
  for (const [x, h] of cases) {
    assert.equal(f32ToF16(x), h, `f32ToF16(${x})`);
    assert.equal(f16ToF32(h), x, `f16ToF32(0x${h.toString(16)})`);
  }
  assert.equal(f32ToF16(-0), 0x8000);
  assert.ok(Object.is(f16ToF32(0x8000), -0));
  assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00, 'tie rounds to even (down)');
  assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02, 'tie rounds to even (up)');
  assert.equal(f32ToF16(1 + 2 ** -11 + 2 ** -20), 0x3c01, 'above the tie rounds up');
  assert.equal(f32ToF16(65520), 0x7c00, 'overflow rounds to infinity');
  assert.equal(f32ToF16(2 ** -25), 0x0000, 'half the smallest subnormal ties to zero');
  assert.equal(f32ToF16(1.5 * 2 ** -24), 0x0002, 'subnormal tie rounds to even');
  assert.ok(Number.isNaN(f16ToF32(f32ToF16(NaN))));
  // Every finite half survives a round trip exactly.
  for (let h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) === 0x7c00) continue;
    assert.equal(f32ToF16(f16ToF32(h)), h);
  }
});

test('bf16 conversions round to nearest even and keep NaN', () => {
  assert.equal(f32ToBf16(1), 0x3f80);
  assert.equal(bf16ToF32(0x3f80), 1);
  assert.equal(f32ToBf16(-2.5), 0xc020);
  assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80, 'tie to even (down)');
  assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82, 'tie to even (up)');
  assert.ok(Number.isNaN(bf16ToF32(f32ToBf16(NaN))));
  assert.equal(bf16ToF32(f32ToBf16(3.140625)), 3.140625);
});

test('q8_0 block: f16 d then 32 int8', () => {
  const b = new Uint8Array(34);
  b[0] = 0x00;
  b[1] = 0x38; // d = 0.5
  for (let j = 0; j < 32; j++) b[2 + j] = (j * 8 - 128) & 0xff; // int8 values -128, -120, ..., 120
  const out = dequantize(tensor('q8_0', 1, 32, b));
  for (let j = 0; j < 32; j++) assert.equal(out[j], 0.5 * (j * 8 - 128));
});

test('q4_0 block: f16 d, low nibbles are elements 0..15, high nibbles 16..31, value (q-8)*d', () => {
  const b = new Uint8Array(18);
  b[1] = 0x40; // d = 2
  for (let j = 0; j < 16; j++) b[2 + j] = j | ((15 - j) << 4);
  const out = dequantize(tensor('q4_0', 1, 32, b));
  for (let j = 0; j < 16; j++) {
    assert.equal(out[j], 2 * (j - 8));
    assert.equal(out[j + 16], 2 * (15 - j - 8));
  }
});

test('q4_k block: d, dmin, 12 bytes of packed 6-bit scales/mins, 128 bytes of nibbles', () => {
  const sc = [1, 2, 3, 63, 17, 33, 48, 60];
  const mn = [0, 1, 5, 10, 20, 40, 62, 63];
  const b = new Uint8Array(144);
  b.set([0x00, 0x3c], 0); // d = 1
  b.set([0x00, 0x38], 2); // dmin = 0.5
  // Bytes 4..7: scales 0..3 in the low 6 bits, bits 4..5 of scales 4..7 on top.
  // Bytes 8..11: mins 0..3 likewise with mins 4..7. Bytes 12..15: low 4 bits of scale 4+j | min 4+j.
  for (let j = 0; j < 4; j++) {
    b[4 + j] = sc[j]! | ((sc[j + 4]! >> 4) << 6);
    b[8 + j] = mn[j]! | ((mn[j + 4]! >> 4) << 6);
    b[12 + j] = (sc[j + 4]! & 15) | ((mn[j + 4]! & 15) << 4);
  }
  const q = (i: number) => (i * 7 + 3) % 16; // the 4-bit code of element i
  for (let i = 0; i < 256; i++) {
    // Each 32-byte group holds 64 elements: the first 32 as low nibbles, the next 32 as high nibbles.
    const group = i >> 6, within = i & 63, byte = 16 + group * 32 + (within & 31);
    b[byte]! |= within < 32 ? q(i) : q(i) << 4;
  }
  const out = dequantize(tensor('q4_k', 1, 256, b));
  for (let i = 0; i < 256; i++) {
    const s = i >> 5;
    assert.equal(out[i], 1 * sc[s]! * q(i) - 0.5 * mn[s]!, `element ${i}`);
  }
});

test('q6_k block: 128 bytes ql, 64 bytes qh, 16 int8 scales, f16 d; value d*scale*(q-32)', () => {
  const scales = [1, -2, 3, -4, 5, 127, -128, 8, 9, 10, -11, 12, 13, 14, 15, -16];
  const q = (i: number) => (i * 37 + 11) % 64; // the 6-bit code of element i
  const b = new Uint8Array(210);
  for (let i = 0; i < 256; i++) {
    // Two halves of 128; in a half, element j (0..127) is in group g = j>>5 at lane l = j&31:
    // low 4 bits in ql[half*64 + l + 32*(g&1)] (low nibble for g<2, high for g>=2),
    // high 2 bits in qh[half*32 + l] at bit 2*g.
    const half = i >> 7, j = i & 127, g = j >> 5, l = j & 31;
    const qlByte = half * 64 + l + 32 * (g & 1);
    b[qlByte]! |= g < 2 ? q(i) & 15 : (q(i) & 15) << 4;
    b[128 + half * 32 + l]! |= (q(i) >> 4) << (2 * g);
  }
  scales.forEach((s, k) => (b[192 + k] = s & 0xff));
  b.set([0x00, 0x38], 208); // d = 0.5
  const out = dequantize(tensor('q6_k', 1, 256, b));
  for (let i = 0; i < 256; i++) assert.equal(out[i], 0.5 * scales[i >> 4]! * (q(i) - 32), `element ${i}`);
});

test('f16/bf16/f32 tensors decode little-endian values, also at unaligned offsets', () => {
  const vals = [1, -2, 0.5, 65504];
  const f16 = new Uint8Array(9).subarray(1);
  vals.forEach((v, i) => {
    const h = f32ToF16(v);
    f16[2 * i] = h & 0xff;
    f16[2 * i + 1] = h >> 8;
  });
  assert.deepEqual([...dequantize(tensor('f16', 2, 2, f16))], vals);
  const f32 = new Uint8Array(17).subarray(1);
  const dv = new DataView(f32.buffer, 1);
  vals.forEach((v, i) => dv.setFloat32(4 * i, v, true));
  assert.deepEqual([...dequantize(tensor('f32', 2, 2, f32))], vals);
  const bf = quantize('bf16', Float32Array.from(vals), 1, 4);
  assert.deepEqual([...dequantize(tensor('bf16', 1, 4, bf))], [1, -2, 0.5, 65536]);
});

// Round trips: per-type error bounds on Gaussian data.
const ROWS = 4;
const COLS = 512;

function roundTrip(dtype: DType, x: Float32Array): Float32Array {
  const bytes = quantize(dtype, x, ROWS, COLS);
  assert.equal(bytes.byteLength, ROWS * rowBytes(dtype, COLS));
  return dequantize(tensor(dtype, ROWS, COLS, bytes));
}

test('round trips: f32 exact, f16/bf16 within their precision', () => {
  const x = gaussian(ROWS * COLS, 1);
  assert.deepEqual(roundTrip('f32', x), x);
  const h = roundTrip('f16', x);
  const b = roundTrip('bf16', x);
  for (let i = 0; i < x.length; i++) {
    assert.ok(Math.abs(h[i]! - x[i]!) <= Math.abs(x[i]!) * 2 ** -11 + 2 ** -25, `f16 ${i}`);
    assert.ok(Math.abs(b[i]! - x[i]!) <= Math.abs(x[i]!) * 2 ** -8, `bf16 ${i}`);
  }
});

test('round trips: q8_0 and q4_0 stay within half a step of their block scale', () => {
  const x = gaussian(ROWS * COLS, 2);
  const q8 = roundTrip('q8_0', x);
  const q4 = roundTrip('q4_0', x);
  for (let blk = 0; blk < x.length / 32; blk++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[blk * 32 + j]!));
    for (let j = 0; j < 32; j++) {
      const i = blk * 32 + j;
      // Step d = amax/127 (q8_0); rounding plus the f16 rounding of d over up to 127 steps.
      assert.ok(Math.abs(q8[i]! - x[i]!) <= (amax / 127) * (0.5 + 127 * 2 ** -11), `q8_0 ${i}`);
      // Step d = amax/8 (q4_0); the side opposite the largest value can clip by up to one step.
      assert.ok(Math.abs(q4[i]! - x[i]!) <= (amax / 8) * (1 + 8 * 2 ** -11), `q4_0 ${i}`);
    }
  }
});

test('round trips: k-quants have small relative error', () => {
  const x = gaussian(ROWS * COLS, 3, 0.02);
  for (const [dtype, maxRel] of [['q4_k', 0.12], ['q6_k', 0.03]] as const) {
    const y = roundTrip(dtype, x);
    let se = 0, sx = 0, worst = 0;
    for (let i = 0; i < x.length; i++) {
      se += (y[i]! - x[i]!) ** 2;
      sx += x[i]! ** 2;
      worst = Math.max(worst, Math.abs(y[i]! - x[i]!));
    }
    const rel = Math.sqrt(se / sx);
    assert.ok(rel < maxRel, `${dtype}: relative RMS error ${rel}`);
    // No element is off by more than one step of a sub-block spanning +-4 std (q4_k: 15 steps over
    // the range; q6_k: 31 steps over the largest magnitude).
    const step = dtype === 'q4_k' ? (8 * 0.02) / 15 : (4 * 0.02) / 31;
    assert.ok(worst < step, `${dtype}: worst error ${worst}`);
  }
});

test('zeros and constants quantize without NaN', () => {
  for (const dtype of ['q8_0', 'q4_0', 'q4_k', 'q6_k'] as const) {
    const z = roundTrip(dtype, new Float32Array(ROWS * COLS));
    assert.ok(z.every((v) => v === 0), `${dtype} zeros`);
    const c = roundTrip(dtype, new Float32Array(ROWS * COLS).fill(-0.75));
    assert.ok(c.every((v) => Math.abs(v + 0.75) < 0.01), `${dtype} constant: ${c[0]}`);
  }
});

test('dequantizeRow decodes exactly the rows of dequantize and checks its arguments', () => {
  const x = gaussian(ROWS * COLS, 4);
  for (const dtype of Object.keys(DTYPE_INFO) as DType[]) {
    const w = tensor(dtype, ROWS, COLS, quantize(dtype, x, ROWS, COLS));
    const all = dequantize(w);
    const row = new Float32Array(COLS + 3);
    for (let r = 0; r < ROWS; r++) {
      dequantizeRow(w, r, row);
      assert.deepEqual(row.subarray(0, COLS), all.subarray(r * COLS, (r + 1) * COLS), `${dtype} row ${r}`);
    }
    assert.throws(() => dequantizeRow(w, ROWS, row), RangeError);
    assert.throws(() => dequantizeRow(w, 0, new Float32Array(COLS - 1)), RangeError);
  }
  assert.throws(() => quantize('q8_0', new Float32Array(40), 1, 40), /multiple of 32/);
  assert.throws(() => quantize('q8_0', new Float32Array(30), 1, 32), /30 values/);
  assert.throws(() => dequantize(tensor('q8_0', 2, 32, new Uint8Array(34))), /cannot hold/);
});

test('round trips of the further types: relative RMS error of each format (as ggml quality goes)', () => {
  // Measured with these simple encoders on N(0, 0.02^2): q4_1 0.081, q5_0 0.044, q5_1 0.039,
  // q2_k 0.33, q3_k 0.16, q5_k 0.039, iq4_nl 0.082, iq4_xs 0.082. Bounds leave ~25% room; a wrong
  // bit layout gives errors of order 1.
  const x = gaussian(ROWS * COLS, 5, 0.02);
  const bounds = { q4_1: 0.1, q5_0: 0.055, q5_1: 0.05, q2_k: 0.42, q3_k: 0.2, q5_k: 0.05, iq4_nl: 0.1, iq4_xs: 0.1 } as const;
  for (const [dtype, maxRel] of Object.entries(bounds) as Array<[DType, number]>) {
    const y = roundTrip(dtype, x);
    let se = 0, sx = 0;
    for (let i = 0; i < x.length; i++) {
      se += (y[i]! - x[i]!) ** 2;
      sx += x[i]! ** 2;
    }
    const rel = Math.sqrt(se / sx);
    assert.ok(rel < maxRel, `${dtype}: relative RMS error ${rel}`);
    assert.ok(rel > 0, `${dtype} changed nothing`);
    const z = roundTrip(dtype, new Float32Array(ROWS * COLS));
    assert.ok(z.every((v) => v === 0), `${dtype} zeros`);
  }
});

test('hand-made blocks of the further types decode as ggml defines them', () => {
  // q5_0: d = 0.5, element 0 has nibble 3 and high bit 1 (3|16 = 19 -> 0.5*(19-16) = 1.5); element 17
  // has nibble 15 (high nibble of byte 1), high bit 0 -> 0.5*(15-16) = -0.5.
  const q50 = new Uint8Array(22);
  q50.set([0x00, 0x38], 0); // f16 0.5
  q50.set([0x01, 0, 0, 0], 2); // qh: bit 0
  q50[6] = 0x03;
  q50[7] = 0xf0;
  const a = dequantize(tensor('q5_0', 1, 32, q50));
  assert.equal(a[0], 1.5);
  assert.equal(a[17], -0.5);
  assert.equal(a[1], -8, 'nibble 0, no high bit: 0.5*(0-16)');
  // iq4_nl: d = 1, element 0 nibble 0 -> -127, element 16 nibble 15 -> 113.
  const nl = new Uint8Array(18);
  nl.set([0x00, 0x3c], 0); // f16 1.0
  nl[2] = 0xf0;
  const b = dequantize(tensor('iq4_nl', 1, 32, nl));
  assert.equal(b[0], -127);
  assert.equal(b[16], 113);
  // q2_k: d = 1, dmin = 1; sub-block 0 scale 2 min 1; element 0 q = 3 -> 2*3 - 1 = 5; element 32
  // (same byte, bits 2-3) q = 1, sub-block 2 scale 0 min 0 -> 0.
  const q2 = new Uint8Array(84);
  q2[0] = 0x12;
  q2[16] = 0x07; // element 0: 3, element 32: 1
  q2.set([0x00, 0x3c, 0x00, 0x3c], 80);
  const c = dequantize(tensor('q2_k', 1, 256, q2));
  assert.equal(c[0], 5);
  assert.equal(c[32], 0);
  assert.equal(c[1], -1, 'q 0 in sub-block 0: 2*0 - 1');
});
