// Messages between WorkerModelRunner (main thread) and its worker (runner-worker.ts). Everything is
// plain data, copied by structured clone.

import type { ModelRunnerOutput, SchedulerOutput } from './types.js';
import type { SpeculativeConfig } from './spec/speculative-config.js';
import type { KvCacheDtype } from '../model/kernels/kv-dtype.js';

export interface RunnerWorkerInit {
  modelPath: string;
  backend: 'auto' | 'native' | 'typescript';
  threads?: number;
  numBlocks: number;
  blockSize: number;
  kvCacheDtype: KvCacheDtype;
  eogIds: number[];
  speculative?: SpeculativeConfig;
}

/** An error as it crosses the thread boundary: enough to rebuild a useful Error on the other side. */
export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
}

export type ToWorker = { type: 'execute'; id: number; step: SchedulerOutput };

export type FromWorker =
  | { type: 'ready'; kernelsName: string }
  | { type: 'init-error'; error: SerializedError }
  | { type: 'result'; id: number; output: ModelRunnerOutput }
  | { type: 'error'; id: number; error: SerializedError };

export function serializeError(e: unknown): SerializedError {
  if (e instanceof Error) return { name: e.name, message: e.message, stack: e.stack };
  return { name: 'Error', message: String(e) };
}
