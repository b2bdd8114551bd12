// Sizing with the fleet simulator: for each target request rate, the fewest replicas that serve it
// at the SLO (at least --min-good of the requests meet both the TTFT and the TPOT bound), under each
// router. Each check is one `stepwise simulate --replicas N` run; the search is a binary search over
// N from a first guess, which assumes that more replicas never serve a rate worse.
//
//   npx tsx bench/fleet-sizing.ts [--qps 200,400,800] [--routers round-robin,least-queue,prefix-affinity]
//        [--seconds 20] [--slo-ttft-ms 500] [--slo-tpot-ms 50] [--min-good 0.99]
//        [--shared-prefix-len 2048] [--num-prefix-groups 256] [--hardware H100-SXM] [--model llama-3-8b]
//        [--max-num-seqs 256] [--max-replicas 256]
//
// Each run is --seconds of Poisson arrivals at the target rate (seconds x rate requests), the standard
// chat-like workload with every prompt led by one of the shared prefixes. Printed: the table (with the
// figures of the run at the replica count found, and the share at one replica fewer), then the
// `stepwise simulate` command that reproduces each row.
import { parseArgs } from 'node:util';
import { describeSlo, type Slo } from '../src/runs/goodput.js';
import { formatTable, fmt } from '../src/runs/tables.js';
import { hardwareProfile, modelProfile } from '../src/sim/profiles.js';
import { buildSimWorkload } from '../src/sim/run-sim.js';
import { simulateFleetRun, type FleetRunResult } from '../src/sim/run-fleet.js';
import { isRouterName, type RouterName } from '../src/sim/routers/index.js';

const { values } = parseArgs({
  options: {
    qps: { type: 'string', default: '200,400,800' },
    routers: { type: 'string', default: 'round-robin,least-queue,prefix-affinity' },
    seconds: { type: 'string', default: '20' },
    'slo-ttft-ms': { type: 'string', default: '500' },
    'slo-tpot-ms': { type: 'string', default: '50' },
    'min-good': { type: 'string', default: '0.99' },
    'shared-prefix-len': { type: 'string', default: '2048' },
    'num-prefix-groups': { type: 'string', default: '256' },
    hardware: { type: 'string', default: 'H100-SXM' },
    model: { type: 'string', default: 'llama-3-8b' },
    'max-num-seqs': { type: 'string', default: '256' },
    'max-replicas': { type: 'string', default: '256' },
  },
});
const hw = hardwareProfile(values.hardware!);
const model = modelProfile(values.model!);
const load = { maxNumSeqs: Number(values['max-num-seqs']) };
const slo: Slo = { ttftMs: Number(values['slo-ttft-ms']), tpotMs: Number(values['slo-tpot-ms']) };
const minGood = Number(values['min-good']);
const seconds = Number(values.seconds);
const maxReplicas = Number(values['max-replicas']);
const sharedPrefix = { length: Number(values['shared-prefix-len']), groups: Number(values['num-prefix-groups']) };
const routers = values.routers!.split(',').map((r) => {
  if (!isRouterName(r)) throw new Error(`unknown router '${r}'`);
  return r;
});

function command(qps: number, replicas: number, router: RouterName): string {
  return (
    `npx stepwise simulate --hardware ${values.hardware} --model ${values.model} --max-num-seqs ${load.maxNumSeqs} ` +
    `--num-requests ${Math.round(qps * seconds)} --qps ${qps} --shared-prefix-len ${sharedPrefix.length} --num-prefix-groups ${sharedPrefix.groups} ` +
    `--replicas ${replicas} --router ${router} --slo-ttft-ms ${slo.ttftMs} --slo-tpot-ms ${slo.tpotMs}`
  );
}

/** A share to one decimal: 98.9% must not print as the 99% it failed to reach. */
const pct1 = (x: number): string => `${(100 * x).toFixed(1)}%`;

const rows: string[][] = [];
const commands: string[] = [];
for (const qps of values.qps!.split(',').map(Number)) {
  const workload = buildSimWorkload({ kind: 'standard', seed: 0, numRequests: Math.round(qps * seconds), arrival: { kind: 'poisson', qps }, sharedPrefix }, model.profile, load);
  for (const router of routers) {
    const runs = new Map<number, FleetRunResult>();
    const share = (n: number): number => {
      let r = runs.get(n);
      if (!r) {
        r = simulateFleetRun(workload, router, { hardware: hw.profile, model: model.profile, load, replicas: n, slo });
        runs.set(n, r);
        process.stderr.write(`fleet-sizing: ${qps} req/s, ${router}, ${n} replicas: ${pct1(r.fleet.goodput!.fraction)} met the SLO (${(r.sim.wallMs / 1000).toFixed(1)} s)\n`);
      }
      return r.fleet.goodput!.fraction;
    };
    // Bracket from a first guess of 32 req/s per replica (lo fails the SLO, or is 0; hi meets it),
    // then halve the gap.
    let lo: number;
    let hi = Math.max(1, Math.ceil(qps / 32));
    if (share(hi) >= minGood) {
      lo = Math.floor(hi / 2);
      while (lo >= 1 && share(lo) >= minGood) {
        hi = lo;
        lo = Math.floor(lo / 2);
      }
    } else {
      do {
        lo = hi;
        if (hi >= maxReplicas) throw new Error(`${router} does not serve ${qps} req/s at the SLO with ${maxReplicas} replicas`);
        hi = Math.min(maxReplicas, hi * 2);
      } while (share(hi) < minGood);
    }
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (share(mid) >= minGood) hi = mid;
      else lo = mid;
    }
    const r = runs.get(hi)!;
    const m = r.metrics;
    rows.push([
      String(qps),
      router,
      String(hi),
      fmt.num(qps / hi, 1),
      pct1(r.fleet.goodput!.fraction),
      runs.has(hi - 1) ? pct1(runs.get(hi - 1)!.fleet.goodput!.fraction) : '–',
      fmt.num(m.ttftMs.p99),
      fmt.num(m.tpotMs.p99, 1),
      fmt.pct(r.fleet.prefixHitRate),
    ]);
    commands.push(command(qps, hi, router));
  }
}
process.stdout.write(
  `\n${values.model} on ${values.hardware}, max_num_seqs ${load.maxNumSeqs}; standard workload with every prompt led by one of ${sharedPrefix.groups} ` +
    `shared ${sharedPrefix.length}-token prefixes, ${seconds} s of Poisson arrivals; SLO ${describeSlo(slo)} for at least ${fmt.pct(minGood)} of requests\n\n`,
);
process.stdout.write(
  formatTable(['target req/s', 'router', 'replicas needed', 'req/s per replica', 'met the SLO', 'with one replica fewer', 'TTFT p99 ms', 'TPOT p99 ms', 'prefix hits'], rows, 'markdown') + '\n\n',
);
process.stdout.write(commands.join('\n') + '\n');
