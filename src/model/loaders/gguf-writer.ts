// GGUF writer (version 3, little-endian; layout described in gguf.ts). GGUF stores a type with every
// metadata value, and llama.cpp checks those types (a u32 where it expects one, a string array for
// tokens...), so callers state each value's type explicitly: `ggufValue.u32(512)`,
// `ggufValue.array('string', pieces)`. Tensor data may be given lazily so a large model can be
// generated and written one tensor at a time.

import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { DTYPE_INFO, isDType } from '../kernels/quant.js';
import type { DType } from '../weights.js';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VALUE_TYPE, type GgufValueTypeName } from './gguf.js';

export type GgufScalarTypeName = Exclude<GgufValueTypeName, 'array'>;
type ScalarJs = number | bigint | boolean | string;

export type GgufTypedValue =
  | { type: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64'; value: number }
  | { type: 'u64' | 'i64'; value: number | bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | GgufTypedArray;

export type GgufTypedArray =
  | { type: 'array'; itemType: GgufScalarTypeName; value: readonly ScalarJs[] }
  | { type: 'array'; itemType: 'array'; value: readonly GgufTypedArray[] };

/** Constructors for typed metadata values. */
export const ggufValue = {
  u8: (value: number): GgufTypedValue => ({ type: 'u8', value }),
  i8: (value: number): GgufTypedValue => ({ type: 'i8', value }),
  u16: (value: number): GgufTypedValue => ({ type: 'u16', value }),
  i16: (value: number): GgufTypedValue => ({ type: 'i16', value }),
  u32: (value: number): GgufTypedValue => ({ type: 'u32', value }),
  i32: (value: number): GgufTypedValue => ({ type: 'i32', value }),
  u64: (value: number | bigint): GgufTypedValue => ({ type: 'u64', value }),
  i64: (value: number | bigint): GgufTypedValue => ({ type: 'i64', value }),
  f32: (value: number): GgufTypedValue => ({ type: 'f32', value }),
  f64: (value: number): GgufTypedValue => ({ type: 'f64', value }),
  bool: (value: boolean): GgufTypedValue => ({ type: 'bool', value }),
  string: (value: string): GgufTypedValue => ({ type: 'string', value }),
  array: (itemType: GgufScalarTypeName, value: readonly ScalarJs[]): GgufTypedArray => ({ type: 'array', itemType, value }),
  arrayOfArrays: (value: readonly GgufTypedArray[]): GgufTypedArray => ({ type: 'array', itemType: 'array', value }),
};

export interface GgufTensorSpec {
  name: string;
  /** A supported dtype, or a raw ggml_type id (written as is, size unchecked: for crafting test files). */
  type: DType | number;
  /** ggml ne order: dims[0] is the row length (cols), dims[1] the row count. */
  dims: readonly number[];
  /**
   * The tensor's bytes, or a function producing them when the writer reaches this tensor, or
   * 'zeros': all zero, left as a hole in the file (sparse: takes no disk space; for tests of large files).
   */
  data: Uint8Array | (() => Uint8Array) | 'zeros';
}

export interface GgufSpec {
  /** Written in insertion order. */
  metadata: Record<string, GgufTypedValue> | ReadonlyArray<readonly [string, GgufTypedValue]>;
  tensors: readonly GgufTensorSpec[];
  /** Data alignment (default 32; any other value is also written as general.alignment). */
  alignment?: number;
  /** 3 (default) or 2; both share this little-endian layout. */
  version?: 2 | 3;
}

/** Appends little-endian fields into growing chunks. */
class ByteWriter {
  private chunks: Uint8Array[] = [];
  private cur = new Uint8Array(1 << 16);
  private dv = new DataView(this.cur.buffer);
  private at = 0;
  length = 0;

  private room(n: number): void {
    if (this.at + n <= this.cur.length) return;
    this.chunks.push(this.cur.subarray(0, this.at));
    this.cur = new Uint8Array(Math.max(1 << 16, n));
    this.dv = new DataView(this.cur.buffer);
    this.at = 0;
  }
  u8(v: number): void { this.room(1); this.dv.setUint8(this.at, v); this.at += 1; this.length += 1; }
  i8(v: number): void { this.room(1); this.dv.setInt8(this.at, v); this.at += 1; this.length += 1; }
  u16(v: number): void { this.room(2); this.dv.setUint16(this.at, v, true); this.at += 2; this.length += 2; }
  i16(v: number): void { this.room(2); this.dv.setInt16(this.at, v, true); this.at += 2; this.length += 2; }
  u32(v: number): void { this.room(4); this.dv.setUint32(this.at, v, true); this.at += 4; this.length += 4; }
  i32(v: number): void { this.room(4); this.dv.setInt32(this.at, v, true); this.at += 4; this.length += 4; }
  f32(v: number): void { this.room(4); this.dv.setFloat32(this.at, v, true); this.at += 4; this.length += 4; }
  f64(v: number): void { this.room(8); this.dv.setFloat64(this.at, v, true); this.at += 8; this.length += 8; }
  u64(v: bigint): void { this.room(8); this.dv.setBigUint64(this.at, v, true); this.at += 8; this.length += 8; }
  i64(v: bigint): void { this.room(8); this.dv.setBigInt64(this.at, v, true); this.at += 8; this.length += 8; }
  bytes(b: Uint8Array): void { this.room(b.length); this.cur.set(b, this.at); this.at += b.length; this.length += b.length; }
  string(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(BigInt(b.length));
    this.bytes(b);
  }
  zeros(n: number): void { this.bytes(new Uint8Array(n)); }
  finish(): Uint8Array {
    this.chunks.push(this.cur.subarray(0, this.at));
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

const INT_RANGES: Record<string, [number, number]> = {
  u8: [0, 0xff], i8: [-0x80, 0x7f], u16: [0, 0xffff], i16: [-0x8000, 0x7fff], u32: [0, 0xffffffff], i32: [-0x80000000, 0x7fffffff],
};

function writeScalar(w: ByteWriter, type: GgufScalarTypeName, v: ScalarJs, key: string): void {
  const bad = (): never => {
    throw new TypeError(`GGUF metadata '${key}': ${typeof v} ${String(v)} is not a valid ${type}`);
  };
  switch (type) {
    case 'u8': case 'i8': case 'u16': case 'i16': case 'u32': case 'i32': {
      const [lo, hi] = INT_RANGES[type]!;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) bad();
      w[type](v as number);
      return;
    }
    case 'u64': case 'i64': {
      if (typeof v === 'number' && !Number.isSafeInteger(v)) bad();
      if (typeof v !== 'number' && typeof v !== 'bigint') bad();
      const big = BigInt(v as number | bigint);
      if (type === 'u64' ? big < 0n || big >= 1n << 64n : big < -(1n << 63n) || big >= 1n << 63n) bad();
      w[type](big);
      return;
    }
    case 'f32': case 'f64':
      if (typeof v !== 'number') bad();
      w[type](v as number);
      return;
    case 'bool':
      if (typeof v !== 'boolean') bad();
      w.u8(v ? 1 : 0);
      return;
    case 'string':
      if (typeof v !== 'string') bad();
      w.string(v as string);
      return;
  }
}

function writeArray(w: ByteWriter, a: GgufTypedArray, key: string): void {
  w.u32(GGUF_VALUE_TYPE[a.itemType]);
  w.u64(BigInt(a.value.length));
  if (a.itemType === 'array') for (const inner of a.value as readonly GgufTypedArray[]) writeArray(w, inner, key);
  else for (const v of a.value as readonly ScalarJs[]) writeScalar(w, a.itemType, v, key);
}

function ggmlTypeOf(t: GgufTensorSpec): number {
  return typeof t.type === 'number' ? t.type : DTYPE_INFO[t.type].ggmlType;
}

/** Byte size of a tensor's data: computed for known dtypes, taken from the data for raw ids. */
function tensorSize(t: GgufTensorSpec): number {
  if (typeof t.type === 'string') {
    if (!isDType(t.type)) throw new TypeError(`tensor '${t.name}': unknown dtype ${String(t.type)}`);
    const { blockSize, blockBytes } = DTYPE_INFO[t.type];
    if (t.dims.length < 1 || t.dims.length > 4 || t.dims.some((d) => !Number.isInteger(d) || d < 1)) {
      throw new RangeError(`tensor '${t.name}': bad dims [${t.dims.join(', ')}]`);
    }
    if (t.dims[0]! % blockSize !== 0) throw new RangeError(`tensor '${t.name}': row length ${t.dims[0]} is not a multiple of ${blockSize} (${t.type})`);
    return (t.dims[0]! / blockSize) * blockBytes * t.dims.slice(1).reduce((a, b) => a * b, 1);
  }
  if (typeof t.data === 'function' || t.data === 'zeros') throw new TypeError(`tensor '${t.name}': a raw ggml type needs its data up front`);
  return t.data.byteLength;
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Everything before the data section, padded to the alignment, plus each tensor's size and offset. */
function encodeHeader(spec: GgufSpec): { header: Uint8Array; sizes: number[]; offsets: number[]; alignment: number } {
  const alignment = spec.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new RangeError(`GGUF alignment must be a positive power of two, got ${alignment}`);
  }
  const entries: Array<readonly [string, GgufTypedValue]> = Array.isArray(spec.metadata)
    ? [...(spec.metadata as ReadonlyArray<readonly [string, GgufTypedValue]>)]
    : Object.entries(spec.metadata as Record<string, GgufTypedValue>);
  if (alignment !== GGUF_DEFAULT_ALIGNMENT && !entries.some(([k]) => k === 'general.alignment')) {
    entries.push(['general.alignment', ggufValue.u32(alignment)]);
  }
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(spec.version ?? 3);
  w.u64(BigInt(spec.tensors.length));
  w.u64(BigInt(entries.length));
  for (const [key, v] of entries) {
    w.string(key);
    w.u32(GGUF_VALUE_TYPE[v.type]);
    if (v.type === 'array') writeArray(w, v, key);
    else writeScalar(w, v.type, v.value, key);
  }
  const sizes: number[] = [];
  const offsets: number[] = [];
  let offset = 0;
  for (const t of spec.tensors) {
    const size = tensorSize(t);
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(BigInt(d));
    w.u32(ggmlTypeOf(t));
    w.u64(BigInt(offset));
    sizes.push(size);
    offsets.push(offset);
    offset = alignUp(offset + size, alignment);
  }
  w.zeros(alignUp(w.length, alignment) - w.length);
  return { header: w.finish(), sizes, offsets, alignment };
}

function tensorData(t: GgufTensorSpec, size: number): Uint8Array {
  const data = t.data === 'zeros' ? new Uint8Array(size) : typeof t.data === 'function' ? t.data() : t.data;
  if (data.byteLength !== size) throw new RangeError(`tensor '${t.name}': ${data.byteLength} bytes given, ${size} expected for ${t.type} [${t.dims.join(', ')}]`);
  return data;
}

/** The whole file in memory (for small files and tests). */
export function encodeGguf(spec: GgufSpec): Uint8Array {
  const { header, sizes, offsets, alignment } = encodeHeader(spec);
  const total = header.length + (spec.tensors.length ? alignUp(offsets.at(-1)! + sizes.at(-1)!, alignment) : 0);
  const out = new Uint8Array(total);
  out.set(header, 0);
  spec.tensors.forEach((t, i) => out.set(tensorData(t, sizes[i]!), header.length + offsets[i]!));
  return out;
}

/** Writes the file tensor by tensor, so only one tensor's data need exist at a time. */
export function writeGgufFile(path: string, spec: GgufSpec): void {
  const { header, sizes, offsets, alignment } = encodeHeader(spec);
  const fd = openSync(path, 'w');
  try {
    writeAt(fd, header, 0);
    spec.tensors.forEach((t, i) => {
      if (t.data !== 'zeros') writeAt(fd, tensorData(t, sizes[i]!), header.length + offsets[i]!);
    });
    // Padding and 'zeros' tensors are holes; the length makes the last of them part of the file.
    const end = header.length + (spec.tensors.length ? alignUp(offsets.at(-1)! + sizes.at(-1)!, alignment) : 0);
    ftruncateSync(fd, end);
  } finally {
    closeSync(fd);
  }
}

function writeAt(fd: number, b: Uint8Array, position: number): void {
  let o = 0;
  while (o < b.byteLength) o += writeSync(fd, b, o, b.byteLength - o, position + o);
}
