// What a fleet run says beyond its fleet-wide latency and throughput: how evenly the router spread
// the work (requests and output tokens per replica, max over mean), how much of the prompts the
// replicas' prefix caches served, and whether requests sharing a prefix stayed together.
import type { FleetSimulationResult } from './simulator.js';
import type { SimRequest } from './replica.js';

export interface ReplicaFigures {
  index: number;
  /** Requests routed to it (refused ones included), and those it completed. */
  requests: number;
  completed: number;
  outputTokens: number;
  /** Prompt tokens looked up in its prefix cache on admission, those served from it, and their ratio. */
  prefixQueries: number;
  prefixHits: number;
  prefixHitRate: number;
  preemptions: number;
  steps: number;
  /** Fraction of the run's duration it spent running steps. */
  busy: number;
}

export interface FleetFigures {
  perReplica: ReplicaFigures[];
  /** Busiest replica over the mean (1 = perfectly even). */
  requestsMaxOverMean: number;
  outputTokensMaxOverMean: number;
  /** Prefix-cache hits over queries, all replicas together. */
  prefixHitRate: number;
  /**
   * On shared-prefix workloads: over the prefix groups, the mean number of replicas a group's
   * requests went to (1 = each group kept on one replica); null without groups.
   */
  replicasPerPrefixGroup: number | null;
}

function maxOverMean(xs: readonly number[]): number {
  let sum = 0;
  let max = 0;
  for (const x of xs) {
    sum += x;
    max = Math.max(max, x);
  }
  return sum > 0 ? max / (sum / xs.length) : 1;
}

export function fleetFigures(run: FleetSimulationResult, requests: readonly SimRequest[]): FleetFigures {
  const perReplica = run.replicas.map((r): ReplicaFigures => {
    const q = r.stats.prefixCacheQueries;
    const h = r.stats.prefixCacheHits;
    return {
      index: r.index,
      requests: r.records.length,
      completed: r.records.reduce((a, x) => a + (x.success ? 1 : 0), 0),
      outputTokens: r.outputTokens,
      prefixQueries: q,
      prefixHits: h,
      prefixHitRate: q > 0 ? h / q : 0,
      preemptions: r.numPreemptions,
      steps: r.numSteps,
      busy: run.durationMs > 0 ? r.busyMs / run.durationMs : 0,
    };
  });
  let queries = 0;
  let hits = 0;
  for (const r of perReplica) {
    queries += r.prefixQueries;
    hits += r.prefixHits;
  }
  return {
    perReplica,
    requestsMaxOverMean: maxOverMean(perReplica.map((r) => r.requests)),
    outputTokensMaxOverMean: maxOverMean(perReplica.map((r) => r.outputTokens)),
    prefixHitRate: queries > 0 ? hits / queries : 0,
    replicasPerPrefixGroup: replicasPerGroup(requests, run.assignment),
  };
}

function replicasPerGroup(requests: readonly SimRequest[], assignment: Int32Array): number | null {
  const groups = new Map<number, Set<number>>();
  for (const r of requests) {
    if (r.prefixGroup === undefined) continue;
    let s = groups.get(r.prefixGroup);
    if (!s) groups.set(r.prefixGroup, (s = new Set()));
    s.add(assignment[r.index]);
  }
  if (groups.size === 0) return null;
  let total = 0;
  for (const s of groups.values()) total += s.size;
  return total / groups.size;
}
