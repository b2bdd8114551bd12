// Refits saved fidelity runs offline: how would the simulator have scored with another way of turning
// the calibration samples into a profile? Reads what bench/sim-fidelity.ts wrote (the raw calibration
// samples, the workloads, the engines' settings and the real runs' means), fits a profile with each
// estimate (see CalibrationEstimate in src/sim/calibration-fit.ts) and way of pricing the engine's prompt
// excess (--prefill), simulates every cell again and scores it against the same real figures. Given
// several runs it also pools them: each figure's error averaged over the runs, the simulator's bias
// with the machine's run-to-run noise averaged down. No engine runs: seconds, not minutes.
//
//   npx tsx bench/sim-refit.ts DIR [DIR...] [--estimate mean,robust] [--grid-weight 0.5,0.25] [--prefill curve,linear] [--kv curve,linear] [--after-prompt fit,off] [--engine-runs all,no-trickle]
import { parseArgs } from 'node:util';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fitCalibration, type CalibrationEstimate, type EngineStepSample } from '../src/sim/calibration-fit.js';
import { trimmedMean } from '../src/sim/fit.js';
import { stepFeatures, type ModelProfile, type SeqShape } from '../src/sim/cost-model.js';
import { simulatePolicy } from '../src/sim/run-sim.js';
import { buildWorkload, type WorkloadSpec, type WorkloadTarget } from '../src/runs/workload.js';
import type { BatchingPolicy } from '../src/engine/step-trace.js';
import { formatTable } from '../src/runs/tables.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { estimate: { type: 'string', default: 'mean,robust' }, 'grid-weight': { type: 'string', default: '0.5' }, prefill: { type: 'string', default: 'curve' }, kv: { type: 'string', default: 'curve' }, 'after-prompt': { type: 'string', default: 'fit' }, 'engine-runs': { type: 'string', default: 'all' } } });
const kvs = choices('kv', values.kv!, ['curve', 'linear'] as const);
const afterPrompts = choices('after-prompt', values['after-prompt']!, ['fit', 'off'] as const);
// 'no-trickle': without the trickle engine run's samples, to see what it adds to a run that has them.
const engineRuns = choices('engine-runs', values['engine-runs']!, ['all', 'no-trickle'] as const);
const prefills = choices('prefill', values.prefill!, ['curve', 'linear'] as const);
const gridWeights = values['grid-weight']!.split(',').map(Number);
for (const g of gridWeights) if (!(g > 0 && g < 1)) fail(`--grid-weight takes shares strictly between 0 and 1, got ${g}`);
const estimates: CalibrationEstimate[] = choices('estimate', values.estimate!, ['mean', 'robust'] as const);
if (positionals.length === 0) fail('give one or more output folders of bench/sim-fidelity.ts');

interface RealCell {
  workload: string;
  policy: BatchingPolicy;
  tput: { real: number; se: number };
  ttft: { real: number; se: number };
  tpot: { real: number; se: number };
}
interface SavedSamples {
  forward: Array<{ label: string; seqs: SeqShape[]; samples: number[] }>;
  // JSON has no Infinity or NaN: a run's first step has idleBeforeMs null, a step followed by idle periodMs null.
  engine: Array<Omit<EngineStepSample, 'features' | 'run' | 'idleBeforeMs' | 'periodMs'> & { run?: EngineStepSample['run']; idleBeforeMs: number | null; periodMs: number | null }>;
}

/** The kinds of engine run, in calibration's order, when samples did not yet record which run they came from. */
const LEGACY_RUN_ORDER = ['continuous', 'static', 'none', 'sparse'] as const;

/** The engine steps as calibration measured them (runs before `run` was recorded are taken in calibration's fixed order). */
function engineSteps(saved: SavedSamples, model: ModelProfile): EngineStepSample[] {
  let runIndex = -1;
  return saved.engine.map((s) => {
    if (s.idleBeforeMs === null) runIndex++;
    return {
      ...s,
      run: s.run ?? LEGACY_RUN_ORDER[runIndex % LEGACY_RUN_ORDER.length],
      features: stepFeatures(model, s.shape),
      idleBeforeMs: s.idleBeforeMs ?? Infinity,
      periodMs: s.periodMs ?? NaN,
    };
  });
}

