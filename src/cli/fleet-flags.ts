// `stepwise simulate`'s fleet flags: how many replicas, which router(s), the goodput SLO. Read and
// checked here so a mistake is one line naming the flag, before anything is simulated.
import type { Slo } from '../runs/goodput.js';
import { DEFAULT_AFFINITY_MAX_IMBALANCE, ROUTER_NAMES, isRouterName, type RouterName, type RouterOptions } from '../sim/routers/index.js';
import { parseIntFlag, parsePositiveNumber } from './engine-flags.js';
import { UsageError } from './usage-error.js';

export const FLEET_FLAG_OPTIONS = {
  replicas: { type: 'string' },
  router: { type: 'string' },
  'compare-routers': { type: 'string' },
  'affinity-max-imbalance': { type: 'string' },
  'slo-ttft-ms': { type: 'string' },
  'slo-tpot-ms': { type: 'string' },
  'per-replica': { type: 'boolean' },
} as const;

export const FLEET_FLAGS_HELP = `Fleet (N replicas of the engine behind a router, one workload, one clock):
  --replicas N             identical replicas, each with its own scheduler and KV cache (default 1)
  --router NAME            how each request picks its replica (default round-robin):
                             round-robin      in turn, blind to load (a plain Service)
                             least-queue      fewest waiting, then fewest running requests
                             kv-usage         lowest KV cache use, then least-queue
                             prefix-affinity  longest prefix in the replica's prefix cache, among
                                              replicas within --affinity-max-imbalance requests of
                                              the least loaded; least-queue without a hit
  --compare-routers LIST   run the fleet under several routers, e.g. round-robin,prefix-affinity
  --affinity-max-imbalance N   prefix-affinity: most requests (waiting + running) a replica may
                           carry beyond the least-loaded one and still win on a hit (default ${DEFAULT_AFFINITY_MAX_IMBALANCE})
  --per-replica            print every replica's requests, tokens, prefix hits and busy time

Goodput (any run): requests per second that met every bound given
  --slo-ttft-ms MS         time to first token at most MS
  --slo-tpot-ms MS         time per output token (first excluded) at most MS`;

export interface FleetFlags {
  replicas: number;
  /** Routers to run (one unless --compare-routers); empty for a lone engine. */
  routers: RouterName[];
  routerOptions: RouterOptions;
  slo: Slo;
  perReplica: boolean;
}

type Values = Record<string, string | boolean | undefined | (string | boolean)[]>;

function routerFlag(flag: string, raw: string): RouterName {
  if (!isRouterName(raw)) throw new UsageError(`--${flag} must name routers among ${ROUTER_NAMES.join(', ')}, got '${raw}'`);
  return raw;
}

export function fleetFlags(v: Values): FleetFlags {
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const replicas = str('replicas') === undefined ? 1 : parseIntFlag('replicas', str('replicas')!, 1);
  if (str('router') !== undefined && str('compare-routers') !== undefined) throw new UsageError('give either --router or --compare-routers, not both');
  let routers: RouterName[] = [];
  if (str('router') !== undefined) routers = [routerFlag('router', str('router')!)];
  if (str('compare-routers') !== undefined) {
    const list = str('compare-routers')!.split(',').map((s) => s.trim());
    routers = list.map((s) => routerFlag('compare-routers', s));
    if (new Set(routers).size !== routers.length) throw new UsageError(`--compare-routers names a router twice: '${str('compare-routers')}'`);
  }
  if (replicas === 1 && routers.length > 0) throw new UsageError(`--${str('router') !== undefined ? 'router' : 'compare-routers'} routes requests among replicas: give --replicas N with N >= 2`);
  if (replicas > 1 && routers.length === 0) routers = ['round-robin'];
  const routerOptions: RouterOptions = {};
  if (str('affinity-max-imbalance') !== undefined) {
    if (!routers.includes('prefix-affinity')) throw new UsageError('--affinity-max-imbalance applies to the prefix-affinity router; name it with --router or --compare-routers');
    routerOptions.affinityMaxImbalance = parseIntFlag('affinity-max-imbalance', str('affinity-max-imbalance')!, 0);
  }
  if (v['per-replica'] === true && replicas === 1) throw new UsageError('--per-replica lists the replicas of a fleet: give --replicas N with N >= 2');
  const slo: Slo = {};
  if (str('slo-ttft-ms') !== undefined) slo.ttftMs = parsePositiveNumber('slo-ttft-ms', str('slo-ttft-ms')!);
  if (str('slo-tpot-ms') !== undefined) slo.tpotMs = parsePositiveNumber('slo-tpot-ms', str('slo-tpot-ms')!);
  return { replicas, routers, routerOptions, slo, perReplica: v['per-replica'] === true };
}
