// Entry point of the model runner's worker thread: loads the model and kernels named in workerData,
// then executes one SchedulerOutput per message. A failing step is reported back (the main thread
// rejects that execute() call) and the worker keeps serving until the main thread terminates it.

import { parentPort, workerData } from 'node:worker_threads';
import { loadModel } from '../model/loaders/index.js';
import type { Kernels } from '../model/kernels/types.js';
import { referenceKernels } from '../model/kernels/reference.js';
import { LocalModelRunner } from './model-runner.js';
import { serializeError, type FromWorker, type RunnerWorkerInit, type ToWorker } from './runner-worker-protocol.js';

async function loadKernels(backend: RunnerWorkerInit['backend'], threads: number | undefined): Promise<Kernels> {
  // TODO(native-kernels): import getKernels statically once src/model/kernels/index.ts has landed.
  // Until then a missing module falls back to the reference kernels for 'auto' and 'typescript'.
  const spec = '../model/kernels/index.js';
  let mod: { getKernels?: (b: RunnerWorkerInit['backend'], o?: { threads?: number }) => Promise<Kernels> } | null = null;
  try {
    mod = await import(spec);
  } catch (e) {
    if (backend === 'native') throw new Error(`native kernels requested but the kernel selector could not be loaded: ${(e as Error).message}`);
  }
  if (mod?.getKernels) return mod.getKernels(backend, { threads });
  return referenceKernels;
}

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('runner-worker must run inside a worker thread');
  const send = (m: FromWorker): void => port.postMessage(m);
  const init = workerData as RunnerWorkerInit;

  let runner: LocalModelRunner;
  try {
    const [model, kernels] = await Promise.all([loadModel(init.modelPath), loadKernels(init.backend, init.threads)]);
    runner = await LocalModelRunner.create({ model, kernels, numBlocks: init.numBlocks, blockSize: init.blockSize, eogIds: init.eogIds });
  } catch (e) {
    send({ type: 'init-error', error: serializeError(e) });
    return;
  }

  port.on('message', (msg: ToWorker) => {
    try {
      send({ type: 'result', id: msg.id, output: runner.executeSync(msg.step) });
    } catch (e) {
      send({ type: 'error', id: msg.id, error: serializeError(e) });
    }
  });
  send({ type: 'ready', kernelsName: runner.kernelsName });
}

void main();