const totals = new Map<string, { within: number; resolvable: number; figures: number; absErr: number }>();
// Every figure's error in every run, per variant: pooled over runs, the mean error is the simulator's
// bias with the machine's noise averaged down (a single run's error is bias plus that run's noise).
const pooled = new Map<string, Map<string, number[]>>();
const pct = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x * 100).toFixed(1)}%`;
for (const dir of positionals) {
  const files = ['calibration-samples.json', 'fidelity.json'].map((f) => join(dir, f));
  for (const f of files) if (!existsSync(f)) fail(`${f} not found (is ${dir} an output folder of bench/sim-fidelity.ts with calibration?)`);
  const saved = readJson(files[0]) as SavedSamples;
  const fid = readJson(files[1]) as any;
  if (!fid.workloads || !fid.engineOptions) fail(`${files[1]} predates saved workloads and engine settings: rerun bench/sim-fidelity.ts`);
  const model = fid.profile.model as ModelProfile;
  const forward = saved.forward.map((m) => ({ features: stepFeatures(model, m.seqs), ms: trimmedMean(m.samples) }));
  const steps = engineSteps(saved, model);
  const workloads = (fid.workloads as WorkloadSpec[]).map((spec) => buildWorkload(spec, fid.target as WorkloadTarget));
  const rows: string[][] = [];
  for (const estimate of estimates) for (const gridWeight of gridWeights) for (const prefill of prefills) for (const kv of kvs) for (const afterPrompt of afterPrompts) for (const runs of engineRuns) {
    const used = runs === 'all' ? steps : steps.filter((st) => st.run !== 'trickle');
    const { hardware } = fitCalibration(forward, used, { estimate, gridWeight, prefill, kv, afterPrompt });
    const variant = [
      estimate,
      ...(gridWeights.length > 1 ? [`grid ${gridWeight}`] : []),
      ...(prefills.length > 1 ? [`prefill ${prefill}`] : []),
      ...(kvs.length > 1 ? [`kv ${kv}`] : []),
      ...(afterPrompts.length > 1 ? [`after-prompt ${afterPrompt}`] : []),
      ...(engineRuns.length > 1 ? [`engine runs ${runs}`] : []),
    ].join(', ');
    const t = totals.get(variant) ?? { within: 0, resolvable: 0, figures: 0, absErr: 0 };
    totals.set(variant, t);
    const errs: string[] = [];
    const byFigure = pooled.get(variant) ?? new Map<string, number[]>();
    pooled.set(variant, byFigure);
    for (const cell of fid.cells as RealCell[]) {
      const w = workloads.find((x) => x.arrival.kind === cell.workload)!;
      const { backend: _b, threads: _t, inProcess: _i, tokenizerPath: _p, ...load } = fid.engineOptions[cell.policy];
      const m = simulatePolicy(w, cell.policy, { hardware, model, load, keepSteps: false }).metrics;
      for (const [name, sim, real] of [['tok/s', m.outputThroughput, cell.tput], ['TTFT p50', m.ttftMs.p50, cell.ttft], ['TPOT p50', m.tpotMs.p50, cell.tpot]] as const) {
        const e = sim / real.real - 1;
        const figure = `${cell.workload} ${cell.policy} ${name}`;
        byFigure.set(figure, [...(byFigure.get(figure) ?? []), e]);
        t.figures++;
        t.absErr += Math.abs(e);
        if (Math.abs(e) <= 0.05) t.within++;
        if (Math.abs(e) <= Math.max(0.05, Number.isFinite(real.se) ? 2 * real.se : 0)) t.resolvable++;
        errs.push(pct(e));
      }
    }
    rows.push([dir, variant, ...errs]);
  }
  const cols = (fid.cells as RealCell[]).flatMap((c) => ['tok/s', 'TTFT', 'TPOT'].map((k) => `${c.workload.slice(0, 4)} ${c.policy.slice(0, 4)} ${k}`));
  process.stdout.write(`${formatTable(['run', 'estimate', ...cols], rows, 'markdown')}\n\n`);
}
for (const [estimate, t] of totals) {
  process.stdout.write(`${estimate}: ${t.within}/${t.figures} figures within 5%, ${t.resolvable}/${t.figures} within 5% or two standard errors, mean |err| ${((t.absErr / t.figures) * 100).toFixed(1)}%\n`);
}

if (positionals.length > 1) {
  for (const [variant, byFigure] of pooled) {
    const rows = [...byFigure].map(([figure, es]) => {
      const m = es.reduce((a, b) => a + b, 0) / es.length;
      const se = Math.sqrt(es.reduce((a, b) => a + (b - m) ** 2, 0) / (es.length - 1) / es.length);
      return { figure, m, se, es };
    });
    const within = rows.filter((r) => Math.abs(r.m) <= 0.05).length;
    process.stdout.write(`\n${variant}, pooled over ${positionals.length} runs (mean error ± its standard error across runs):\n\n`);
    process.stdout.write(`${formatTable(['figure', 'mean error', 'per run'], rows.map((r) => [r.figure, `${pct(r.m)} ±${(r.se * 100).toFixed(1)}%`, r.es.map(pct).join(' ')]), 'markdown')}\n`);
    process.stdout.write(`${within}/${rows.length} figures with a mean error within 5%; mean |mean error| ${((rows.reduce((a, r) => a + Math.abs(r.m), 0) / rows.length) * 100).toFixed(1)}%\n`);
  }
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    fail(`${file} is not readable JSON: ${(e as Error).message}`);
  }
}

/** A comma-separated option's values, each one of `allowed` (or a named error). */
function choices<T extends string>(option: string, value: string, allowed: readonly T[]): T[] {
  const xs = value.split(',');
  for (const x of xs) if (!allowed.includes(x as T)) fail(`--${option} takes ${allowed.join(' and/or ')}, got '${x}'`);
  return xs as T[];
}

function fail(message: string): never {
  process.stderr.write(`sim-refit: ${message}\n`);
  process.exit(2);
}
