// `stepwise bench`: runs a workload through the engine under one or more batching policies (or
// against a remote OpenAI-compatible server, or llama.cpp), prints the seed's comparison table with
// our numbers beside it, and writes the report.
import { existsSync } from 'node:fs';
import { writeRunOutputs } from './run-outputs.js';
import { ENGINE_FLAG_OPTIONS, ENGINE_FLAGS_HELP, engineOptionsFromFlags, policiesFromFlags, parseIntFlag, parsePositiveNumber } from './engine-flags.js';
import { parseCommandFlags } from './command-flags.js';
import { UsageError } from './usage-error.js';
import { parseDistribution } from '../runs/distributions.js';
import type { ArrivalSpec, WorkloadKind, WorkloadSpec } from '../runs/workload.js';
import { runBenchmark } from '../bench/run-bench.js';
import { createProgress } from '../bench/progress.js';
import { comparisonTable, latencyTable, ratioTable, throughputTable } from '../runs/tables.js';
import { renderAsciiTimeline } from '../runs/timeline.js';
import { resultsJson } from '../runs/results.js';
import { writeReport } from '../runs/report.js';
import { WorkloadError } from '../runs/errors.js';
import { resolveConstraint, type StructuredOutputsParams } from '../engine/structured/constraint.js';

const HELP = `Usage: stepwise bench (--model FILE | --url URL) [options]

Measures throughput and latency (TTFT, TPOT, ITL, E2E as vLLM defines them) and slot/compute
utilisation, and compares batching policies: stepwise bench --model M --compare none,static,continuous

Target:
  --model FILE                  GGUF or llama2.c checkpoint, run in this process (offline mode)
  --url URL                     measure an OpenAI-compatible server instead (online mode:
                                streaming /v1/completions; Stepwise, llama.cpp's server, vLLM...)
  --served-model-name NAME      model name sent to --url (default: the first of /v1/models)
  --api-key KEY                 bearer token for --url
  --use-text                    send prompt text instead of token ids (ShareGPT workloads)
  --vocab-size N                vocabulary of the served model, for synthetic prompts without --model

Workload (all drawn from --seed):
  --workload NAME               standard (default): 128 requests, prompt uniform 32-512,
                                  output lognormal median 128 sigma 1.0 clipped to 16-1024
                                nano: 256 requests, prompt and output uniform 100-1024
                                fixed: --input-len and --output-len exactly
                                synthetic: --prompt-dist and --output-dist
                                sharegpt: conversations from --dataset FILE
  --num-requests N              requests (scales the presets)
  --input-len N, --output-len N lengths of the fixed workload
  --prompt-dist SPEC            fixed:N | uniform:MIN,MAX | normal:MEAN,STD[,MIN,MAX] |
  --output-dist SPEC              lognormal:MEDIAN,SIGMA[,MIN,MAX]
  --dataset FILE                ShareGPT JSON (sharegpt workload)
  --seed N                      default 0
  --arrival KIND                offline (default: all at once) | poisson (--qps) | burst
  --qps X                       Poisson arrival rate, requests per second
  --burst-size N                burst: requests per burst (default 8)
  --burst-interval-ms MS        burst: time between bursts (default 1000)
  --shared-prefix-len N         every prompt starts with one of --num-prefix-groups fixed random
  --num-prefix-groups G           N-token prefixes (default 1 group), then its own prompt as above:
                                  many users of a few system prompts
  Every request generates exactly its output length (EOS ignored), greedily.
  --structured-outputs SPEC     every request under an output constraint (offline runs): 'json' (a
                                built-in schema of free-text notes) or a JSON object in the library's
                                spelling, e.g. '{"regex":"[a-z ]+"}'; the table adds the grammar
                                masks' time per step and share (a request also ends where its grammar does)

Runs:
  --compare LIST                policies to run one after another, e.g. none,static,continuous
                                (default: --policy, itself continuous by default)
  --peer llama.cpp              also run the workload through llama.cpp (node-llama-cpp, same
                                GGUF, same threads, max-num-seqs parallel sequences)
  --peer-only                   run only the peer
  --peer-threads N              threads for the peer (default: the same as --threads)

Output:
  --out DIR                     write report.html, report.md, results.json and charts/ there
  --json FILE                   write results.json here (too)
  --timeline                    print each run's request timeline (rows = requests, columns = steps)
  --no-progress                 no progress bar on stderr

${ENGINE_FLAGS_HELP}`;

const WORKLOADS: readonly WorkloadKind[] = ['standard', 'nano', 'fixed', 'synthetic', 'sharegpt'];

