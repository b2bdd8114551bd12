// `stepwise simulate`: the engine's real scheduler and KV cache manager, driven over virtual time by
// a discrete-event loop, with step times from a hardware cost model — what a scheduler setting would
// do on hardware we do not have. Same workload flags, metrics, tables and report as `stepwise bench`.
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { writeRunOutputs } from './run-outputs.js';
import { ENGINE_FLAG_OPTIONS, ENGINE_FLAGS_HELP, engineOptionsFromFlags, policiesFromFlags, parsePositiveNumber } from './engine-flags.js';
import { parseCommandFlags } from './command-flags.js';
import { UsageError } from './usage-error.js';
import { WORKLOAD_FLAG_OPTIONS, workloadSpec } from './bench.js';
import { comparisonTable, goodputTable, latencyTable, ratioTable, throughputTable } from '../runs/tables.js';
import { computeGoodput, hasSlo } from '../runs/goodput.js';
import { FLEET_FLAG_OPTIONS, FLEET_FLAGS_HELP, fleetFlags } from './fleet-flags.js';
import { runFleetCommand } from './simulate-fleet.js';
import { renderAsciiTimeline } from '../runs/timeline.js';
import { HARDWARE, MODELS, hardwareProfile, modelProfile, readProfileFile, ProfileError } from '../sim/profiles.js';
import { profileKvBytesPerToken, totalParams, type HardwareProfile, type ModelProfile } from '../sim/cost-model.js';
import { runSimulation } from '../sim/run-sim.js';
import { simResultsJson, simulationSummary, simulationTable, writeSimReport } from '../sim/report.js';

const HELP = `Usage: stepwise simulate --hardware NAME --model NAME [options]

Runs the engine's own scheduler and KV cache manager against a cost model of the hardware, over
virtual time (nothing is computed, nothing sleeps), and reports what \`stepwise bench\` would:
  stepwise simulate --hardware A100-80GB --model llama-2-7b --compare none,static,continuous
or a fleet of N replicas of it behind a router, under one workload:
  stepwise simulate --hardware H100-SXM --model llama-3-8b --max-num-seqs 256 --replicas 16 \\
    --qps 320 --num-requests 8000 --shared-prefix-len 2048 --num-prefix-groups 256 \\
    --compare-routers round-robin,prefix-affinity --slo-ttft-ms 500 --slo-tpot-ms 50

Hardware and model:
  --hardware NAME          ${Object.keys(HARDWARE).join(', ')}, or cpu with --profile
  --hardware-file FILE     a profile written by \`stepwise calibrate\` (hardware and model)
  --profile FILE           the same, for --hardware cpu
  --model NAME|FILE        ${Object.keys(MODELS).join(', ')}, or a GGUF/llama2.c file (its shape and
                           bytes per weight); default: the model a --hardware-file was measured with
  --weight-bytes X         bytes per weight at the serving dtype (default: the profile's; 2 = fp16)
  --kv-bytes X             bytes per KV element (default: the profile's)
  --list                   list the built-in profiles and exit

Workload: the same flags as stepwise bench (--workload, --num-requests, --input-len, --output-len,
  --prompt-dist, --output-dist, --seed, --arrival, --qps, --burst-size, --burst-interval-ms), and
  --shared-prefix-len N, --num-prefix-groups G: every prompt starts with one of G fixed random
  N-token prefixes (default 1), then its own prompt — many users of a few system prompts.

Runs and output:
  --compare LIST           policies to simulate, e.g. none,static,continuous (default: --policy)
  --out DIR                write report.html, report.md, results.json and charts/ there
  --json FILE              write results.json here
  --timeline               print each run's request timeline

${FLEET_FLAGS_HELP}

The KV cache gets what the hardware's memory leaves beside the weights (capped, like the engine,
at max-num-seqs full contexts), unless --num-blocks or --kv-cache-memory says otherwise.

${ENGINE_FLAGS_HELP}`;


