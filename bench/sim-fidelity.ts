// Simulator fidelity: how close does `stepwise simulate`, with a profile calibrated on this machine,
// come to the real engine on workloads the calibration never saw? For every policy (none, static,
// continuous) and two arrival patterns (all at once; Poisson), the real engine runs the workload
// (through LLM.stream, timed like `stepwise bench`) and the simulator runs the same workload with the
// same engine settings; output throughput, median TTFT and median TPOT are compared. Target: 5%.
//
//   npx tsx bench/sim-fidelity.ts [--preset small] [--model FILE] [--profile FILE] [--threads 1]
//                                 [--repeat 3] [--num-requests 48] [--out DIR]
//
// Without --profile it calibrates first (the machine as it is now). Without --model it generates the
// preset's model (f32, seed 1) under .cache/. Each real run is repeated and the run with the median
// throughput is kept: on a shared machine, other processes come and go.
import { parseArgs } from 'node:util';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { LLM, type LoadOptions } from '../src/llm.js';
import { makeModel } from '../src/model/make-model.js';
import { readModelHeader } from '../src/model/loaders/index.js';
import type { BatchingPolicy } from '../src/engine/step-trace.js';
import { buildWorkload, type Workload } from '../src/bench/workload.js';
import { runOffline, warmUp } from '../src/bench/offline.js';
import { computeMetrics, type RunMetrics } from '../src/bench/metrics.js';
import { calibrate } from '../src/sim/calibration.js';
import { readProfileFile, type CalibratedProfileFile } from '../src/sim/profiles.js';
import { simulatePolicy } from '../src/sim/run-sim.js';
import { formatTable } from '../src/bench/tables.js';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'small' },
    model: { type: 'string' },
    profile: { type: 'string' },
    threads: { type: 'string', default: '1' },
    backend: { type: 'string', default: 'auto' },
    repeat: { type: 'string', default: '3' },
    'num-requests': { type: 'string', default: '48' },
    qps: { type: 'string' },
    'max-num-seqs': { type: 'string', default: '32' },
    policies: { type: 'string', default: 'none,static,continuous' },
    arrivals: { type: 'string', default: 'offline,poisson' },
    out: { type: 'string', default: '.cache/sim-fidelity' },
  },
});
const threads = Number(values.threads);
const repeat = Number(values.repeat);
const numRequests = Number(values['num-requests']);
const maxNumSeqs = Number(values['max-num-seqs']);
const backend = values.backend as 'auto' | 'native' | 'typescript';
const policies = values.policies!.split(',') as BatchingPolicy[];
const outDir = resolve(values.out!);
mkdirSync(outDir, { recursive: true });
const log = (s: string) => process.stderr.write(`sim-fidelity: ${s}\n`);
const t0 = performance.now();
const load0 = loadavg()[0];

// 1. The model.
let modelPath = values.model;
if (!modelPath) {
  modelPath = resolve('.cache', `sim-fidelity-${values.preset}-f32.gguf`);
  if (!existsSync(modelPath)) {
    log(`generating the ${values.preset} preset model at ${modelPath}`);
    mkdirSync(resolve('.cache'), { recursive: true });
    await makeModel({ preset: values.preset as 'tiny' | 'small' | '110m', dtype: 'f32', seed: 1, out: modelPath });
  }
}

// 2. The profile: given, or calibrated now.
let profile: CalibratedProfileFile;
if (values.profile) {
  profile = readProfileFile(values.profile);
} else {
  const c = await calibrate({ modelPath, backend, threads, log });
  profile = c.profile;
  writeFileSync(join(outDir, 'profile.json'), JSON.stringify(profile, null, 2) + '\n');
  log(`profile written to ${join(outDir, 'profile.json')}`);
}

// 3. Workloads the calibration never saw (different lengths, seeds and arrivals).
const config = (await readModelHeader(modelPath)).config;
const target = { vocabSize: config.vocabSize, bosId: 1, maxModelLen: config.contextLength };
const lengths = { promptDist: { kind: 'uniform', min: 32, max: 256 }, outputDist: { kind: 'lognormal', median: 48, sigma: 0.6, min: 8, max: 160 } } as const;
// Poisson at about 60% of what continuous batching sustains here (from the profile), so queues form
// without batching but not with it.
const qps = values.qps !== undefined ? Number(values.qps) : undefined;
const workloads: Workload[] = [];
for (const kind of values.arrivals!.split(',')) {
  if (kind === 'offline') workloads.push(buildWorkload({ kind: 'synthetic', seed: 7, numRequests, ...lengths, arrival: { kind: 'offline' } }, target));
  else if (kind === 'poisson') {
    let rate = qps;
    if (rate === undefined) {
      const probe = buildWorkload({ kind: 'synthetic', seed: 8, numRequests, ...lengths, arrival: { kind: 'offline' } }, target);
      const sim = simulatePolicy(probe, 'continuous', { hardware: profile.hardware, model: profile.model, load: { maxNumSeqs } });
      rate = Math.max(0.5, Math.round(sim.metrics.requestThroughput * 0.6 * 10) / 10);
    }
    workloads.push(buildWorkload({ kind: 'synthetic', seed: 8, numRequests, ...lengths, arrival: { kind: 'poisson', qps: rate } }, target));
  } else throw new Error(`--arrivals takes offline and/or poisson, got '${kind}'`);
}

