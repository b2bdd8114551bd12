// Picks the kernels a model runs on: the native addon when it is built and loads, otherwise the
// TypeScript reference kernels (same results within 1e-4, much slower).

import { createNativeKernels, NativeKernelsUnavailableError, nativeUnavailableReason } from './native.js';
import { referenceKernels } from './reference.js';
import type { Kernels } from './types.js';

export type KernelBackend = 'auto' | 'native' | 'typescript';

export { nativeUnavailableReason, NativeKernelsUnavailableError };

/**
 * 'native' throws NativeKernelsUnavailableError when the addon is not built; 'auto' falls back to
 * the TypeScript kernels then (nativeUnavailableReason() tells why). `threads` (native only)
 * defaults to the number of cores.
 */
export async function getKernels(backend: KernelBackend, opts: { threads?: number } = {}): Promise<Kernels> {
  switch (backend) {
    case 'typescript':
      return referenceKernels;
    case 'native':
      return createNativeKernels(opts);
    case 'auto':
      try {
        return createNativeKernels(opts);
      } catch (e) {
        if (e instanceof NativeKernelsUnavailableError) return referenceKernels;
        throw e;
      }
    default:
      throw new RangeError(`unknown kernel backend '${String(backend)}': use auto, native or typescript`);
  }
}
