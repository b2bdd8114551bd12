// Simulator fidelity: how close does `stepwise simulate`, with a profile calibrated on this machine,
// come to the real engine on workloads the calibration never saw? For every policy (none, static,
// continuous) and two arrival patterns (all at once; Poisson), the real engine runs the workload
// (through LLM.stream, timed like `stepwise bench`) and the simulator runs the same workload with the
// same engine settings; output throughput, median TTFT and median TPOT are compared. Target: 5%.
//
//   npx tsx bench/sim-fidelity.ts [--preset small] [--model FILE] [--profile FILE] [--threads 1]
//                                 [--repeat 3] [--rounds 1] [--num-requests 48] [--out DIR]
//
// Without --profile it calibrates first (the machine as it is now). Without --model it generates the
// preset's model (f32, seed 1) under .cache/. Each real run is repeated and the run with the median
// throughput is kept; --rounds repeats the whole calibrate-and-measure protocol and reports medians
// over rounds. On a shared machine other processes come and go (and take the caches with them), so
// run it when the machine is quiet, or at a higher priority: sudo nice -n -10 npx tsx bench/...
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
    rounds: { type: 'string', default: '1' },
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
const numRounds = Number(values.rounds);
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

const config = (await readModelHeader(modelPath)).config;
const target = { vocabSize: config.vocabSize, bosId: 1, maxModelLen: config.contextLength };
const lengths = { promptDist: { kind: 'uniform', min: 32, max: 256 }, outputDist: { kind: 'lognormal', median: 48, sigma: 0.6, min: 8, max: 160 } } as const;
const engineLoad = (policy: BatchingPolicy): LoadOptions => ({ backend, threads, policy, maxNumSeqs, staticBatchSize: maxNumSeqs });

interface Row {
  workload: string;
  policy: BatchingPolicy;
  measured: RunMetrics;
  measuredRuns: number[];
  simulated: RunMetrics;
  realSteps: number;
  simSteps: number;
}

