// The routers by name, for the CLI and the fleet runs.
import { KvUsageRouter } from './kv-usage.js';
import { LeastQueueRouter } from './least-queue.js';
import { DEFAULT_AFFINITY_MAX_IMBALANCE, PrefixAffinityRouter } from './prefix-affinity.js';
import { RoundRobinRouter } from './round-robin.js';
import type { Router, RouterName } from './router.js';

export { ROUTER_NAMES, isRouterName, type Router, type RouterName, type ReplicaView } from './router.js';
export { DEFAULT_AFFINITY_MAX_IMBALANCE };

export interface RouterOptions {
  /** prefix-affinity: how many more requests than the least-loaded replica a cache hit may cost. */
  affinityMaxImbalance?: number;
}

/** A fresh router (routers keep state: a cursor, a turn). */
export function createRouter(name: RouterName, o: RouterOptions = {}): Router {
  switch (name) {
    case 'round-robin':
      return new RoundRobinRouter();
    case 'least-queue':
      return new LeastQueueRouter();
    case 'kv-usage':
      return new KvUsageRouter();
    case 'prefix-affinity':
      return new PrefixAffinityRouter(o.affinityMaxImbalance ?? DEFAULT_AFFINITY_MAX_IMBALANCE);
  }
}
