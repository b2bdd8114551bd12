// `stepwise calibrate`: measures this machine running a model (forward passes over a grid of batch
// shapes, then a short engine run) and writes a cost-model profile that `stepwise simulate` can use
// in place of a datasheet GPU — so simulated runs can be checked against real ones.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseCommandFlags } from './command-flags.js';
import { UsageError } from './usage-error.js';
import { parseIntFlag } from './engine-flags.js';
import { calibrate } from '../bench/calibrate/calibrator.js';
import type { KernelBackend } from '../model/kernels/index.js';

const HELP = `Usage: stepwise calibrate --model FILE [options]

Times the engine on this machine over a grid of batch shapes (decode batches of 1..64 sequences at
several context lengths, prefill chunks of 16..512 tokens, mixed batches), runs the real engine
briefly, fits the cost model to both by non-negative least squares (a measured curve of the
per-row work against the batch's rows, per-sequence cost, attention and KV-read rates, the engine's
per-step overhead), and writes a profile for stepwise simulate:

  stepwise calibrate --model small.gguf --out cpu.json
  stepwise simulate --hardware-file cpu.json --compare none,static,continuous

Options:
  --model FILE          GGUF or llama2.c checkpoint to measure with (required)
  --out FILE            where to write the profile (default: cpu-profile.json)
  --name NAME           the profile's hardware name (default: cpu)
  --backend auto|native|typescript   kernels (default auto), as the engine would use them
  --threads N           kernel threads (default: number of cores); simulate what you will run
  --reps N              measurements per shape per pass, trimmed mean kept (default 5)
  --passes N            measure N times, spread out in time, and fit to all of it (default 1):
                        on a shared or virtual machine whose speed drifts, more passes average
                        the drift out
  --quick               fewer shapes and repetitions (a first look, ~3x faster)
  --max-batch N         largest decode batch measured (default 64)
  --block-size N        KV block size (default 16)
  --engine-requests N   requests in the engine-overhead run (default 40)
  --estimate mean|robust  how noisy samples become step times (default mean): mean reproduces the
                        mean step time, which throughput adds up; robust (errors relative to the
                        measured time, median overheads) leans toward the fast samples`;

export async function runCalibrate(argv: string[], out: { write(s: string): unknown } = process.stdout, err: { write(s: string): unknown } = process.stderr): Promise<number> {
  const values = parseCommandFlags(argv, {
    model: { type: 'string', short: 'm' },
    out: { type: 'string', short: 'o' },
    name: { type: 'string' },
    backend: { type: 'string' },
    threads: { type: 'string' },
    reps: { type: 'string' },
    passes: { type: 'string' },
    quick: { type: 'boolean' },
    'max-batch': { type: 'string' },
    'block-size': { type: 'string' },
    'engine-requests': { type: 'string' },
    estimate: { type: 'string' },
  }, HELP, out);
  if (!values) return 0;
  if (!values.model) throw new UsageError('--model FILE is required (the model to measure this machine with)');
  if (!existsSync(values.model)) throw new UsageError(`model file not found: ${values.model}`);
  const backend = (values.backend ?? 'auto') as KernelBackend;
  if (!['auto', 'native', 'typescript'].includes(backend)) throw new UsageError(`--backend must be one of auto, native, typescript, got '${values.backend}'`);
  if (values.name !== undefined && values.name.trim() === '') throw new UsageError('--name must not be empty');
  const int = (k: 'threads' | 'reps' | 'passes' | 'max-batch' | 'block-size' | 'engine-requests') => (values[k] === undefined ? undefined : parseIntFlag(k, values[k]!, 1));
  const maxBatch = int('max-batch');
  if (maxBatch !== undefined && maxBatch > 1024) throw new UsageError(`--max-batch must be at most 1024, got ${maxBatch}`);
  const engineRequests = int('engine-requests');
  if (engineRequests !== undefined && engineRequests < 4) throw new UsageError(`--engine-requests must be at least 4, got ${engineRequests}`);

  const estimate = values.estimate ?? 'mean';
  if (estimate !== 'mean' && estimate !== 'robust') throw new UsageError(`--estimate must be mean or robust, got '${values.estimate}'`);

  const r = await calibrate({
    modelPath: values.model,
    backend,
    threads: int('threads'),
    reps: int('reps'),
    passes: int('passes'),
    quick: values.quick ?? false,
    maxBatch,
    blockSize: int('block-size'),
    engineRequests,
    name: values.name,
    estimate,
    log: (line) => err.write(`calibrate: ${line}\n`),
  });
  const file = resolve(values.out ?? 'cpu-profile.json');
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(r.profile, null, 2) + '\n');
  const h = r.profile.hardware;
  out.write(`\nprofile '${r.profile.name}' for ${r.profile.modelName}: ${file}\n`);
  out.write(`  bandwidth ${h.bandwidthGBs.toFixed(2)} GB/s, peak ${(h.peakTflops * 1e3).toFixed(2)} GFLOP/s, attention ${h.attentionGflops?.toFixed(2)} GFLOP/s\n`);
  out.write(`  overhead ${h.stepOverheadMs.toFixed(3)} ms/step + ${h.perSeqOverheadUs.toFixed(1)} us/sequence + ${(h.perTokenUs ?? 0).toFixed(1)} us/row\n`);
  if (h.rowCurve) out.write(`  per-row work: ${h.rowCurve.map(([rows, ms]) => `${rows}:${ms.toFixed(2)}`).join(' ')} (rows:ms)\n`);
  if (h.coldStepFactor !== undefined) out.write(`  a step on an idle engine: ${h.coldStepFactor.toFixed(2)}x\n`);
  if (h.afterPromptFactors) out.write(`  decode steps right after a prompt step: ${h.afterPromptFactors.map((f) => `${f.toFixed(2)}x`).join(', ')}\n`);
  if (h.kvReadCurve) out.write(`  reading the KV cache: ${h.kvReadCurve.slice(1).map(([bytes, ms]) => `${(bytes / 2 ** 20).toFixed(1)} MB:${ms.toFixed(2)}`).join(' ')} (MB:ms)\n`);
  if (h.prefillExcessCurve) out.write(`  a step's prompt chunks in the engine, beyond the forward pass: ${h.prefillExcessCurve.slice(1).map(([rows, ms]) => `${rows}:${ms.toFixed(2)}`).join(' ')} (prompt rows:ms)\n`);
  if (h.perPrefillRowUs !== undefined) out.write(`  a prompt chunk in the engine, beyond the forward pass: ${h.perPrefillRowUs.toFixed(1)} us/row + ${(h.perPrefillSeqUs ?? 0).toFixed(0)} us\n`);
  out.write(`  forward fit over ${r.forward.length} shapes: rms error ${(r.forwardFit.rmsRelError * 100).toFixed(1)}%, worst ${(r.forwardFit.maxRelError * 100).toFixed(1)}%\n`);
  out.write(`  engine run: ${r.engineCheck.steps} steps, predicted total time off by ${(r.engineCheck.totalRelError * 100).toFixed(1)}%\n`);
  out.write(`\nnext: stepwise simulate --hardware-file ${values.out ?? 'cpu-profile.json'} --compare none,static,continuous\n`);
  return 0;
}
