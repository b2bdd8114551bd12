// A LocalModelRunner inside a worker thread. A forward pass in JavaScript blocks whatever thread runs
// it, so the engine hands each step to a worker and the main event loop stays free to accept
// requests and stream tokens while the model computes.

import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ModelRunner, ModelRunnerOutput, SchedulerOutput } from './types.js';
import type { FromWorker, RunnerWorkerInit, SerializedError, ToWorker } from './runner-worker-protocol.js';

export type WorkerRunnerOptions = RunnerWorkerInit;

/** An error raised inside the worker, rethrown on the main thread with the worker's name and message. */
export class WorkerRunnerError extends Error {
  constructor(e: SerializedError) {
    super(e.message);
    this.name = e.name;
    if (e.stack) this.stack = `${e.name}: ${e.message}\n    (in the model runner worker)\n${e.stack.split('\n').slice(1).join('\n')}`;
  }
}

/**
 * The worker's entry module: the compiled JavaScript beside this file when running from dist/.
 * Otherwise (tests and development under tsx) the TypeScript source, loaded through a one-line ESM
 * bootstrap that registers tsx inside the worker first: Node 20 does not apply the parent's
 * `--import tsx` hooks to a worker's entry module, so the worker has to register them itself.
 */
function workerEntry(): URL {
  const js = new URL('./runner-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return js;
  const ts = new URL('./runner-worker.ts', import.meta.url);
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const code = `import { register } from ${JSON.stringify(tsxApi)};\nregister();\nawait import(${JSON.stringify(ts.href)});\n`;
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`);
}

interface Pending {
  resolve: (o: ModelRunnerOutput) => void;
  reject: (e: Error) => void;
}

export class WorkerModelRunner implements ModelRunner {
  readonly kernelsName: string;
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** Set once the worker is gone (closed, crashed or exited); every later call fails with it. */
  private dead: Error | null = null;
  private exited: Promise<void>;

  private constructor(worker: Worker, kernelsName: string, exited: Promise<void>) {
    this.worker = worker;
    this.kernelsName = kernelsName;
    this.exited = exited;
    worker.on('message', (m: FromWorker) => this.onMessage(m));
    worker.on('error', (e) => this.fail(new Error(`model runner worker crashed: ${e.message}`)));
    worker.on('exit', (code) => this.fail(new Error(`model runner worker exited (code ${code})`)));
    // Idle, the worker must not keep the process alive; it is re-referenced while a step runs.
    worker.unref();
  }

  static async create(opts: WorkerRunnerOptions): Promise<WorkerModelRunner> {
    const url = workerEntry();
    const init: RunnerWorkerInit = {
      modelPath: opts.modelPath,
      backend: opts.backend,
      threads: opts.threads,
      numBlocks: opts.numBlocks,
      blockSize: opts.blockSize,
      kvCacheDtype: opts.kvCacheDtype,
      eogIds: [...opts.eogIds],
      ...(opts.speculative ? { speculative: { ...opts.speculative } } : {}),
    };
    const worker = new Worker(url, { workerData: init });
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    const kernelsName = await new Promise<string>((resolve, reject) => {
      const onMessage = (m: FromWorker): void => {
        cleanup();
        if (m.type === 'ready') resolve(m.kernelsName);
        else if (m.type === 'init-error') reject(new WorkerRunnerError(m.error));
        else reject(new Error(`model runner worker sent '${m.type}' before it was ready`));
      };
      const onError = (e: Error): void => {
        cleanup();
        reject(new Error(`model runner worker failed to start: ${e.message}`));
      };
      const onExit = (code: number): void => {
        cleanup();
        reject(new Error(`model runner worker exited (code ${code}) before it was ready`));
      };
      const cleanup = (): void => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    }).catch(async (e: unknown) => {
      await worker.terminate();
      throw e;
    });
    return new WorkerModelRunner(worker, kernelsName, exited);
  }

  execute(step: SchedulerOutput): Promise<ModelRunnerOutput> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise<ModelRunnerOutput>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) this.worker.ref();
      const msg: ToWorker = { type: 'execute', id, step };
      try {
        this.worker.postMessage(msg);
      } catch (e) {
        // e.g. a value that cannot be cloned: fail this call, keep the worker.
        this.settle(id);
        reject(new Error(`could not send step ${step.step} to the model runner worker: ${(e as Error).message}`));
      }
    });
  }

  async close(): Promise<void> {
    if (!this.dead) {
      this.fail(new Error('model runner is closed'));
      await this.worker.terminate();
    }
    await this.exited;
  }

  private onMessage(m: FromWorker): void {
    if (m.type === 'result') this.settle(m.id)?.resolve(m.output);
    else if (m.type === 'error') this.settle(m.id)?.reject(new WorkerRunnerError(m.error));
  }

  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
    return p;
  }

  private fail(e: Error): void {
    if (this.dead) return;
    this.dead = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}
