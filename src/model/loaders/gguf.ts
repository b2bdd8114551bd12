// GGUF reader (versions 2 and 3, little-endian). A GGUF file is:
//
//   magic "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//   kv_count x (string key | u32 value_type | value)
//   tensor_count x (string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset)
//   padding to general.alignment (default 32) | data section (each tensor at data_start + offset)
//
// Strings are u64 length + UTF-8 bytes (no terminator). Version 1 used u32 counts and lengths and
// is not read. The whole file is read into one Buffer; every tensor's data is a Uint8Array view into
// it, so a model is held in memory exactly once.

import { closeSync, readFileSync, readSync, statSync } from 'node:fs';
import { ModelFileError } from './errors.js';
import { DTYPE_INFO } from '../kernels/quant.js';
import { fileSystemError, openModelBytes, openModelFile } from './model-bytes.js';
import type { DType } from '../weights.js';

/** A metadata value as read: integers beyond 2^53 are bigint, every other number is a number. */
export type GgufValue = number | bigint | boolean | string | GgufValue[];

/** GGUF metadata value type ids. */
export const GGUF_VALUE_TYPE = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

export type GgufValueTypeName = keyof typeof GGUF_VALUE_TYPE;

/** "GGUF" read as a little-endian u32. */
export const GGUF_MAGIC = 0x46554747;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** ggml_type names by id, so an unsupported type can be named in the error. */
const GGML_TYPE_NAMES: Record<number, string> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 9: 'Q8_1',
  10: 'Q2_K', 11: 'Q3_K', 12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K',
  16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S',
  23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64', 29: 'IQ1_M', 30: 'BF16',
  34: 'TQ1_0', 35: 'TQ2_0', 39: 'MXFP4',
};

export function ggmlTypeName(id: number): string {
  return GGML_TYPE_NAMES[id] ?? 'unknown';
}

const DTYPE_BY_GGML_TYPE = new Map<number, DType>(
  (Object.entries(DTYPE_INFO) as Array<[DType, (typeof DTYPE_INFO)[DType]]>).map(([d, info]) => [info.ggmlType, d]),
);

const SUPPORTED_TYPE_NAMES = [...DTYPE_BY_GGML_TYPE.keys()].sort((a, b) => a - b).map(ggmlTypeName).join(', ');

export function dtypeFromGgmlType(id: number): DType | undefined {
  return DTYPE_BY_GGML_TYPE.get(id);
}

/** ggml keeps at most 4 dimensions per tensor. */
const MAX_DIMS = 4;

export interface GgufTensorInfo {
  readonly name: string;
  /** ggml's ne: dims[0] is the contiguous (innermost) dimension. */
  readonly dims: readonly number[];
  readonly ggmlType: number;
  readonly dtype: DType;
  /** Byte offset from the start of the data section. */
  readonly offset: number;
  readonly byteLength: number;
}

export interface GgufTensor extends GgufTensorInfo {
  /** View into the file's buffer (no copy). */
  readonly data: Uint8Array;
}

/** Everything before the data section. */
export interface GgufHeader {
  readonly path: string;
  readonly version: number;
  /** Keys as written (e.g. 'llama.context_length'); a null-prototype object, so no key can clash with Object's. */
  readonly metadata: Record<string, GgufValue>;
  readonly tensorInfos: readonly GgufTensorInfo[];
  readonly alignment: number;
  /** Absolute byte offset of the data section. */
  readonly dataOffset: number;
  readonly fileSize: number;
}

export interface GgufFile extends GgufHeader {
  readonly tensors: ReadonlyMap<string, GgufTensor>;
}

/** Thrown inside the parser when a prefix of the file ran out; readGgufHeader then reads more. */
class NeedMoreBytes extends Error {}

