// A whole fleet simulation: one workload (built as `stepwise bench` builds it), N identical replicas
// of the engine each with the hardware's cost model, and for each router a run of the fleet, gathered
// in the simulator's result shapes (so the throughput and latency tables apply) plus what only a
// fleet has: goodput at an SLO, per-replica load and prefix-cache figures.
import { performance } from 'node:perf_hooks';
import { computeMetrics } from '../runs/metrics.js';
import { computeGoodput, hasSlo, type Goodput, type Slo } from '../runs/goodput.js';
import type { Workload } from '../runs/workload.js';
import { kvCapacityTokens } from './cost-model.js';
import { resolveSimOptions } from './engine-options.js';
import { fleetFigures, type FleetFigures } from './fleet-figures.js';
import { createRouter, type RouterName, type RouterOptions } from './routers/index.js';
import { buildSimWorkload, engineSummary, simResultsHeader, type SimResults, type SimRunOptions, type SimRunResult } from './run-sim.js';
import { simulateFleet } from './simulator.js';
import { CostModelTimer } from './step-time.js';

export interface FleetRunOptions extends Pick<SimRunOptions, 'hardwareName' | 'hardware' | 'modelName' | 'model' | 'workload' | 'load'> {
  replicas: number;
  routers: RouterName[];
  routerOptions?: RouterOptions;
  /** Goodput is reported against this SLO when it sets a bound. */
  slo?: Slo;
  onRun?: (run: FleetRunResult) => void;
}

/** One router's run of the fleet: the fleet-wide figures as a simulated run's, plus the fleet's own. */
export interface FleetRunResult extends SimRunResult {
  router: RouterName;
  fleet: FleetFigures & {
    replicas: number;
    /** Null without an SLO. */
    goodput: Goodput | null;
  };
}

export interface FleetResults extends SimResults {
  runs: FleetRunResult[];
  fleet: { replicas: number; slo: Slo };
}

/** Runs a built workload through `replicas` replicas behind one router. */
export function simulateFleetRun(workload: Workload, router: RouterName, o: Omit<FleetRunOptions, 'workload' | 'routers' | 'onRun' | 'hardwareName' | 'modelName'>): FleetRunResult {
  const sched = resolveSimOptions(o.load, o.hardware, o.model);
  const timers = Array.from({ length: o.replicas }, () => new CostModelTimer(o.hardware, o.model));
  const t0 = performance.now();
  const run = simulateFleet({
    requests: workload.requests,
    scheduler: sched,
    replicas: o.replicas,
    router: createRouter(router, o.routerOptions),
    stepTimeMs: (out, ctx) => timers[ctx.replica].stepTimeMs(out, ctx.idleMs),
    // A fleet's runs are reported per replica and fleet-wide, not step by step.
    keepSteps: false,
  });
  const wallMs = performance.now() - t0;
  const metrics = computeMetrics(run.records, run.durationMs);
  const slo = o.slo ?? {};
  let flops = 0;
  let bytes = 0;
  let steps = 0;
  let memBound = 0;
  for (const t of timers) {
    flops += t.totals.flops;
    bytes += t.totals.bytes;
    steps += t.totals.steps;
    memBound += t.totals.memBoundSteps;
  }
  const hwSeconds = (run.durationMs / 1000) * o.replicas;
  const numPreemptions = run.replicas.reduce((a, r) => a + r.numPreemptions, 0);
  return {
    policy: sched.policy,
    label: router,
    router,
    metrics,
    slot: null,
    compute: null,
    numSteps: steps,
    numPreemptions,
    decodeThroughput: null,
    records: run.records,
    sim: {
      mfu: hwSeconds > 0 ? flops / hwSeconds / (o.hardware.peakTflops * 1e12) : 0,
      mbu: hwSeconds > 0 ? bytes / hwSeconds / (o.hardware.bandwidthGBs * 1e9) : 0,
      memoryBoundSteps: steps > 0 ? memBound / steps : 0,
      wallMs,
      scheduler: sched,
      kvCapacityTokens: kvCapacityTokens(o.hardware, o.model),
      stepsDropped: false,
    },
    fleet: {
      replicas: o.replicas,
      goodput: hasSlo(slo) ? computeGoodput(run.records, slo, run.durationMs) : null,
      ...fleetFigures(run, workload.requests),
    },
  };
}

export function runFleetSimulation(o: FleetRunOptions): FleetResults {
  const wall0 = performance.now();
  const workload = buildSimWorkload(o.workload, o.model, o.load);
  const results: FleetResults = { ...simResultsHeader(o, workload), runs: [], fleet: { replicas: o.replicas, slo: o.slo ?? {} } };
  for (const router of o.routers) {
    const r = simulateFleetRun(workload, router, o);
    results.engine ??= { ...engineSummary(r.sim.scheduler), replicas: o.replicas };
    results.runs.push(r);
    o.onRun?.(r);
  }
  results.wallS = (performance.now() - wall0) / 1000;
  return results;
}
