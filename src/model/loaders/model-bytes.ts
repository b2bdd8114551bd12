// Where a model's tensor bytes come from: a memory mapping of the file when the native addon is
// there (no copy, shared by the main thread and the compute worker, any file size), otherwise
// reads of each tensor's bytes into its own buffer (the TypeScript fallback; any file size too,
// since no single buffer holds the whole file).

import { closeSync, openSync, readSync } from 'node:fs';
import { mapFileNative, type NativeMappedFile } from '../kernels/native.js';
import { ModelFileError } from './errors.js';

export interface ModelBytes {
  /** 'mmap' or 'read': how the bytes are held. */
  readonly kind: 'mmap' | 'read';
  /** Bytes offset..offset+length-1 of the file. */
  bytes(offset: number, length: number): Uint8Array;
  /** Releases this handle (views already handed out stay valid; later bytes() calls may fail). */
  close(): void;
}

/** STEPWISE_NO_MMAP=1 reads instead of mapping (to compare the two, or where mapping misbehaves). */
export function openModelBytes(path: string): ModelBytes {
  let mapped: NativeMappedFile | null = null;
  if (process.env.STEPWISE_NO_MMAP !== '1') {
    try {
      mapped = mapFileNative(path);
    } catch (e) {
      throw fileSystemError(path, e);
    }
  }
  if (mapped) {
    const m = mapped;
    return {
      kind: 'mmap',
      bytes: (offset, length) => new Uint8Array(m.view(offset, length)),
      close: () => m.close(),
    };
  }
  return {
    kind: 'read',
    bytes(offset, length) {
      // Opened per call, so a loaded model holds no descriptor.
      const fd = openModelFile(path);
      try {
        const out = Buffer.allocUnsafeSlow(length);
        let done = 0;
        while (done < length) {
          const got = readSync(fd, out, done, Math.min(length - done, 1 << 30), offset + done);
          if (got === 0) throw new ModelFileError(path, `file ended at byte ${offset + done} while reading ${length} bytes at ${offset}`);
          done += got;
        }
        return new Uint8Array(out.buffer, out.byteOffset, length);
      } finally {
        closeSync(fd);
      }
    },
    close: () => {},
  };
}

/** Opens a model file for reading; a failure is a ModelFileError naming the file and why. */
export function openModelFile(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    throw fileSystemError(path, e);
  }
}

/** A file system failure as the ModelFileError users see: the file and what went wrong with it. */
export function fileSystemError(path: string, e: unknown): ModelFileError {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT') return new ModelFileError(path, 'no such file', { cause: e });
  if (code === 'EISDIR') return new ModelFileError(path, 'is a directory, not a model file', { cause: e });
  if (code === 'EACCES') return new ModelFileError(path, 'permission denied', { cause: e });
  if (code === 'ERR_FS_FILE_TOO_LARGE') return new ModelFileError(path, 'file is too large to read into memory', { cause: e });
  return new ModelFileError(path, `cannot read file: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}