/** A bounds-checked little-endian cursor over the file (or a prefix of it). */
class Cursor {
  pos = 0;
  private readonly dv: DataView;
  private readonly text: Buffer;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly path: string,
    /** Size of the whole file; bytes may be only its first part. */
    readonly fileSize: number,
  ) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Ensures n more bytes exist; `what` names the field for the truncation message. */
  need(n: number, what: string): void {
    if (this.pos + n <= this.bytes.byteLength) return;
    if (this.bytes.byteLength < this.fileSize) throw new NeedMoreBytes();
    throw new ModelFileError(this.path, `truncated GGUF file: ${what} at byte ${this.pos} needs ${n} bytes but the file ends at byte ${this.fileSize}`);
  }

  remainingInFile(): number {
    return this.fileSize - this.pos;
  }

  u8(what: string): number {
    this.need(1, what);
    return this.dv.getUint8(this.pos++);
  }
  i8(what: string): number {
    this.need(1, what);
    return this.dv.getInt8(this.pos++);
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.dv.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  i16(what: string): number {
    this.need(2, what);
    const v = this.dv.getInt16(this.pos, true);
    this.pos += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.dv.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  i32(what: string): number {
    this.need(4, what);
    const v = this.dv.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }
  f32(what: string): number {
    this.need(4, what);
    const v = this.dv.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }
  f64(what: string): number {
    this.need(8, what);
    const v = this.dv.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }
  u64Big(what: string): bigint {
    this.need(8, what);
    const v = this.dv.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }
  i64Big(what: string): bigint {
    this.need(8, what);
    const v = this.dv.getBigInt64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /** A u64 count or length that must fit the file: `minBytesEach` bytes per counted item. */
  count(what: string, minBytesEach: number): number {
    const at = this.pos;
    const v = this.u64Big(what);
    const limit = BigInt(Math.max(0, this.remainingInFile())) / BigInt(Math.max(1, minBytesEach));
    if (v > limit) {
      throw new ModelFileError(
        this.path,
        `${what} at byte ${at} is ${v}, more than the ${this.remainingInFile()} bytes left in the file can hold (truncated or corrupt GGUF file)`,
      );
    }
    return Number(v);
  }

  string(what: string): string {
    const len = this.count(`length of ${what}`, 1);
    this.need(len, what);
    const s = this.text.toString('utf8', this.pos, this.pos + len);
    this.pos += len;
    return s;
  }
}

/** Smallest encoding of one value of a type, to reject array counts that cannot fit. */
function minValueBytes(type: number): number {
  switch (type) {
    case GGUF_VALUE_TYPE.u8:
    case GGUF_VALUE_TYPE.i8:
    case GGUF_VALUE_TYPE.bool:
      return 1;
    case GGUF_VALUE_TYPE.u16:
    case GGUF_VALUE_TYPE.i16:
      return 2;
    case GGUF_VALUE_TYPE.u32:
    case GGUF_VALUE_TYPE.i32:
    case GGUF_VALUE_TYPE.f32:
      return 4;
    case GGUF_VALUE_TYPE.string:
    case GGUF_VALUE_TYPE.u64:
    case GGUF_VALUE_TYPE.i64:
    case GGUF_VALUE_TYPE.f64:
      return 8;
    case GGUF_VALUE_TYPE.array:
      return 12;
    default:
      return 1;
  }
}

function bigToValue(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function readValue(c: Cursor, type: number, key: string, path: string): GgufValue {
  switch (type) {
    case GGUF_VALUE_TYPE.u8:
      return c.u8(key);
    case GGUF_VALUE_TYPE.i8:
      return c.i8(key);
    case GGUF_VALUE_TYPE.u16:
      return c.u16(key);
    case GGUF_VALUE_TYPE.i16:
      return c.i16(key);
    case GGUF_VALUE_TYPE.u32:
      return c.u32(key);
    case GGUF_VALUE_TYPE.i32:
      return c.i32(key);
    case GGUF_VALUE_TYPE.f32:
      return c.f32(key);
    case GGUF_VALUE_TYPE.f64:
      return c.f64(key);
    case GGUF_VALUE_TYPE.u64:
      return bigToValue(c.u64Big(key));
    case GGUF_VALUE_TYPE.i64:
      return bigToValue(c.i64Big(key));
    case GGUF_VALUE_TYPE.bool: {
      const at = c.pos;
      const b = c.u8(key);
      if (b > 1) throw new ModelFileError(path, `metadata '${key}' has boolean byte ${b} at byte ${at} (must be 0 or 1)`);
      return b === 1;
    }
    case GGUF_VALUE_TYPE.string:
      return c.string(`metadata '${key}'`);
    case GGUF_VALUE_TYPE.array: {
      const itemType = c.u32(`item type of metadata '${key}'`);
      if (itemType > GGUF_VALUE_TYPE.f64) throw new ModelFileError(path, `metadata '${key}' is an array of unknown value type ${itemType}`);
      const n = c.count(`element count of metadata '${key}'`, minValueBytes(itemType));
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readValue(c, itemType, key, path);
      return out;
    }
    default:
      throw new ModelFileError(path, `metadata '${key}' has unknown value type ${type} (corrupt GGUF?)`);
  }
}

/** Bytes of a tensor of ggml type `dtype` with dims ne. */
function tensorByteLength(dtype: DType, dims: readonly number[], name: string, path: string): number {
  const { blockSize, blockBytes } = DTYPE_INFO[dtype];
  if (dims[0]! % blockSize !== 0) {
    throw new ModelFileError(path, `tensor '${name}': row length ${dims[0]} is not a multiple of the ${dtype} block size ${blockSize}`);
  }
  let n = (dims[0]! / blockSize) * blockBytes;
  for (let i = 1; i < dims.length; i++) n *= dims[i]!;
  if (!Number.isSafeInteger(n)) throw new ModelFileError(path, `tensor '${name}' has absurd dimensions [${dims.join(', ')}]`);
  return n;
}

/** Parses everything up to the data section; `bytes` may be a prefix of a file of `fileSize` bytes. */
function parseHeader(bytes: Uint8Array, path: string, fileSize: number): GgufHeader {
  const c = new Cursor(bytes, path, fileSize);
  if (fileSize < 4) throw new ModelFileError(path, `not a GGUF file: only ${fileSize} bytes`);
  const magic = c.u32('magic');
  if (magic !== GGUF_MAGIC) {
    const shown = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new ModelFileError(path, `not a GGUF file: magic bytes are ${shown}, expected 47 47 55 46 ("GGUF")`);
  }
  const version = c.u32('version');
  if (version !== 2 && version !== 3) {
    if (version >= 0x10000 && (version & 0xffff) === 0) {
      throw new ModelFileError(path, `big-endian GGUF files are not supported (version field reads ${version})`);
    }
    throw new ModelFileError(path, `unsupported GGUF version ${version} (only versions 2 and 3 are read)`);
  }
  // Smallest tensor info: 8-byte name length + 1 char + n_dims + one dim + type + offset.
  const tensorCount = c.count('tensor count', 29);
  // Smallest key/value: 8-byte key length + 1 char + 4-byte type + 1-byte value.
  const kvCount = c.count('metadata key/value count', 14);

  const metadata: Record<string, GgufValue> = Object.create(null);
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`key of metadata entry ${i}`);
    if (key in metadata) throw new ModelFileError(path, `metadata key '${key}' appears twice`);
    const type = c.u32(`value type of metadata '${key}'`);
    metadata[key] = readValue(c, type, key, path);
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  if ('general.alignment' in metadata) {
    const a = metadata['general.alignment'];
    if (typeof a !== 'number' || !Number.isInteger(a) || a <= 0 || (a & (a - 1)) !== 0) {
      throw new ModelFileError(path, `general.alignment must be a positive power of two, got ${String(a)}`);
    }
    alignment = a;
  }

  const tensorInfos: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`name of tensor ${i}`);
    if (names.has(name)) throw new ModelFileError(path, `tensor '${name}' appears twice`);
    names.add(name);
    const nDims = c.u32(`dimension count of tensor '${name}'`);
    if (nDims < 1 || nDims > MAX_DIMS) throw new ModelFileError(path, `tensor '${name}' has ${nDims} dimensions (must be 1..${MAX_DIMS})`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) {
      const v = c.u64Big(`dimension ${d} of tensor '${name}'`);
      if (v < 1n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ModelFileError(path, `tensor '${name}' has absurd dimension ${d} = ${v}`);
      dims.push(Number(v));
    }
    const ggmlType = c.u32(`type of tensor '${name}'`);
    const dtype = dtypeFromGgmlType(ggmlType);
    if (!dtype) {
      throw new ModelFileError(
        path,
        `tensor '${name}' has unsupported ggml type ${ggmlTypeName(ggmlType)} (id ${ggmlType}); supported: ${SUPPORTED_TYPE_NAMES}`,
      );
    }
    const offset = c.u64Big(`data offset of tensor '${name}'`);
    if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new ModelFileError(path, `tensor '${name}' has absurd data offset ${offset}`);
    if (offset % BigInt(alignment) !== 0n) {
      throw new ModelFileError(path, `tensor '${name}' data offset ${offset} is not a multiple of the alignment ${alignment}`);
    }
    tensorInfos.push({ name, dims, ggmlType, dtype, offset: Number(offset), byteLength: tensorByteLength(dtype, dims, name, path) });
  }

  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  for (const t of tensorInfos) {
    const end = dataOffset + t.offset + t.byteLength;
    if (end > fileSize) {
      throw new ModelFileError(
        path,
        `truncated GGUF file: data of tensor '${t.name}' ends at byte ${end} but the file has only ${fileSize} bytes`,
      );
    }
  }
  return { path, version, metadata, tensorInfos, alignment, dataOffset, fileSize };
}

/** Parses a whole GGUF file held in memory; tensor data are views into `bytes`. */
export function parseGguf(bytes: Uint8Array, path = '<buffer>'): GgufFile {
  const header = parseHeader(bytes, path, bytes.byteLength);
  const tensors = new Map<string, GgufTensor>();
  for (const t of header.tensorInfos) {
    const start = header.dataOffset + t.offset;
    tensors.set(t.name, { ...t, data: bytes.subarray(start, start + t.byteLength) });
  }
  return { ...header, tensors };
}

/** Reads a file into one Buffer, turning file-system errors into ModelFileErrors. */
export function readModelBytes(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw fileSystemError(path, e);
  }
}

