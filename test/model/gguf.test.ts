// GGUF writer and reader: round trips of every value type and tensor type, alignment, version 2,
// an independent parser (node-llama-cpp's readGgufFileInfo) reading what we write, and clear
// ModelFileErrors for every kind of broken file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { readGgufFileInfo } from 'node-llama-cpp';
import { parseGguf, readGguf, readGgufHeader, ggmlTypeName } from '../../src/model/loaders/gguf.js';
import { encodeGguf, ggufValue, writeGgufFile, type GgufSpec } from '../../src/model/loaders/gguf-writer.js';
import { ModelFileError } from '../../src/model/loaders/errors.js';
import { quantize } from '../../src/model/kernels/quant.js';
import { Xoshiro128 } from '../../src/model/make-model.js';

const dir = mkdtempSync(join(tmpdir(), 'stepwise-gguf-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function values(n: number, seed: number): Float32Array {
  const x = new Float32Array(n);
  new Xoshiro128(seed).fillNormal(x, 1);
  return x;
}

const f32Data = new Uint8Array(values(12, 1).buffer);
const q8Data = quantize('q8_0', values(128, 2), 2, 64);

function sampleSpec(): GgufSpec {
  return {
    metadata: [
      ['general.architecture', ggufValue.string('llama')],
      ['general.name', ggufValue.string('tëst ▁model ✓')],
      ['u8', ggufValue.u8(255)],
      ['i8', ggufValue.i8(-128)],
      ['u16', ggufValue.u16(65535)],
      ['i16', ggufValue.i16(-32768)],
      ['u32', ggufValue.u32(4294967295)],
      ['i32', ggufValue.i32(-2147483648)],
      ['f32', ggufValue.f32(0.1)],
      ['f64', ggufValue.f64(0.1)],
      ['bool.t', ggufValue.bool(true)],
      ['bool.f', ggufValue.bool(false)],
      ['u64.small', ggufValue.u64(2 ** 53 - 1)],
      ['u64.big', ggufValue.u64(2n ** 60n + 1n)],
      ['i64.neg', ggufValue.i64(-5)],
      ['i64.big', ggufValue.i64(-(2n ** 62n))],
      ['arr.str', ggufValue.array('string', ['a', '', '<0x0A>', '▁the'])],
      ['arr.f32', ggufValue.array('f32', [0, -1.5, 3.25])],
      ['arr.i32', ggufValue.array('i32', [1, -2, 3])],
      ['arr.empty', ggufValue.array('u8', [])],
      ['arr.nested', ggufValue.arrayOfArrays([ggufValue.array('u16', [1, 2]), ggufValue.array('string', ['x']), ggufValue.arrayOfArrays([])])],
    ],
    tensors: [
      { name: 'a.f32', type: 'f32', dims: [4, 3], data: f32Data },
      { name: 'b.q8_0', type: 'q8_0', dims: [64, 2], data: () => q8Data },
      { name: 'c.vec', type: 'f32', dims: [3], data: new Uint8Array(new Float32Array([1, 2, 3]).buffer) },
    ],
  };
}

const EXPECTED_METADATA = {
  'general.architecture': 'llama',
  'general.name': 'tëst ▁model ✓',
  u8: 255,
  i8: -128,
  u16: 65535,
  i16: -32768,
  u32: 4294967295,
  i32: -2147483648,
  f32: Math.fround(0.1),
  f64: 0.1,
  'bool.t': true,
  'bool.f': false,
  'u64.small': 2 ** 53 - 1,
  'u64.big': 2n ** 60n + 1n,
  'i64.neg': -5,
  'i64.big': -(2n ** 62n),
  'arr.str': ['a', '', '<0x0A>', '▁the'],
  'arr.f32': [0, -1.5, 3.25],
  'arr.i32': [1, -2, 3],
  'arr.empty': [],
  'arr.nested': [[1, 2], ['x'], []],
};

test('write then read: every metadata type, tensors as views of one buffer', () => {
  const bytes = encodeGguf(sampleSpec());
  const f = parseGguf(bytes, 'mem.gguf');
  assert.equal(f.version, 3);
  assert.equal(f.alignment, 32);
  assert.deepEqual({ ...f.metadata }, EXPECTED_METADATA);
  assert.equal(f.tensors.size, 3);
  const a = f.tensors.get('a.f32')!;
  assert.deepEqual(a.dims, [4, 3]);
  assert.equal(a.dtype, 'f32');
  assert.deepEqual(a.data, f32Data);
  assert.equal(a.data.buffer, bytes.buffer, 'tensor data is a view, not a copy');
  const b = f.tensors.get('b.q8_0')!;
  assert.equal(b.dtype, 'q8_0');
  assert.equal(b.ggmlType, 8);
  assert.deepEqual(b.data, q8Data);
  assert.equal(b.byteLength, 2 * 68);
  for (const t of f.tensors.values()) {
    assert.equal(t.offset % 32, 0);
    assert.equal((f.dataOffset + t.offset) % 32, 0);
  }
  assert.deepEqual([...new Float32Array(f.tensors.get('c.vec')!.data.slice().buffer)], [1, 2, 3]);
});

test('custom alignment is written as general.alignment and honoured; version 2 reads the same', () => {
  const spec = { ...sampleSpec(), alignment: 64, version: 2 as const };
  const f = parseGguf(encodeGguf(spec));
  assert.equal(f.version, 2);
  assert.equal(f.alignment, 64);
  assert.equal(f.metadata['general.alignment'], 64);
  for (const t of f.tensors.values()) assert.equal((f.dataOffset + t.offset) % 64, 0);
  assert.deepEqual(f.tensors.get('b.q8_0')!.data, q8Data);
});

test('file writer, file reader and header-only reader agree; node-llama-cpp parses our files', async () => {
  const path = join(dir, 'sample.gguf');
  writeGgufFile(path, sampleSpec());
  const whole = readGguf(path);
  assert.deepEqual(readFileSync(path), Buffer.from(encodeGguf(sampleSpec())), 'streamed file equals the in-memory encoding');
  const header = readGgufHeader(path);
  assert.deepEqual({ ...header.metadata }, { ...whole.metadata });
  assert.deepEqual(header.tensorInfos, whole.tensorInfos);
  assert.equal(header.dataOffset, whole.dataOffset);

  const info = await readGgufFileInfo(path, { logWarnings: false });
  assert.equal(info.version, 3);
  assert.equal(info.tensorCount, 3);
  const md = info.metadata as unknown as Record<string, any>;
  assert.equal(md.general.architecture, 'llama');
  assert.equal(md.general.name, 'tëst ▁model ✓');
  assert.deepEqual(md.arr.str, ['a', '', '<0x0A>', '▁the']);
  assert.equal(BigInt(md.u64.big), 2n ** 60n + 1n);
  assert.deepEqual(
    info.tensorInfo!.map((t) => [t.name, t.dimensions.map(Number), t.ggmlType, Number(t.offset)]),
    whole.tensorInfos.map((t) => [t.name, t.dims, t.ggmlType, t.offset]),
  );
});

test('a large file is read header-first without its data', () => {
  // 4 MiB of tensor data after a small header: the header reader must not need it.
  const path = join(dir, 'big.gguf');
  const big = new Uint8Array(4 << 20);
  writeGgufFile(path, { metadata: { k: ggufValue.u32(7) }, tensors: [{ name: 'big', type: 'f32', dims: [1 << 20], data: big }] });
  const h = readGgufHeader(path);
  assert.equal(h.metadata.k, 7);
  assert.equal(h.tensorInfos[0]!.byteLength, 4 << 20);
  // A header larger than the first read (1 MiB) is still read whole.
  const pieces = Array.from({ length: 120_000 }, (_, i) => `piece-${i}`);
  const path2 = join(dir, 'bigheader.gguf');
  writeGgufFile(path2, { metadata: { 'tokenizer.ggml.tokens': ggufValue.array('string', pieces) }, tensors: [] });
  assert.deepEqual(readGgufHeader(path2).metadata['tokenizer.ggml.tokens'], pieces);
});

// ---------------------------------------------------------------------------------------------
// Broken files.

function expectFileError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ModelFileError, `expected ModelFileError, got ${(e as Error)?.name}: ${(e as Error)?.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

test('missing file, directory, bad magic, unsupported version', () => {
  const missing = join(dir, 'nope.gguf');
  expectFileError(() => readGguf(missing), new RegExp(`${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: no such file`));
  expectFileError(() => readGgufHeader(missing), /no such file/);
  expectFileError(() => readGguf(dir), /is a directory/);

  const good = encodeGguf(sampleSpec());
  const badMagic = good.slice();
  badMagic.set([0x47, 0x47, 0x4d, 0x4c], 0); // "GGML"
  expectFileError(() => parseGguf(badMagic, 'x.gguf'), /x\.gguf: not a GGUF file: magic bytes are 47 47 4d 4c/);

  for (const [version, pattern] of [[1, /unsupported GGUF version 1/], [4, /unsupported GGUF version 4/], [0x03000000, /big-endian/]] as const) {
    const b = good.slice();
    new DataView(b.buffer).setUint32(4, version, true);
    expectFileError(() => parseGguf(b), pattern);
  }
});

test('every truncation of a valid file is a ModelFileError naming what ran out', () => {
  const good = encodeGguf(sampleSpec());
  const f = parseGguf(good);
  const lastTensorEnd = Math.max(...f.tensorInfos.map((t) => f.dataOffset + t.offset + t.byteLength));
  for (let n = 0; n < lastTensorEnd; n++) {
    expectFileError(() => parseGguf(good.subarray(0, n), 'cut.gguf'), n < 4 ? /not a GGUF file|truncated/ : /truncated/);
  }
  expectFileError(() => parseGguf(good.subarray(0, f.dataOffset + 10)), /truncated GGUF file: data of tensor 'a\.f32' ends at byte/);
  const nameEnd = Buffer.from(good).indexOf('c.vec') + 5;
  expectFileError(() => parseGguf(good.subarray(0, nameEnd + 2)), /truncated GGUF file: dimension count of tensor 'c\.vec' at byte \d+ needs 4 bytes/);
  const named = encodeGguf({ metadata: { 'general.name': ggufValue.string('x'.repeat(100)) }, tensors: [] });
  expectFileError(() => parseGguf(named.subarray(0, 90)), /length of metadata 'general\.name' at byte 48 is 100, more than the 34 bytes left in the file can hold \(truncated/);
  // A truncated file on disk fails the same way through the header reader.
  const path = join(dir, 'cut.gguf');
  writeFileSync(path, good.subarray(0, lastTensorEnd - 1));
  expectFileError(() => readGgufHeader(path), /truncated/);
  expectFileError(() => readGguf(path), /truncated/);
});

test('unsupported tensor types are named with their ggml name and id', () => {
  const spec = sampleSpec();
  spec.tensors = [...spec.tensors, { name: 'blk.0.attn_q.weight', type: 16, dims: [256, 1], data: new Uint8Array(66) }];
  expectFileError(() => parseGguf(encodeGguf(spec), 'q5.gguf'), /tensor 'blk\.0\.attn_q\.weight' has unsupported ggml type IQ2_XXS \(id 16\); supported: F32, F16, Q4_0, Q4_1, Q5_0/);
  spec.tensors = [{ name: 'weird', type: 99, dims: [4], data: new Uint8Array(4) }];
  expectFileError(() => parseGguf(encodeGguf(spec)), /unsupported ggml type unknown \(id 99\)/);
  assert.equal(ggmlTypeName(13), 'Q5_K');
});

test('absurd counts, lengths and shapes are rejected before allocating anything', () => {
  const good = encodeGguf(sampleSpec());
  const patch = (offset: number, v: bigint) => {
    const b = good.slice();
    new DataView(b.buffer).setBigUint64(offset, v, true);
    return b;
  };
  expectFileError(() => parseGguf(patch(8, 1n << 40n)), /tensor count at byte 8 is 1099511627776, more than the \d+ bytes left in the file can hold/);
  expectFileError(() => parseGguf(patch(16, 0xffffffffffffffffn)), /metadata key\/value count .* can hold/);
  expectFileError(() => parseGguf(patch(24, 1n << 50n)), /length of key of metadata entry 0 .* can hold/);

  const one = (tensor: Parameters<typeof encodeGguf>[0]['tensors'][number], meta = {}) => encodeGguf({ metadata: meta, tensors: [tensor] });
  expectFileError(() => parseGguf(one({ name: 't', type: 0, dims: [1, 1, 1, 1, 1], data: new Uint8Array(4) })), /tensor 't' has 5 dimensions/);
  expectFileError(() => parseGguf(one({ name: 't', type: 8, dims: [33], data: new Uint8Array(34) })), /row length 33 is not a multiple of the q8_0 block size 32/);
  expectFileError(() => parseGguf(one({ name: 't', type: 0, dims: [1 << 30, 1 << 30, 1 << 30], data: new Uint8Array(4) })), /tensor 't' has absurd dimensions/);
  expectFileError(() => parseGguf(one({ name: 't', type: 0, dims: [1 << 20, 1 << 20], data: new Uint8Array(4) })), /truncated GGUF file: data of tensor 't' ends at byte/);
  expectFileError(() => parseGguf(encodeGguf({ metadata: { 'general.alignment': ggufValue.u32(3) }, tensors: [] })), /general\.alignment must be a positive power of two/);
});

test('corrupt metadata: unknown value types, bad booleans, duplicate keys and tensors, misaligned offsets', () => {
  const b1 = encodeGguf({ metadata: { key: ggufValue.u32(1) }, tensors: [] });
  // Value type field of the first entry: after the 24-byte header and the key (8 + 3 bytes).
  new DataView(b1.buffer).setUint32(24 + 8 + 3, 77, true);
  expectFileError(() => parseGguf(b1), /metadata 'key' has unknown value type 77/);

  const b2 = encodeGguf({ metadata: { flag: ggufValue.bool(true) }, tensors: [] });
  b2[24 + 8 + 4 + 4] = 2;
  expectFileError(() => parseGguf(b2), /metadata 'flag' has boolean byte 2/);

  expectFileError(() => parseGguf(encodeGguf({ metadata: [['k', ggufValue.u8(1)], ['k', ggufValue.u8(2)]], tensors: [] })), /metadata key 'k' appears twice/);
  const t = { name: 'dup', type: 'f32' as const, dims: [8], data: new Uint8Array(32) };
  expectFileError(() => parseGguf(encodeGguf({ metadata: {}, tensors: [t, t] })), /tensor 'dup' appears twice/);

  const b3 = encodeGguf({ metadata: {}, tensors: [t] });
  // The tensor's offset is the last 8 bytes of its info: 24 + (8 + 3 name) + 4 n_dims + 8 dim + 4 type.
  new DataView(b3.buffer).setBigUint64(24 + 11 + 4 + 8 + 4, 4n, true);
  expectFileError(() => parseGguf(b3), /tensor 'dup' data offset 4 is not a multiple of the alignment 32/);
});

test('random corruption never escapes as anything but a ModelFileError', () => {
  const good = encodeGguf(sampleSpec());
  const rng = new Xoshiro128(99);
  const headerEnd = parseGguf(good).dataOffset;
  for (let iter = 0; iter < 400; iter++) {
    const b = good.slice();
    const flips = 1 + (rng.nextU32() % 4);
    for (let k = 0; k < flips; k++) b[rng.nextU32() % headerEnd] = rng.nextU32() & 0xff;
    try {
      parseGguf(b);
    } catch (e) {
      assert.ok(e instanceof ModelFileError, `iteration ${iter}: ${(e as Error).name}: ${(e as Error).message}`);
    }
  }
});