/** Which hardware and model profiles the flags pick. */
async function pickProfiles(v: Record<string, string | boolean | undefined>): Promise<{ hwName: string; hw: HardwareProfile; modelName: string; model: ModelProfile }> {
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  let hwName: string;
  let hw: HardwareProfile;
  let fileModel: { name: string; profile: ModelProfile } | undefined;
  const file = str('hardware-file') ?? str('profile');
  if (str('hardware-file') !== undefined && str('profile') !== undefined) throw new UsageError('give either --hardware-file or --profile, not both');
  if (file !== undefined) {
    if (str('hardware') !== undefined && str('hardware')!.toLowerCase() !== 'cpu') throw new UsageError(`--profile goes with --hardware cpu (or alone), not --hardware ${str('hardware')}`);
    const p = readProfileFile(file);
    hwName = p.name;
    hw = p.hardware;
    fileModel = { name: p.modelName ?? 'calibrated model', profile: p.model };
  } else {
    const name = str('hardware');
    if (name === undefined) throw new UsageError(`--hardware NAME is required (${Object.keys(HARDWARE).join(', ')}, or a calibrated profile with --hardware-file FILE)`);
    if (name.toLowerCase() === 'cpu') throw new UsageError('--hardware cpu needs --profile FILE (write one with stepwise calibrate --model FILE)');
    ({ name: hwName, profile: hw } = hardwareProfile(name));
  }
  let modelName: string;
  let model: ModelProfile;
  const m = str('model');
  if (m === undefined) {
    if (!fileModel) throw new UsageError(`--model NAME is required (${Object.keys(MODELS).join(', ')}, or a model file)`);
    ({ name: modelName, profile: model } = fileModel);
  } else if (Object.keys(MODELS).some((k) => k.toLowerCase() === m.toLowerCase())) {
    ({ name: modelName, profile: model } = modelProfile(m));
  } else if (existsSync(m)) {
    const { loadModel } = await import('../model/loaders/index.js');
    const { modelProfileFromWeights } = await import('../bench/calibrate/model-profile.js');
    const loaded = await loadModel(m);
    modelName = basename(m);
    model = modelProfileFromWeights(loaded.config, loaded.weights, modelName);
  } else {
    throw new ProfileError(`unknown model '${m}': not a built-in profile (${Object.keys(MODELS).join(', ')}) and no such file`);
  }
  model = { ...model };
  if (str('weight-bytes') !== undefined) model.weightBytes = parsePositiveNumber('weight-bytes', str('weight-bytes')!);
  if (str('kv-bytes') !== undefined) model.kvBytes = parsePositiveNumber('kv-bytes', str('kv-bytes')!);
  return { hwName, hw, modelName, model };
}

function listProfiles(): string {
  const lines = ['Hardware profiles:'];
  for (const [name, h] of Object.entries(HARDWARE)) lines.push(`  ${name.padEnd(12)} ${h.memoryGB} GB, ${h.bandwidthGBs} GB/s, ${h.peakTflops} TFLOP/s${h.source ? `  (${h.source})` : ''}`);
  lines.push('  cpu          --profile FILE from stepwise calibrate', '', 'Model profiles:');
  for (const [name, m] of Object.entries(MODELS)) {
    lines.push(`  ${name.padEnd(12)} ${(totalParams(m) / 1e9).toFixed(2)}B params, ${m.nLayers} layers, dim ${m.dim}, ${m.nKvHeads}/${m.nHeads} KV heads, ${(profileKvBytesPerToken(m) / 1024).toFixed(0)} KiB KV/token, context ${m.contextLength}`);
  }
  return lines.join('\n');
}