let workloads: Workload[] | undefined;
const profiles: CalibratedProfileFile[] = [];
const rounds: Row[][] = [];
for (let round = 0; round < numRounds; round++) {
  // 2. The profile: given, or calibrated now (every round: the machine as it is now).
  let profile: CalibratedProfileFile;
  if (values.profile) profile = readProfileFile(values.profile);
  else {
    profile = (await calibrate({ modelPath, backend, threads, log })).profile;
    writeFileSync(join(outDir, `profile-${round + 1}.json`), JSON.stringify(profile, null, 2) + '\n');
  }
  profiles.push(profile);
  // 3. Workloads the calibration never saw (different lengths, seeds and arrivals). Poisson at about
  // 60% of what continuous batching sustains (by the first profile), so queues form without
  // batching but not with it.
  workloads ??= values.arrivals!.split(',').map((kind) => {
    if (kind === 'offline') return buildWorkload({ kind: 'synthetic', seed: 7, numRequests, ...lengths, arrival: { kind: 'offline' } }, target);
    if (kind !== 'poisson') throw new Error(`--arrivals takes offline and/or poisson, got '${kind}'`);
    let rate = values.qps !== undefined ? Number(values.qps) : undefined;
    if (rate === undefined) {
      const probe = buildWorkload({ kind: 'synthetic', seed: 8, numRequests, ...lengths, arrival: { kind: 'offline' } }, target);
      const sim = simulatePolicy(probe, 'continuous', { hardware: profile.hardware, model: profile.model, load: { maxNumSeqs } });
      rate = Math.max(0.5, Math.round(sim.metrics.requestThroughput * 0.6));
    }
    return buildWorkload({ kind: 'synthetic', seed: 8, numRequests, ...lengths, arrival: { kind: 'poisson', qps: rate } }, target);
  });

  const rows: Row[] = [];
  for (const w of workloads) {
    log(`round ${round + 1}/${numRounds}, workload: ${w.description}`);
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
  rounds.push(rows);
}

// 4. The table: per cell, the median over rounds of the real figure and of the simulated one, and the
// error between those two medians (per-round errors are in fidelity.json).
const err = (sim: number, real: number) => (real > 0 ? (sim - real) / real : NaN);
const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
const f = (x: number, d = 1) => x.toFixed(d);
const med = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const metricsOf = {
  tput: (m: RunMetrics) => m.outputThroughput,
  ttft: (m: RunMetrics) => m.ttftMs.p50,
  tpot: (m: RunMetrics) => m.tpotMs.p50,
};
const cells = rounds[0].map((r0, i) => {
  const all = rounds.map((rs) => rs[i]);
  const cell = (k: keyof typeof metricsOf) => {
    const real = med(all.map((r) => metricsOf[k](r.measured)));
    const sim = med(all.map((r) => metricsOf[k](r.simulated)));
    return { real, sim, err: err(sim, real), perRound: all.map((r) => err(metricsOf[k](r.simulated), metricsOf[k](r.measured))) };
  };
  // Run-to-run spread of the real engine itself (min and max run over the median run, all rounds).
  const spread = all.flatMap((r) => r.measuredRuns.map((x) => x / r.measured.outputThroughput - 1));
  return { workload: r0.workload, policy: r0.policy, tput: cell('tput'), ttft: cell('ttft'), tpot: cell('tpot'), spread: [Math.min(...spread), Math.max(...spread)], steps: `${all[all.length - 1].realSteps}/${all[all.length - 1].simSteps}` };
});
const table = formatTable(
  ['arrivals', 'policy', 'tok/s real', 'real run-to-run', 'tok/s sim', 'err', 'TTFT p50 real', 'TTFT p50 sim', 'err', 'TPOT p50 real', 'TPOT p50 sim', 'err', 'steps real/sim'],
  cells.map((c) => [
    c.workload,
    c.policy,
    f(c.tput.real),
    `${pct(c.spread[0])}..${pct(c.spread[1])}`,
    f(c.tput.sim),
    pct(c.tput.err),
    f(c.ttft.real),
    f(c.ttft.sim),
    pct(c.ttft.err),
    f(c.tpot.real, 2),
    f(c.tpot.sim, 2),
    pct(c.tpot.err),
    c.steps,
  ]),
  'markdown',
);
const errors = cells.flatMap((c) => [c.tput.err, c.ttft.err, c.tpot.err]).map(Math.abs);
const within = errors.filter((e) => e <= 0.05).length;
const last = profiles[profiles.length - 1];
const summary = [
  `model ${last.modelName ?? modelPath} (${last.hardware.source ?? last.name}), ${threads} thread(s), max_num_seqs ${maxNumSeqs}, ${numRequests} requests per workload`,
  `${numRounds} round(s) of calibrate + ${repeat} real runs per policy (median run kept); figures are medians over rounds`,
  `workloads: ${workloads!.map((w) => w.description).join(' | ')}`,
  `errors: mean |err| ${((errors.reduce((a, b) => a + b, 0) / errors.length) * 100).toFixed(1)}%, worst ${(Math.max(...errors) * 100).toFixed(1)}%, ${within}/${errors.length} within 5%`,
  `load average ${load0.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end; ${((performance.now() - t0) / 1000).toFixed(0)} s in all`,
];
const md = `${table}\n\n${summary.map((s) => `- ${s}`).join('\n')}\n`;
writeFileSync(join(outDir, 'fidelity.md'), md);
writeFileSync(join(outDir, 'fidelity.json'), JSON.stringify({ profiles, rounds: rounds.map((rows) => rows.map((r) => ({ ...r, measured: strip(r.measured), simulated: strip(r.simulated) }))), cells }, null, 2) + '\n');
process.stdout.write(`\n${md}\nwritten to ${join(outDir, 'fidelity.md')}\n`);

function strip(m: RunMetrics) {
  return { outputThroughput: m.outputThroughput, durationS: m.durationS, ttftP50: m.ttftMs.p50, tpotP50: m.tpotMs.p50, ttftMean: m.ttftMs.mean, tpotMean: m.tpotMs.mean, e2eP50: m.e2eMs.p50 };
}
