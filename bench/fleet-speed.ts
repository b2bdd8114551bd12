// How fast the fleet simulator is: 10,000 requests across 16 replicas of the engine (each the real
// scheduler and KV cache manager) under each router, timed on the wall clock. Target: under 30 s per
// router on this project's 2-core machine.
//
//   npx tsx bench/fleet-speed.ts [--num-requests 10000] [--replicas 16] [--qps-per-replica 20]
//        [--routers round-robin,least-queue,kv-usage,prefix-affinity] [--shared-prefix-len 2048]
//        [--num-prefix-groups 64] [--hardware H100-SXM] [--model llama-3-8b] [--max-num-seqs 256]
//
// The workload is the standard chat-like one with every prompt led by one of the shared prefixes
// (the case that makes routing and the prefix caches work hardest), Poisson arrivals at the given
// rate per replica. Reported per router: the simulation's wall time alone (the workload is built
// beforehand) and with the fleet's metrics, steps, simulated requests and steps per wall second, the
// virtual time simulated. Each router runs in a process of its own, so one run's heap does not slow
// the next.
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { formatTable } from '../src/runs/tables.js';
import { reportRow, rowsFromChildren, speedColumns } from './child-runs.js';
import { hardwareProfile, modelProfile } from '../src/sim/profiles.js';
import { buildSimWorkload } from '../src/sim/run-sim.js';
import { simulateFleetRun } from '../src/sim/run-fleet.js';
import { isRouterName } from '../src/sim/routers/index.js';

const { values } = parseArgs({
  options: {
    'num-requests': { type: 'string', default: '10000' },
    replicas: { type: 'string', default: '16' },
    'qps-per-replica': { type: 'string', default: '20' },
    routers: { type: 'string', default: 'round-robin,least-queue,kv-usage,prefix-affinity' },
    'shared-prefix-len': { type: 'string', default: '2048' },
    'num-prefix-groups': { type: 'string', default: '64' },
    hardware: { type: 'string', default: 'H100-SXM' },
    model: { type: 'string', default: 'llama-3-8b' },
    'max-num-seqs': { type: 'string', default: '256' },
    /** Internal: run one router and print its row as JSON. */
    child: { type: 'boolean', default: false },
  },
});
const n = Number(values['num-requests']);
const replicas = Number(values.replicas);
const qps = Number(values['qps-per-replica']) * replicas;
const hw = hardwareProfile(values.hardware!);
const model = modelProfile(values.model!);
const load = { maxNumSeqs: Number(values['max-num-seqs']) };
const sharedPrefix = { length: Number(values['shared-prefix-len']), groups: Number(values['num-prefix-groups']) };
const routers = values.routers!.split(',');
for (const r of routers) if (!isRouterName(r)) throw new Error(`unknown router '${r}'`);

if (values.child) {
  const workload = buildSimWorkload({ kind: 'standard', seed: 0, numRequests: n, arrival: { kind: 'poisson', qps }, sharedPrefix }, model.profile, load);
  const router = routers[0];
  if (!isRouterName(router)) throw new Error(`unknown router '${router}'`);
  const t0 = performance.now();
  const r = simulateFleetRun(workload, router, { hardware: hw.profile, model: model.profile, load, replicas, slo: { ttftMs: 500, tpotMs: 50 } });
  reportRow([router, ...speedColumns(r, n, performance.now() - t0, 1)]);
}
const rows = rowsFromChildren(fileURLToPath(import.meta.url), 'routers', routers, 'fleet-speed', 3);
process.stdout.write(
  `\n${n} requests across ${replicas} replicas (${values.model} on ${values.hardware}, max_num_seqs ${load.maxNumSeqs}; standard workload, ` +
    `prompts led by one of ${sharedPrefix.groups} shared ${sharedPrefix.length}-token prefixes, Poisson ${qps} req/s)\n\n`,
);
process.stdout.write(formatTable(['router', 'requests', 'steps', 'simulation s', 'with metrics s', 'requests/s', 'steps/s', 'virtual s', 'virtual tok/s'], rows, 'markdown') + '\n');
