// How a fleet's router sees its replicas and picks one for each arriving request: the state an
// endpoint picker of the Gateway API Inference Extension reads from every model server (queue
// lengths, KV cache use, prefix-cache contents), and one decision per request.
import type { SimRequest, PromptProbe } from '../replica.js';

/** A replica as the router sees it at the moment a request arrives. */
export interface ReplicaView {
  readonly index: number;
  /** Requests waiting for admission (or readmission after preemption): vLLM's num_requests_waiting. */
  readonly numWaiting: number;
  /** Requests holding KV blocks in the running batch: num_requests_running. */
  readonly numRunning: number;
  /** Fraction of KV blocks in use, 0..1: kv_cache_usage_perc. */
  readonly kvUsage: number;
  /** Prompt tokens its prefix cache would serve if the request were admitted now. */
  cachedPrefixTokens(probe: PromptProbe): number;
}

export interface Router {
  readonly name: RouterName;
  /** The index of the replica that gets `req`. */
  route(req: SimRequest, replicas: readonly ReplicaView[]): number;
}

export const ROUTER_NAMES = ['round-robin', 'least-queue', 'kv-usage', 'prefix-affinity'] as const;
export type RouterName = (typeof ROUTER_NAMES)[number];

export function isRouterName(s: string): s is RouterName {
  return (ROUTER_NAMES as readonly string[]).includes(s);
}