interface Row {
  workload: string;
  policy: BatchingPolicy;
  measured: RunMetrics;
  measuredRuns: number[];
  simulated: RunMetrics;
  realSteps: number;
  simSteps: number;
}
const rows: Row[] = [];
const engineLoad = (policy: BatchingPolicy): LoadOptions => ({ backend, threads, policy, maxNumSeqs, staticBatchSize: maxNumSeqs });

for (const w of workloads) {
  log(`workload: ${w.description}`);
  // Repetitions interleave the policies, so a busy spell on the machine does not fall on one policy only.
  const runs = new Map<BatchingPolicy, Array<{ m: RunMetrics; steps: number; options: LLM['options'] }>>(policies.map((p) => [p, []]));
  for (let i = 0; i < repeat; i++) {
    for (const policy of policies) {
      const llm = await LLM.load(modelPath, engineLoad(policy));
      try {
        await warmUp(llm, config.vocabSize, 1);
        const run = await runOffline(llm, w);
        const m = computeMetrics(run.records, run.durationMs);
        runs.get(policy)!.push({ m, steps: run.steps.length, options: llm.options });
        log(`  ${policy} real run ${i + 1}/${repeat}: ${m.outputThroughput.toFixed(1)} tok/s, ${run.steps.length} steps`);
      } finally {
        await llm.close();
      }
    }
  }
  for (const policy of policies) {
    const list = runs.get(policy)!.sort((a, b) => a.m.outputThroughput - b.m.outputThroughput);
    const median = list[Math.floor((list.length - 1) / 2)];
    // The simulation gets exactly the engine's resolved settings (KV blocks included).
    const { backend: _b, threads: _t, inProcess: _i, tokenizerPath: _p, ...engineOpts } = median.options;
    const sim = simulatePolicy(w, policy, { hardware: profile.hardware, model: profile.model, load: engineOpts });
    rows.push({ workload: w.arrival.kind, policy, measured: median.m, measuredRuns: list.map((r) => r.m.outputThroughput), simulated: sim.metrics, realSteps: median.steps, simSteps: sim.numSteps ?? 0 });
  }
}

// 4. The table.
const err = (sim: number, real: number) => (real > 0 ? (sim - real) / real : NaN);
const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
const f = (x: number, d = 1) => x.toFixed(d);
const table = formatTable(
  ['arrivals', 'policy', 'tok/s real', 'real runs spread', 'tok/s sim', 'err', 'TTFT p50 real', 'TTFT p50 sim', 'err', 'TPOT p50 real', 'TPOT p50 sim', 'err', 'steps real/sim'],
  rows.map((r) => [
    r.workload,
    r.policy,
    f(r.measured.outputThroughput),
    `${pct(r.measuredRuns[0] / r.measured.outputThroughput - 1)}..${pct(r.measuredRuns[r.measuredRuns.length - 1] / r.measured.outputThroughput - 1)}`,
    f(r.simulated.outputThroughput),
    pct(err(r.simulated.outputThroughput, r.measured.outputThroughput)),
    f(r.measured.ttftMs.p50),
    f(r.simulated.ttftMs.p50),
    pct(err(r.simulated.ttftMs.p50, r.measured.ttftMs.p50)),
    f(r.measured.tpotMs.p50, 2),
    f(r.simulated.tpotMs.p50, 2),
    pct(err(r.simulated.tpotMs.p50, r.measured.tpotMs.p50)),
    `${r.realSteps}/${r.simSteps}`,
  ]),
  'markdown',
);
const errors = rows.flatMap((r) => [err(r.simulated.outputThroughput, r.measured.outputThroughput), err(r.simulated.ttftMs.p50, r.measured.ttftMs.p50), err(r.simulated.tpotMs.p50, r.measured.tpotMs.p50)]).map(Math.abs);
const within = errors.filter((e) => e <= 0.05).length;
const summary = [
  `model ${profile.modelName ?? modelPath} (${profile.hardware.source ?? profile.name}), ${threads} thread(s), max_num_seqs ${maxNumSeqs}, ${numRequests} requests per workload, median of ${repeat} real runs`,
  `workloads: ${workloads.map((w) => w.description).join(' | ')}`,
  `errors: mean |err| ${((errors.reduce((a, b) => a + b, 0) / errors.length) * 100).toFixed(1)}%, worst ${(Math.max(...errors) * 100).toFixed(1)}%, ${within}/${errors.length} within 5%`,
  `load average ${load0.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end; ${((performance.now() - t0) / 1000).toFixed(0)} s in all`,
];
const md = `${table}\n\n${summary.map((s) => `- ${s}`).join('\n')}\n`;
writeFileSync(join(outDir, 'fidelity.md'), md);
writeFileSync(join(outDir, 'fidelity.json'), JSON.stringify({ profile, rows: rows.map((r) => ({ ...r, measured: strip(r.measured), simulated: strip(r.simulated) })) }, null, 2) + '\n');
process.stdout.write(`\n${md}\nwritten to ${join(outDir, 'fidelity.md')}\n`);

function strip(m: RunMetrics) {
  return { outputThroughput: m.outputThroughput, durationS: m.durationS, ttftP50: m.ttftMs.p50, tpotP50: m.tpotMs.p50, ttftMean: m.ttftMs.mean, tpotMean: m.tpotMs.mean, e2eP50: m.e2eMs.p50 };
}
