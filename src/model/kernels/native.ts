// The native kernels: a C++ addon (native/, built by scripts/build-native.mjs during npm install,
// one file per instruction-set level) with GEMMs that keep quantized weights quantized (integer
// dot products on int8 activations), paged attention with an online softmax, and a persistent
// thread pool. This file picks the variant this CPU runs best, loads it and adapts it to the
// `Kernels` interface; the addon checks every size and index itself, and its complaints are
// rethrown here as KernelArgumentError, the same error the TypeScript kernels throw.
//
// The kernels are synchronous: a call returns when the work is done. Run the model in a worker
// thread to keep an event loop free (the addon is context-aware and safe to load in several).

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { DType, WeightTensor } from './tensor.js';
import { KernelArgumentError } from './reference.js';
import type { AttentionMeta, Kernels, KvStorage } from './types.js';
import { kvArrayDtype, kvBytes, type KvCacheDtype } from './kv-dtype.js';

/** Thrown when the addon is not built or does not load in this Node. */
export class NativeKernelsUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NativeKernelsUnavailableError';
  }
}

/** The addon's own class (native/addon.cc); every method validates its arguments. */
interface AddonKernels {
  readonly threads: number;
  matmul(out: Float32Array, x: Float32Array, w: Uint8Array, dtype: number, rows: number, cols: number, M: number, name: string): void;
  matmulParts?(outs: Float32Array[], x: Float32Array, ws: Uint8Array[], dtype: number, rows: number[], cols: number, M: number, names: string[]): void;
  repack?(w: Uint8Array, dtype: number, rows: number, cols: number): { data: Uint8Array; dtype: number } | null;
  rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, M: number, dim: number, eps: number): void;
  rope(
    x: Float32Array, positions: Int32Array, M: number, nHeads: number, headDim: number, ropeDim: number, theta: number,
    neox: boolean, freqScale: number, freqFactors: Float32Array | null,
  ): void;
  siluMul(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void;
  geluMul(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void;
  addBias(x: Float32Array, bias: Float32Array, M: number, width: number): void;
  add(out: Float32Array, a: Float32Array, n: number): void;
  embed(out: Float32Array, table: Uint8Array, dtype: number, rows: number, cols: number, tokens: Int32Array, M: number, name: string): void;
  writeKv(kc: Uint8Array, vc: Uint8Array, kvDtype: number, numSlots: number, kvDim: number, k: Float32Array, v: Float32Array, numRows: number, slotMapping: Int32Array): void;
  attention(
    out: Float32Array, q: Float32Array, kc: Uint8Array, vc: Uint8Array, kvDtype: number, numBlocks: number, blockSize: number,
    nKvHeads: number, headDim: number, numRows: number, positions: Int32Array, rowSeq: Int32Array,
    blockTables: Int32Array, maxBlocksPerSeq: number, nHeads: number, scale?: number, window?: number,
  ): void;
  readBuffer(buf: Float32Array, reps: number): number;
  close(): void;
}

/** A read-only mapping of a whole file (native/mapped-file.cc), shared by every thread of the process. */
export interface NativeMappedFile {
  readonly size: number;
  /** Where the mapping starts: the same for every thread that maps the same file. */
  readonly address: bigint;
  /** Bytes offset..offset+length-1 of the file as an ArrayBuffer over the mapping (no copy). */
  view(offset: number, length: number): ArrayBuffer;
  /** Drops this handle; views made from it stay valid. */
  close(): void;
}

interface Addon {
  NativeKernels: new (threads: number) => AddonKernels;
  MappedFile: new (path: string) => NativeMappedFile;
  allocateKvBuffer?: (bytes: number) => ArrayBuffer;
  /** 'avx512-vnni', 'avx2' or 'scalar': which code path the addon was compiled with. */
  simd: string;
  /** CPU features (avx2, avx512vnni, ...) as the compiler's run-time check sees them (x86 only). */
  cpu?: Record<string, boolean>;
}

/** Codes the addon uses for weight types (native/dtypes.h). */
const DTYPE_CODES: Record<DType, number> = {
  f32: 0, f16: 1, bf16: 2, q8_0: 3, q4_0: 4, q4_k: 5, q6_k: 6,
  q4_1: 7, q5_0: 8, q5_1: 9, q2_k: 10, q3_k: 11, q5_k: 12, iq4_nl: 13, iq4_xs: 14,
};

/** Codes the addon uses for KV cache element types (native/kernels.h). */
const KV_DTYPE_CODES: Record<KvCacheDtype, number> = { f32: 0, f16: 1, q8_0: 2 };

const RELEASE_DIR = join('build', 'Release');

/** The addon variants binding.gyp builds, best first, with the CPU features each needs. */
const VARIANTS: readonly { name: IsaLevel; needs: readonly string[] }[] = [
  { name: 'avx512', needs: ['avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512vnni', 'avx512bf16', 'avx512vbmi'] },
  { name: 'avx2', needs: ['avx2', 'fma', 'f16c'] },
  { name: 'generic', needs: [] },
];

/** An instruction-set level the addon is built for (one .node file each). */
export type IsaLevel = 'avx512' | 'avx2' | 'generic';
export const ISA_LEVELS: readonly IsaLevel[] = ['avx512', 'avx2', 'generic'];

const variantFile = (v: IsaLevel): string => `stepwise_kernels_${v}.node`;

/**
 * Folders that may hold the addons: the package root's build/Release, 3 levels up from
 * src/model/kernels or 4 from dist/src/model/kernels.
 */
function releaseDirs(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  return [resolve(here, '..', '..', '..', RELEASE_DIR), resolve(here, '..', '..', '..', '..', RELEASE_DIR)];
}

/** The built generic addon's path (every build has it), or null when nothing is built. */
export function nativeAddonPath(): string | null {
  const override = process.env.STEPWISE_NATIVE_ADDON;
  if (override) return existsSync(resolve(override)) ? resolve(override) : null;
  for (const d of releaseDirs()) if (existsSync(join(d, variantFile('generic')))) return join(d, variantFile('generic'));
  return null;
}

let loaded: Addon | NativeKernelsUnavailableError | undefined;
let loadedPath: string | null = null;

/** The file of the variant in use (loading it if need be), or null when none loads. */
export function selectedNativeAddonPath(): string | null {
  try {
    loadNativeAddon();
    return loadedPath;
  } catch {
    return null;
  }
}

/** Loads the addon once per thread; throws NativeKernelsUnavailableError saying why it cannot. */
function loadNativeAddon(): Addon {
  if (loaded === undefined) loaded = tryLoad();
  if (loaded instanceof Error) throw loaded;
  return loaded;
}

function requireAddon(path: string): Addon {
  const addon = createRequire(import.meta.url)(path) as Addon;
  if (typeof addon.NativeKernels !== 'function') throw new Error('it does not export NativeKernels');
  return addon;
}

/**
 * Loads the generic build, asks it which features the CPU has, and loads the best variant the CPU
 * runs (or STEPWISE_ISA's, when set and runnable). STEPWISE_NATIVE_ADDON=/path/x.node loads that
 * one file instead, whatever it is.
 */
function tryLoad(): Addon | NativeKernelsUnavailableError {
  const path = nativeAddonPath();
  if (!path) {
    const where = process.env.STEPWISE_NATIVE_ADDON ?? releaseDirs().map((d) => join(d, variantFile('generic'))).join(' or ');
    return new NativeKernelsUnavailableError(
      `the native kernels are not built (no ${where}); ` +
        'build them with `node scripts/build-native.mjs` (needs a C++17 compiler, make and python3) or use the typescript backend',
    );
  }
  let current = path;
  try {
    const generic = requireAddon(path);
    loadedPath = path;
    if (process.env.STEPWISE_NATIVE_ADDON) return generic;
    const forced = process.env.STEPWISE_ISA;
    if (forced !== undefined && !(ISA_LEVELS as readonly string[]).includes(forced)) {
      return new NativeKernelsUnavailableError(`STEPWISE_ISA must be one of ${ISA_LEVELS.join(', ')}, got '${forced}'`);
    }
    const cpu = generic.cpu ?? {};
    const runnable = VARIANTS.filter((v) => v.needs.every((f) => cpu[f] === true));
    const wanted = forced ? runnable.filter((v) => v.name === forced) : runnable;
    if (forced && wanted.length === 0) {
      return new NativeKernelsUnavailableError(`STEPWISE_ISA=${forced}: this CPU lacks ${VARIANTS.find((v) => v.name === forced)!.needs.filter((f) => cpu[f] !== true).join(', ')}`);
    }
    for (const v of wanted) {
      if (v.name === 'generic') return generic;
      const file = join(dirname(path), variantFile(v.name));
      if (!existsSync(file)) {
        if (forced) return new NativeKernelsUnavailableError(`STEPWISE_ISA=${forced}: ${file} is not built (the compiler lacked its flags?)`);
        continue;
      }
      current = file;
      const addon = requireAddon(file);
      loadedPath = file;
      return addon;
    }
    return generic;
  } catch (e) {
    return new NativeKernelsUnavailableError(
      `the native kernels at ${current} do not load (${e instanceof Error ? e.message : String(e)}); ` +
        'rebuild them with `node scripts/build-native.mjs` or use the typescript backend',
    );
  }
}

/** The addon when it loads, else null (for the helpers below, whose callers have a fallback). */
function addonOrNull(): Addon | null {
  try {
    return loadNativeAddon();
  } catch {
    return null;
  }
}

/**
 * Maps `path` read-only through the addon, or returns null when the addon is unavailable (the
 * caller then reads the file instead). Errors opening or mapping the file are thrown.
 */
export function mapFileNative(path: string): NativeMappedFile | null {
  const addon = addonOrNull();
  return addon && typeof addon.MappedFile === 'function' ? new addon.MappedFile(path) : null;
}

/**
 * A zero-filled buffer of `bytes` for the KV cache with its pages populated up front
 * (native/kv-buffer.cc); null when the addon is unavailable (the caller allocates an ordinary one).
 */
export function allocateKvBufferNative(bytes: number): ArrayBuffer | null {
  const addon = addonOrNull();
  return addon && typeof addon.allocateKvBuffer === 'function' ? addon.allocateKvBuffer(bytes) : null;
}

/** Why the native kernels cannot be used here, or null when they can. */
export function nativeUnavailableReason(): string | null {
  try {
    loadNativeAddon();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

export interface NativeKernels extends Kernels {
  /** Threads the kernels use, the calling thread included. */
  readonly threads: number;
  /** The SIMD path in use: 'avx512-vnni', 'avx2' or 'scalar'. */
  readonly simd: string;
  /** Sums `buf` `reps` times with every thread (for measuring memory bandwidth); returns the sum. */
  readBuffer(buf: Float32Array, reps: number): number;
  /** Stops the thread pool now instead of at garbage collection; later calls throw. */
  close(): void;
}

function dtypeCode(kernel: string, w: WeightTensor): number {
  const code = DTYPE_CODES[w.dtype];
  if (code === undefined) throw new KernelArgumentError(kernel, `weight ${w.name} has unsupported dtype ${String(w.dtype)}`);
  return code;
}

function checkLayer(kernel: string, kv: KvStorage, layer: number): void {
  if (!Number.isInteger(layer) || layer < 0 || layer >= kv.nLayers) {
    throw new KernelArgumentError(kernel, `layer ${layer} outside 0..${kv.nLayers - 1}`);
  }
}

/** Runs an addon call, turning its argument complaints (TypeError/RangeError) into KernelArgumentError. */
function call(kernel: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) throw new KernelArgumentError(kernel, e.message);
    throw e;
  }
}

/**
 * Creates native kernels with their own thread pool. `threads` defaults to the machine's cores.
 * Throws NativeKernelsUnavailableError when the addon is not built.
 */
export function createNativeKernels(opts: { threads?: number } = {}): NativeKernels {
  const threads = opts.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
    throw new RangeError(`threads must be an integer from 1 to 256, got ${threads}`);
  }
  const addon = loadNativeAddon();
  const k = new addon.NativeKernels(threads);
  const name = `native-${addon.simd} (${threads} thread${threads === 1 ? '' : 's'})`;
  // Float and quantized weights interleaved 16 rows at a time, once
  // (native/qrepack.cc, AVX-512 build), for the outputs-in-lanes GEMMs; about the file's size
  // (an f32 model's matrices are copied whole). The original bytes stay for
  // embeddings and the TypeScript kernels, so memory grows by the repacked tensors' size
  // (STEPWISE_NO_REPACK=1 keeps the file's form only). Within rounding either way (tested).
  const INTERLEAVED = new Set(['f32', 'f16', 'bf16', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'iq4_nl', 'iq4_xs', 'q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k', 'q8_0']);
  const repacked = new WeakMap<WeightTensor, { data: Uint8Array; dtype: number }>();
  const repackedOf = (w: WeightTensor): { data: Uint8Array; dtype: number } => {
    let r = repacked.get(w);
    if (!r) {
      const code = dtypeCode('matmul', w);
      r = { data: w.data, dtype: code };
      if (INTERLEAVED.has(w.dtype) && typeof k.repack === 'function' && process.env.STEPWISE_NO_REPACK !== '1') {
        let packed: { data: Uint8Array; dtype: number } | null = null;
        call('matmul', () => {
          packed = k.repack!(w.data, code, w.rows, w.cols);
        });
        if (packed) r = packed;
      }
      repacked.set(w, r);
    }
    return r;
  };
  const matmul = (out: Float32Array, x: Float32Array, w: WeightTensor, M: number): void => {
    const r = repackedOf(w);
    call('matmul', () => k.matmul(out, x, r.data, r.dtype, w.rows, w.cols, M, w.name));
  };
  return {
    name,
    threads,
    simd: addon.simd,
    matmul,
    matmulMany(outs, x, ws, M) {
      if (outs.length !== ws.length) throw new KernelArgumentError('matmulMany', `${outs.length} outputs for ${ws.length} weights`);
      const rs = ws.map(repackedOf);
      // One call when the addon has it and the weights share a type and width (a Q4_K_M file's v is
      // often q6_k beside q4_k's q and k: those go one by one).
      const shared = typeof k.matmulParts === 'function' && ws.length <= 8 && rs.every((r, i) => r.dtype === rs[0]!.dtype && ws[i]!.cols === ws[0]!.cols);
      if (!shared) {
        for (let i = 0; i < ws.length; i++) matmul(outs[i]!, x, ws[i]!, M);
        return;
      }
      call('matmulMany', () =>
        k.matmulParts!(outs, x, rs.map((r) => r.data), rs[0]!.dtype, ws.map((w) => w.rows), ws[0]!.cols, M, ws.map((w) => w.name)),
      );
    },
    rmsnorm(out, x, weight, M, dim, eps) {
      call('rmsnorm', () => k.rmsnorm(out, x, weight, M, dim, eps));
    },
    rope(x, positions, M, nHeads, headDim, ropeDim, theta, opts = {}) {
      call('rope', () =>
        k.rope(x, positions, M, nHeads, headDim, ropeDim, theta, opts.style === 'neox', opts.freqScale ?? 1, opts.freqFactors ?? null),
      );
    },
    siluMul(out, gate, up, n) {
      call('siluMul', () => k.siluMul(out, gate, up, n));
    },
    geluMul(out, gate, up, n) {
      call('geluMul', () => k.geluMul(out, gate, up, n));
    },
    addBias(x, bias, M, width) {
      call('addBias', () => k.addBias(x, bias, M, width));
    },
    add(out, a, n) {
      call('add', () => k.add(out, a, n));
    },
    embed(out, table, tokens, M) {
      const code = dtypeCode('embed', table);
      call('embed', () => k.embed(out, table.data, code, table.rows, table.cols, tokens, M, table.name));
    },
    writeKv(kv: KvStorage, layer: number, kIn: Float32Array, vIn: Float32Array, meta: AttentionMeta) {
      checkLayer('writeKv', kv, layer);
      const kvDim = kv.nKvHeads * kv.headDim;
      const kc = kv.k[layer]!;
      call('writeKv', () =>
        k.writeKv(kvBytes(kc), kvBytes(kv.v[layer]!), KV_DTYPE_CODES[kvArrayDtype(kc)], kv.numBlocks * kv.blockSize, kvDim, kIn, vIn, meta.numRows, meta.slotMapping),
      );
    },
    attention(out, q, kv, layer, meta, nHeads, opts = {}) {
      checkLayer('attention', kv, layer);
      const kc = kv.k[layer]!;
      call('attention', () =>
        k.attention(
          out, q, kvBytes(kc), kvBytes(kv.v[layer]!), KV_DTYPE_CODES[kvArrayDtype(kc)], kv.numBlocks, kv.blockSize, kv.nKvHeads, kv.headDim,
          meta.numRows, meta.positions, meta.rowSeq, meta.blockTables, meta.maxBlocksPerSeq, nHeads, opts.scale, opts.window ?? 0,
        ),
      );
    },
    readBuffer(buf, reps) {
      let sum = 0;
      call('readBuffer', () => {
        sum = k.readBuffer(buf, reps);
      });
      return sum;
    },
    close() {
      k.close();
    },
  };
}
