// The llama.cpp peer: the same workload on the same GGUF through node-llama-cpp (pinned 3.21.1), CPU
// only, same thread count. One context with K sequences and K workers; each worker takes the next
// request that has arrived, evaluates its prompt and generates exactly its output length greedily.
// node-llama-cpp batches the K sequences' pending tokens into shared llama_decode calls, so this is
// llama.cpp's own continuous batching at concurrency K.
import { performance } from 'node:perf_hooks';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RequestRecord } from '../../runs/metrics.js';
import type { BenchRequest, Workload } from '../../runs/workload.js';

export interface LlamaCppRunOptions {
  modelPath: string;
  threads: number;
  /** Parallel sequences (Stepwise's max_num_seqs). */
  concurrency: number;
  onRequestDone?: (r: RequestRecord) => void;
}

export interface LlamaCppRun {
  records: RequestRecord[];
  durationMs: number;
  /** "node-llama-cpp 3.21.1 (llama.cpp b1234, prebuilt)". */
  version: string;
  concurrency: number;
}

export class PeerUnavailableError extends Error {
  override name = 'PeerUnavailableError';
}

export async function runLlamaCpp(workload: Workload, opts: LlamaCppRunOptions): Promise<LlamaCppRun> {
  let nlc: typeof import('node-llama-cpp');
  try {
    nlc = await import('node-llama-cpp');
  } catch (err) {
    throw new PeerUnavailableError(`--peer llama.cpp needs the node-llama-cpp package (a devDependency): ${(err as Error).message}`);
  }
  const llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: nlc.LlamaLogLevel.error, maxThreads: opts.threads });
  try {
    const model = await llama.loadModel({ modelPath: opts.modelPath, gpuLayers: 0 });
    try {
      const K = Math.max(1, Math.min(opts.concurrency, workload.requests.length));
      let longest = 1;
      for (const r of workload.requests) longest = Math.max(longest, r.promptTokenIds.length + r.outputLen);
      const context = await model.createContext({
        sequences: K,
        contextSize: Math.min(longest + 1, model.trainContextSize),
        threads: opts.threads,
      });
      try {
        const sequences = Array.from({ length: K }, () => context.getSequence());
        // Warm-up, untimed, like Stepwise's: the workload's longest prompt, so neither engine's
        // first timed prompt carries one-time costs.
        {
          const longestPrompt = workload.requests.reduce((a, r) => (r.promptTokenIds.length > a.length ? r.promptTokenIds : a), workload.requests[0].promptTokenIds);
          const first = longestPrompt.slice(0, Math.max(4, Math.min(longestPrompt.length, context.contextSize - 4)));
          let n = 0;
          for await (const _ of sequences[0].evaluate(first as never, { temperature: 0 })) if (++n >= 2) break;
          await sequences[0].clearHistory();
        }
        const queue = [...workload.requests].sort((a, b) => a.arrivalMs - b.arrivalMs || a.index - b.index);
        const records: RequestRecord[] = [];
        const t0 = performance.now();
        const worker = async (seq: (typeof sequences)[number]) => {
          for (let req = queue.shift(); req; req = queue.shift()) {
            const wait = req.arrivalMs - (performance.now() - t0);
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
            const rec = await generateOne(seq, req, t0);
            records.push(rec);
            opts.onRequestDone?.(rec);
          }
        };
        await Promise.all(sequences.map((s) => worker(s)));
        const release = llama.llamaCppRelease;
        const version = `node-llama-cpp ${packageVersion()} (llama.cpp ${release.release}, ${llama.buildType})`;
        return { records: records.sort((a, b) => a.index - b.index), durationMs: Math.max(0, ...records.map((r) => r.endMs)), version, concurrency: K };
      } finally {
        await context.dispose();
      }
    } finally {
      await model.dispose();
    }
  } finally {
    await llama.dispose();
  }
}

interface EvaluatingSequence {
  clearHistory(): Promise<void>;
  evaluate(tokens: never, options: { temperature: number }): AsyncGenerator<unknown, void, unknown>;
}

async function generateOne(seq: EvaluatingSequence, req: BenchRequest, t0: number): Promise<RequestRecord> {
  // The request counts as sent when it arrived: waiting for a free sequence is queueing time, as in
  // the engine.
  const rec: RequestRecord = { index: req.index, promptLen: req.promptTokenIds.length, outputLen: 0, sentMs: req.arrivalMs, chunkMs: [], endMs: 0, success: false };
  try {
    await seq.clearHistory();
    if (req.outputLen > 0) {
      // evaluate() does not stop at end-of-generation tokens, so the output length is exact.
      for await (const _ of seq.evaluate(req.promptTokenIds as never, { temperature: 0 })) {
        rec.chunkMs.push(performance.now() - t0);
        if (++rec.outputLen >= req.outputLen) break;
      }
    }
    rec.success = true;
  } catch (err) {
    rec.error = (err as Error).message;
  }
  rec.endMs = performance.now() - t0;
  return rec;
}

/** node-llama-cpp's version (its package.json is not exported, so find it beside the entry point). */
function packageVersion(): string {
  try {
    let dir = dirname(fileURLToPath(import.meta.resolve('node-llama-cpp')));
    for (let i = 0; i < 4; i++, dir = dirname(dir)) {
      const file = join(dir, 'package.json');
      if (!existsSync(file)) continue;
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'node-llama-cpp' && pkg.version) return pkg.version;
    }
  } catch {
    // Unknown version: not worth failing a benchmark over.
  }
  return '?';
}