/** Flags that describe a workload; `stepwise simulate` takes the same ones (see workloadSpec). */
export const WORKLOAD_FLAG_OPTIONS = {
  workload: { type: 'string' },
  'num-requests': { type: 'string' },
  'input-len': { type: 'string' },
  'output-len': { type: 'string' },
  'prompt-dist': { type: 'string' },
  'output-dist': { type: 'string' },
  dataset: { type: 'string' },
  seed: { type: 'string' },
  arrival: { type: 'string' },
  qps: { type: 'string' },
  'burst-size': { type: 'string' },
  'burst-interval-ms': { type: 'string' },
  'shared-prefix-len': { type: 'string' },
  'num-prefix-groups': { type: 'string' },
} as const;

/** `out` receives the report text (tests pass their own; the progress bar always goes to stderr). */
export async function runBench(argv: string[], out: { write(s: string): unknown } = process.stdout): Promise<number> {
  const values = parseCommandFlags(argv, {
    ...ENGINE_FLAG_OPTIONS,
    model: { type: 'string', short: 'm' },
    url: { type: 'string' },
    'served-model-name': { type: 'string' },
    'api-key': { type: 'string' },
    'use-text': { type: 'boolean' },
    'vocab-size': { type: 'string' },
    ...WORKLOAD_FLAG_OPTIONS,
    compare: { type: 'string' },
    peer: { type: 'string' },
    'peer-only': { type: 'boolean' },
    'peer-threads': { type: 'string' },
    out: { type: 'string' },
    json: { type: 'string' },
    timeline: { type: 'boolean' },
    'no-progress': { type: 'boolean' },
    'structured-outputs': { type: 'string' },
  }, HELP, out);
  if (!values) return 0;
  if (!values.model && !values.url) throw new UsageError('give --model FILE (run in process) or --url URL (measure a server); see stepwise bench --help');
  if (values.model && !existsSync(values.model)) throw new UsageError(`model file not found: ${values.model}`);
  const load = engineOptionsFromFlags(values);

  // Which runs.
  if (values.peer !== undefined && values.peer !== 'llama.cpp') throw new UsageError(`--peer must be llama.cpp, got '${values.peer}'`);
  if (values['peer-only'] && values.peer === undefined) values.peer = 'llama.cpp';
  let policies = policiesFromFlags(values, load);
  if (values['peer-only']) policies = [];
  if (values.url) {
    if (values.compare !== undefined) throw new UsageError('--compare runs policies in process; it cannot be combined with --url');
    policies = [];
  }
  if (!values.model && values.peer) throw new UsageError('--peer llama.cpp needs --model FILE (a GGUF)');

  const workload = workloadSpec(values);
  const structuredOutputs = structuredOutputsFlag(values['structured-outputs']);
  if (structuredOutputs && values.url) throw new UsageError('--structured-outputs applies to runs in process (--model), not to --url');
  const vocabSize = values['vocab-size'] !== undefined ? parseIntFlag('vocab-size', values['vocab-size'], 2) : undefined;
  const progress = createProgress(!values['no-progress']);

  const results = await runBenchmark({
    model: values.model,
    url: values.url,
    servedModelName: values['served-model-name'],
    apiKey: values['api-key'],
    useText: values['use-text'],
    vocabSize,
    workload,
    structuredOutputs,
    policies,
    peer: values.peer as 'llama.cpp' | undefined,
    peerThreads: values['peer-threads'] !== undefined ? parseIntFlag('peer-threads', values['peer-threads']) : undefined,
    load,
    progress,
    onRun: (run) => {
      if (values.timeline && run.timeline) {
        const width = Math.max(40, (process.stdout.columns ?? 120) - 12);
        out.write('\n' + renderAsciiTimeline(run.timeline, { title: `Request timeline: ${run.label}`, width }) + '\n');
      }
    },
  });

  out.write(`\nStepwise bench: ${results.model.name}${results.model.backend ? ` on ${results.model.backend}` : ''}\n`);
  out.write(`workload: ${results.workload.description}, seed ${results.workload.seed}\n\n`);
  out.write(comparisonTable(results, 'text') + '\n\n');
  const rt = ratioTable(results, 'text');
  if (rt) out.write(rt + '\n\n');
  if (results.runs.some((r) => r.policy === 'none' || r.policy === 'static' || r.policy === 'continuous')) {
    out.write(
      'Seed figures are GPU numbers: a GPU decoding one request leaves most of its arithmetic idle, so batching multiplies it 30-100x; ' +
        'on a CPU one request already streams the weights at memory speed and the cores compute only ~10x faster than that, so the ratios here are smaller. ' +
        'Compare ratios and utilisation, not tokens/s.\n\n',
    );
  }
  out.write(throughputTable(results, 'text') + '\n\n');
  out.write(latencyTable(results, 'text') + '\n');
  const failures = [...results.runs, ...(results.peer ? [results.peer] : [])].flatMap((r) => r.records.filter((x) => !x.success).map((x) => `${r.label}: request ${x.index}: ${x.error}`));
  if (failures.length > 0) process.stderr.write(`\n${failures.length} requests failed, first: ${failures[0]}\n`);

  await writeRunOutputs(values, out, { writeReport: (dir) => writeReport(results, dir), resultsJson: () => resultsJson(results) });
  return failures.length > 0 ? 1 : 0;
}

