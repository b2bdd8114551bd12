// Entry point of the model runner's worker thread: loads the model and kernels named in workerData,
// then executes one SchedulerOutput per message. A failing step is reported back (the main thread
// rejects that execute() call) and the worker keeps serving until the main thread terminates it.

import { parentPort, workerData } from 'node:worker_threads';
import { loadModel } from '../model/loaders/index.js';
import { getKernels } from '../model/kernels/index.js';
import { LocalModelRunner } from './model-runner.js';
import { serializeError, type FromWorker, type RunnerWorkerInit, type ToWorker } from './runner-worker-protocol.js';

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('runner-worker must run inside a worker thread');
  const send = (m: FromWorker): void => port.postMessage(m);
  const init = workerData as RunnerWorkerInit;

  let runner: LocalModelRunner;
  try {
    const [model, kernels] = await Promise.all([loadModel(init.modelPath), getKernels(init.backend, { threads: init.threads })]);
    runner = await LocalModelRunner.create({ model, kernels, numBlocks: init.numBlocks, blockSize: init.blockSize, kvCacheDtype: init.kvCacheDtype, eogIds: init.eogIds, speculative: init.speculative });
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