export async function runSimulate(argv: string[], out: { write(s: string): unknown } = process.stdout, err: { write(s: string): unknown } = process.stderr): Promise<number> {
  const values = parseCommandFlags(argv, {
    ...ENGINE_FLAG_OPTIONS,
    list: { type: 'boolean' },
    hardware: { type: 'string' },
    'hardware-file': { type: 'string' },
    profile: { type: 'string' },
    model: { type: 'string', short: 'm' },
    'weight-bytes': { type: 'string' },
    'kv-bytes': { type: 'string' },
    ...WORKLOAD_FLAG_OPTIONS,
    compare: { type: 'string' },
    out: { type: 'string' },
    json: { type: 'string' },
    timeline: { type: 'boolean' },
    ...FLEET_FLAG_OPTIONS,
  }, HELP, out);
  if (!values) return 0;
  if (values.list) {
    out.write(listProfiles() + '\n');
    return 0;
  }
  for (const k of ['backend', 'threads', 'tokenizer'] as const) {
    if (values[k] !== undefined) throw new UsageError(`--${k} does not apply to a simulation (nothing is computed); calibrate with it instead`);
  }
  if (values.workload === 'sharegpt') throw new UsageError('--workload sharegpt needs a tokenizer, which a simulation does not have; use a synthetic workload with the same length distributions');
  const load = engineOptionsFromFlags(values);
  const fleet = fleetFlags(values);
  if (fleet.replicas > 1) {
    if (values.compare !== undefined) throw new UsageError('--compare compares batching policies on one engine; a fleet runs --policy, and compares routers with --compare-routers');
    if (values.timeline) throw new UsageError("--timeline draws one engine's steps; it does not apply to a fleet (--replicas)");
  }
  const policies = policiesFromFlags(values, load);
  const workload = workloadSpec(values);
  const { hwName, hw, modelName, model } = await pickProfiles(values);
  if (fleet.replicas > 1) {
    return runFleetCommand({ hwName, hw, modelName, model, workload, load, fleet, outputs: { out: values.out, json: values.json } }, out, err);
  }

  const results = runSimulation({
    hardwareName: hwName,
    hardware: hw,
    modelName,
    model,
    workload,
    policies,
    load,
    onRun: (run) => {
      const m = run.metrics;
      err.write(`simulate: ${run.label}: ${m.completed} requests in ${m.durationS.toFixed(2)} s virtual (${(run.sim.wallMs / 1000).toFixed(2)} s to simulate), ${m.outputThroughput.toFixed(1)} output tok/s\n`);
      if (values.timeline && run.timeline) {
        const width = Math.max(40, (process.stdout.columns ?? 120) - 12);
        out.write('\n' + renderAsciiTimeline(run.timeline, { title: `Request timeline: ${run.label}`, width }) + '\n');
      }
    },
  });

  out.write(`\n${simulationSummary(results).join('\n')}\n`);
  out.write(`workload: ${results.workload.description}, seed ${results.workload.seed}\n\n`);
  out.write(comparisonTable(results, 'text') + '\n\n');
  const rt = ratioTable(results, 'text');
  if (rt) out.write(rt + '\n\n');
  out.write(simulationTable(results, 'text') + '\n\n');
  out.write(throughputTable(results, 'text') + '\n\n');
  out.write(latencyTable(results, 'text') + '\n');
  if (hasSlo(fleet.slo)) out.write('\n' + goodputTable(results, fleet.slo, 'text') + '\n');
  const failures = results.runs.flatMap((r) => r.records.filter((x) => !x.success).map((x) => `${r.label}: request ${x.index}: ${x.error}`));
  if (failures.length > 0) err.write(`\n${failures.length} requests refused, first: ${failures[0]}\n`);
  // Goodput joins results.json only when an SLO was given: without one, the file is what it was.
  const withGoodput = (json: Record<string, unknown>): Record<string, unknown> =>
    !hasSlo(fleet.slo)
      ? json
      : {
          ...json,
          goodput: {
            slo: { ttft_ms: fleet.slo.ttftMs ?? null, tpot_ms: fleet.slo.tpotMs ?? null },
            runs: results.runs.map((r) => {
              const g = computeGoodput(r.records, fleet.slo, r.metrics.durationS * 1000);
              return { policy: r.policy, good: g.good, request_goodput: g.requestsPerS, fraction: g.fraction };
            }),
          },
        };
  await writeRunOutputs(values, out, { writeReport: (dir) => writeSimReport(results, dir, withGoodput(simResultsJson(results))), resultsJson: () => withGoodput(simResultsJson(results)) });
  return failures.length > 0 ? 1 : 0;
}