type Values = Record<string, string | boolean | undefined>;

/** The workload flags as a WorkloadSpec (errors name the flag). */
export function workloadSpec(values: Values): WorkloadSpec {
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const kind = (str('workload') ?? 'standard') as WorkloadKind;
  if (!WORKLOADS.includes(kind)) throw new UsageError(`--workload must be one of ${WORKLOADS.join(', ')}, got '${kind}'`);
  const int = (k: string, min = 1) => (str(k) === undefined ? undefined : parseIntFlag(k, str(k)!, min));
  const spec: WorkloadSpec = { kind, seed: int('seed', 0) ?? 0, arrival: arrivalSpec(values) };
  const n = int('num-requests');
  if (n !== undefined) spec.numRequests = n;
  const il = int('input-len');
  const ol = int('output-len');
  if ((il !== undefined || ol !== undefined) && kind !== 'fixed') throw new UsageError('--input-len/--output-len belong to --workload fixed');
  if (kind === 'fixed' && (il === undefined || ol === undefined)) throw new UsageError('--workload fixed needs --input-len N and --output-len N');
  if (il !== undefined) spec.inputLen = il;
  if (ol !== undefined) spec.outputLen = ol;
  try {
    if (str('prompt-dist') !== undefined) spec.promptDist = parseDistribution(str('prompt-dist')!, '--prompt-dist');
    if (str('output-dist') !== undefined) spec.outputDist = parseDistribution(str('output-dist')!, '--output-dist');
  } catch (e) {
    if (e instanceof WorkloadError) throw new UsageError(e.message);
    throw e;
  }
  if ((spec.promptDist || spec.outputDist) && (kind === 'fixed' || kind === 'sharegpt')) throw new UsageError(`--prompt-dist/--output-dist do not apply to --workload ${kind}`);
  if (kind === 'synthetic' && (!spec.promptDist || !spec.outputDist)) throw new UsageError('--workload synthetic needs --prompt-dist and --output-dist');
  if (str('dataset') !== undefined && kind !== 'sharegpt') throw new UsageError('--dataset belongs to --workload sharegpt');
  if (kind === 'sharegpt' && str('dataset') === undefined) throw new UsageError('--workload sharegpt needs --dataset FILE');
  if (str('dataset') !== undefined) spec.dataset = str('dataset');
  const prefixLen = int('shared-prefix-len');
  const groups = int('num-prefix-groups');
  if (groups !== undefined && prefixLen === undefined) throw new UsageError('--num-prefix-groups needs --shared-prefix-len N');
  if (prefixLen !== undefined) {
    if (kind === 'sharegpt') throw new UsageError('--shared-prefix-len applies to synthetic workloads, not sharegpt (its prompts are text)');
    spec.sharedPrefix = { length: prefixLen, groups: groups ?? 1 };
  }
  return spec;
}

function arrivalSpec(values: Values): ArrivalSpec {
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const kind = str('arrival') ?? (str('qps') !== undefined ? 'poisson' : str('burst-size') !== undefined ? 'burst' : 'offline');
  if (kind === 'offline') {
    if (str('qps') !== undefined || str('burst-size') !== undefined) throw new UsageError('--arrival offline sends everything at once: drop --qps/--burst-size');
    return { kind };
  }
  if (kind === 'poisson') {
    if (str('qps') === undefined) throw new UsageError('--arrival poisson needs --qps X');
    return { kind, qps: parsePositiveNumber('qps', str('qps')!) };
  }
  if (kind === 'burst') {
    const size = str('burst-size') !== undefined ? parseIntFlag('burst-size', str('burst-size')!) : 8;
    const ms = str('burst-interval-ms') !== undefined ? parseIntFlag('burst-interval-ms', str('burst-interval-ms')!, 0) : 1000;
    return { kind, size, intervalMs: ms };
  }
  throw new UsageError(`--arrival must be offline, poisson or burst, got '${kind}'`);
}

/** A schema whose answers run long (free-text notes), so steps measure masks mid-generation. */
const BENCH_SCHEMA = {
  type: 'object',
  properties: { notes: { type: 'array', items: { type: 'string', maxLength: 200 }, maxItems: 64 } },
  required: ['notes'],
};

function structuredOutputsFlag(v: string | undefined): StructuredOutputsParams | undefined {
  if (v === undefined) return undefined;
  if (v === 'json') return { json: BENCH_SCHEMA };
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch {
    throw new UsageError(`--structured-outputs must be 'json' or a JSON object such as '{"regex":"[a-z]+"}', got ${JSON.stringify(v)}`);
  }
  try {
    resolveConstraint(parsed, '--structured-outputs');
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return parsed as StructuredOutputsParams;
}
