// How fast the simulator is: 10,000 simulated requests (the standard chat-like workload) through the
// real scheduler and KV cache manager under each batching policy, timed on the wall clock. Target:
// under 10 s for 10,000 requests.
//
//   npx tsx bench/sim-speed.ts [--num-requests 10000] [--hardware A100-80GB] [--model llama-2-7b]
//                              [--policies continuous,static,none] [--max-num-seqs 256] [--no-steps]
//
// Reported per policy: wall time of the simulation alone (the workload is built beforehand) and with
// the metrics computed as `stepwise simulate` does, steps, simulated requests per wall second, and
// the virtual time simulated. Runs of more than 100,000 steps drop their step records (see simulate()).
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import type { BatchingPolicy } from '../src/engine/step-trace.js';
import { formatTable } from '../src/runs/tables.js';
import { reportRow, rowsFromChildren, speedColumns } from './child-runs.js';
import { hardwareProfile, modelProfile } from '../src/sim/profiles.js';
import { buildSimWorkload, simulatePolicy } from '../src/sim/run-sim.js';

const { values } = parseArgs({
  options: {
    'num-requests': { type: 'string', default: '10000' },
    hardware: { type: 'string', default: 'A100-80GB' },
    model: { type: 'string', default: 'llama-2-7b' },
    policies: { type: 'string', default: 'continuous,static,none' },
    'max-num-seqs': { type: 'string', default: '256' },
    'static-batch-size': { type: 'string', default: '32' },
    /** Drop the step records (no utilisation or timeline): what the scheduler alone costs. */
    'no-steps': { type: 'boolean', default: false },
    /** Internal: run one policy and print its row as JSON (each policy gets a fresh process and heap). */
    child: { type: 'boolean', default: false },
  },
});
const n = Number(values['num-requests']);
const hw = hardwareProfile(values.hardware!);
const model = modelProfile(values.model!);
const load = { maxNumSeqs: Number(values['max-num-seqs']), staticBatchSize: Number(values['static-batch-size']) };
const workload = buildSimWorkload({ kind: 'standard', seed: 0, numRequests: n, arrival: { kind: 'offline' } }, model.profile, load);

const policies = values.policies!.split(',') as BatchingPolicy[];
if (values.child) {
  const policy = policies[0];
  const t0 = performance.now();
  const r = simulatePolicy(workload, policy, { hardware: hw.profile, model: model.profile, load, keepSteps: !values['no-steps'] });
  const totalMs = performance.now() - t0;
  reportRow([r.label, ...speedColumns(r, n, totalMs, 0), r.sim.stepsDropped ? 'dropped' : String(r.steps?.length ?? 0)]);
}
const rows = rowsFromChildren(fileURLToPath(import.meta.url), 'policies', policies, 'sim-speed', 3);
process.stdout.write(`\n${n} requests (${workload.description}), ${values.model} on ${values.hardware}, max_num_seqs ${load.maxNumSeqs}${values['no-steps'] ? ', step records dropped' : ''}\n\n`);
process.stdout.write(formatTable(['policy', 'requests', 'steps', 'simulation s', 'with metrics s', 'requests/s', 'steps/s', 'virtual s', 'virtual tok/s', 'step records'], rows, 'markdown') + '\n');