/**
 * Reads a GGUF file: the header by reads, each tensor's data on first use as a view of the file's
 * memory mapping (or, without the native addon, read into its own buffer). No buffer holds the
 * whole file, so files over 2 and 4 GiB load, and tensors a model does not use cost nothing.
 */
export function readGguf(path: string): GgufFile {
  const header = readGgufHeader(path);
  const source = openModelBytes(path);
  const tensors = new Map<string, GgufTensor>();
  for (const t of header.tensorInfos) {
    let data: Uint8Array | undefined;
    const start = header.dataOffset + t.offset;
    tensors.set(t.name, Object.defineProperty({ ...t }, 'data', { enumerable: true, get: () => (data ??= source.bytes(start, t.byteLength)) }) as GgufTensor);
  }
  return { ...header, tensors };
}

/**
 * Reads only the metadata and tensor infos, without the tensor data: enough to learn a model's
 * configuration and tokenizer cheaply. Reads a growing prefix until the header fits.
 */
export function readGgufHeader(path: string): GgufHeader {
  const fd = openModelFile(path);
  try {
    const fileSize = statSync(path).size;
    let want = Math.min(fileSize, 1 << 20);
    for (;;) {
      const buf = Buffer.alloc(want);
      const got = readSync(fd, buf, 0, want, 0);
      try {
        return parseHeader(buf.subarray(0, got), path, fileSize);
      } catch (e) {
        if (!(e instanceof NeedMoreBytes) || got < want) {
          if (e instanceof NeedMoreBytes) throw new ModelFileError(path, 'file shrank while being read');
          throw e;
        }
      }
      want = Math.min(fileSize, want * 4);
    }
  } catch (e) {
    if (e instanceof ModelFileError) throw e;
    throw fileSystemError(path, e);
  } finally {
    closeSync(fd);
  }
}
